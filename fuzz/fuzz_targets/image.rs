//! Any file through the image path of `callsight detect` (`vision::io::decode_image`,
//! JPEG/PNG with its default limits): a picture or a clear error, never a panic or an allocation past the limit.
#![no_main]

use callsight_vision::io::{decode_image, ImageLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image(data, &ImageLimits::default()) {
        assert!(img.width() > 0 && img.height() > 0);
        assert_eq!(img.as_raw().len(), img.width() as usize * img.height() as usize * 3);
    }
});
