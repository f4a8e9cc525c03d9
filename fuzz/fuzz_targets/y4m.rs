//! Any file through the y4m reader of `callsight detect` (`vision::io`, default limits): the header, then up to a few
//! frames. It must end in frames or a clear error, never a panic; every frame it yields
//! has planes of exactly the header's size.
#![no_main]

use callsight_vision::io::{ImageLimits, Y4m};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut y4m) = Y4m::new(data, &ImageLimits::default()) else { return };
    let (w, h) = (y4m.width, y4m.height);
    let c = w.div_ceil(2) * h.div_ceil(2);
    for _ in 0..4 {
        match y4m.next_frame() {
            Ok(Some(f)) => assert_eq!((f.width, f.height, f.y.len(), f.u.len(), f.v.len()), (w, h, w * h, c, c)),
            Ok(None) | Err(_) => return,
        }
    }
});
