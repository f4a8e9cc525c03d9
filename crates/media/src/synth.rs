//! Synthetic camera streams from real photos: letterboxed into the frame, panned by a few
//! pixels so the encoder has motion to code, H.264-encoded with openh264 (constrained
//! baseline, what the server expects from browsers).

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, RateControlMode};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;

use crate::MediaError;

/// `$CALLSIGHT_TEST_DATA`, else `<repo root>/test-data`.
pub fn test_data_dir() -> PathBuf {
    match std::env::var_os("CALLSIGHT_TEST_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-data"),
    }
}

/// Loads a photo from the test data folder, with an error that says how to get it.
pub fn load_test_photo(name: &str) -> Result<RgbImage, MediaError> {
    let path = test_data_dir().join(name);
    if !path.is_file() {
        return Err(MediaError::TestData(format!("{} not found", path.display())));
    }
    image::open(&path).map(|i| i.to_rgb8()).map_err(|e| MediaError::Image(format!("{}: {e}", path.display())))
}

/// The photo scaled to fit `width`×`height` (aspect kept), centred on black, shifted
/// right by `dx` pixels.
pub fn letterbox(fitted: &RgbImage, width: u32, height: u32, dx: i64) -> RgbImage {
    let mut canvas = RgbImage::new(width, height);
    let x = (width as i64 - fitted.width() as i64) / 2 + dx;
    let y = (height as i64 - fitted.height() as i64) / 2;
    image::imageops::overlay(&mut canvas, fitted, x, y);
    canvas
}

/// Resizes `photo` to fit inside `width`×`height`, aspect kept.
pub fn fit(photo: &RgbImage, width: u32, height: u32) -> RgbImage {
    let s = (width as f64 / photo.width() as f64).min(height as f64 / photo.height() as f64);
    let w = ((photo.width() as f64 * s).round() as u32).clamp(1, width);
    let h = ((photo.height() as f64 * s).round() as u32).clamp(1, height);
    image::imageops::resize(photo, w, h, image::imageops::FilterType::Triangle)
}

/// One encoded access unit (Annex-B).
#[derive(Clone)]
pub struct EncodedFrame {
    pub data: Arc<[u8]>,
    pub keyframe: bool,
}

/// Encodes `frames` frames of the photo panning ±`motion_px` (a whole sine period, so the
/// sequence loops smoothly). Frame 0 is an IDR, so the sequence can be replayed in a loop.
pub fn encode_loop(
    photo: &RgbImage,
    width: u32,
    height: u32,
    frames: usize,
    motion_px: f64,
    bitrate_bps: u32,
) -> Result<Vec<EncodedFrame>, MediaError> {
    let fitted = fit(photo, width, height);
    let cfg = EncoderConfig::new()
        .bitrate(BitRate::from_bps(bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(30.0))
        .rate_control_mode(RateControlMode::Bitrate);
    let mut enc =
        Encoder::with_api_config(OpenH264API::from_source(), cfg).map_err(|e| MediaError::Codec(e.to_string()))?;
    let mut out = Vec::with_capacity(frames);
    for i in 0..frames {
        let phase = i as f64 / frames.max(1) as f64 * std::f64::consts::TAU;
        let dx = (motion_px * phase.sin()).round() as i64;
        let rgb = letterbox(&fitted, width, height, dx);
        let yuv = YUVBuffer::from_rgb_source(RgbSliceU8::new(rgb.as_raw(), (width as usize, height as usize)));
        if i == 0 {
            enc.force_intra_frame();
        }
        let bs = enc.encode(&yuv).map_err(|e| MediaError::Codec(e.to_string()))?;
        let data = bs.to_vec();
        if data.is_empty() {
            continue;
        }
        let keyframe = crate::h264::is_keyframe(&data);
        out.push(EncodedFrame { data: data.into(), keyframe });
    }
    if !out.first().is_some_and(|f| f.keyframe) {
        return Err(MediaError::Codec("encoder did not start with a keyframe".into()));
    }
    Ok(out)
}
