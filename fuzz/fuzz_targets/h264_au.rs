//! Any bytes as H.264 access units through the media leg's path: the SPS guard first
//! (`callsight_media::sps`), the openh264 decoder only when the guard accepts — as the
//! server does. Input: access units separated by the 4-byte marker `AU!!`; one decoder
//! sees them in order, so parameter sets of one unit apply to the next.
#![no_main]

use callsight_media::sps::{check_access_unit, SpsLimits};
use libfuzzer_sys::fuzz_target;
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

fuzz_target!(|data: &[u8]| {
    let limits = SpsLimits::default();
    let Ok(mut decoder) = Decoder::new() else { return };
    let mut accepted = None;
    for au in split(data, b"AU!!").take(16) {
        match check_access_unit(au, &limits) {
            Err(_) => return, // the server drops the stream here
            Ok(Some(info)) => accepted = Some(info),
            Ok(None) => {}
        }
        if let Ok(Some(yuv)) = decoder.decode(au) {
            let (w, h) = yuv.dimensions();
            // The guard's word holds: nothing larger than an accepted SPS comes out.
            let info = accepted.as_ref().expect("a picture without an SPS the guard saw");
            assert!((w as u64) * (h as u64) <= limits.max_video_pixels, "decoded {w}x{h} past the guard ({info:?})");
        }
    }
});

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}
