//! Synthetic camera streams from real photos: letterboxed into the frame, panned by a few
//! pixels so the encoder has motion to code, H.264-encoded with openh264 (constrained
//! baseline, what the server expects from browsers).

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode};
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
    let pictures = (0..frames).map(|i| {
        let phase = i as f64 / frames.max(1) as f64 * std::f64::consts::TAU;
        let dx = (motion_px * phase.sin()).round() as i64;
        letterbox(&fitted, width, height, dx)
    });
    // The rate control may skip a picture: fine for a looping camera.
    Ok(encode(cfg, pictures)?.into_iter().flatten().collect())
}

/// A photo moving across a grey background: see [`encode_moving`].
pub struct MovingObject {
    pub frames: Vec<EncodedFrame>,
    /// Where the photo is in each frame, `[x, y, w, h]` normalised; None while hidden.
    pub boxes: Vec<Option<[f32; 4]>>,
}

/// Encodes `frames` frames of `photo` (scaled to `object_height` pixels tall) sliding from
/// the left edge to the right and back (so the sequence loops) over a flat grey
/// background; in the frames of `hidden` the photo is left out (the object vanishes: a
/// detector misses it). Frame 0 is an IDR, and every 30th frame after it.
pub fn encode_moving(
    photo: &RgbImage,
    width: u32,
    height: u32,
    object_height: u32,
    frames: usize,
    hidden: std::ops::Range<usize>,
) -> Result<MovingObject, MediaError> {
    let object = fit(photo, width, object_height.min(height));
    let travel = f64::from(width - object.width());
    let y = i64::from((height - object.height()) / 2);
    let half = frames.max(2) as f64 / 2.0;
    let boxes: Vec<Option<[f32; 4]>> = (0..frames)
        .map(|i| {
            let i = i as f64;
            let x = (travel * if i <= half { i / half } else { 2.0 - i / half }).round();
            (!hidden.contains(&(i as usize))).then_some([
                (x / f64::from(width)) as f32,
                y as f32 / height as f32,
                object.width() as f32 / width as f32,
                object.height() as f32 / height as f32,
            ])
        })
        .collect();
    // Constant quality and no skipped pictures: one access unit per truth box.
    let cfg = EncoderConfig::new()
        .max_frame_rate(FrameRate::from_hz(30.0))
        .rate_control_mode(RateControlMode::Off)
        .skip_frames(false)
        // A keyframe every second: a receiver that lost one recovers without asking.
        .intra_frame_period(IntraFramePeriod::from_num_frames(30));
    let frames = encode(
        cfg,
        boxes.iter().map(|b| {
            let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([118, 118, 118]));
            if let Some(b) = b {
                let x = (f64::from(b[0]) * f64::from(width)).round() as i64;
                image::imageops::overlay(&mut canvas, &object, x, y);
            }
            canvas
        }),
    )?;
    let frames = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| f.ok_or_else(|| MediaError::Codec(format!("the encoder skipped picture {i}"))));
    Ok(MovingObject { frames: frames.collect::<Result<_, _>>()?, boxes })
}

/// H.264-encodes pictures (all of one size), one entry per picture (None where the rate
/// control skipped it); the first access unit is an IDR.
fn encode(
    cfg: EncoderConfig,
    pictures: impl Iterator<Item = RgbImage>,
) -> Result<Vec<Option<EncodedFrame>>, MediaError> {
    let mut enc =
        Encoder::with_api_config(OpenH264API::from_source(), cfg).map_err(|e| MediaError::Codec(e.to_string()))?;
    let mut out = Vec::new();
    for (i, rgb) in pictures.enumerate() {
        let (width, height) = rgb.dimensions();
        let yuv = YUVBuffer::from_rgb_source(RgbSliceU8::new(rgb.as_raw(), (width as usize, height as usize)));
        if i == 0 {
            enc.force_intra_frame();
        }
        let bs = enc.encode(&yuv).map_err(|e| MediaError::Codec(e.to_string()))?;
        let data = bs.to_vec();
        out.push((!data.is_empty()).then(|| {
            let keyframe = crate::h264::is_keyframe(&data);
            EncodedFrame { data: data.into(), keyframe }
        }));
    }
    if !out.iter().flatten().next().is_some_and(|f| f.keyframe) {
        return Err(MediaError::Codec("encoder did not start with a keyframe".into()));
    }
    Ok(out)
}

/// Writes an SPS bit by bit (7.3.2.1.1), with emulation prevention.
struct BitWriter {
    bytes: Vec<u8>,
    bits: u32,
    acc: u8,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter { bytes: Vec::new(), bits: 0, acc: 0 }
    }
    fn bit(&mut self, b: bool) {
        self.acc = (self.acc << 1) | u8::from(b);
        self.bits += 1;
        if self.bits == 8 {
            self.bytes.push(self.acc);
            (self.acc, self.bits) = (0, 0);
        }
    }
    fn u(&mut self, n: u32, v: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }
    fn ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros();
        for _ in 0..len - 1 {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit((x >> i) & 1 == 1);
        }
    }
    /// rbsp_trailing_bits, then emulation prevention; returns the NAL unit.
    fn finish(mut self, header: u8) -> Vec<u8> {
        self.bit(true);
        while self.bits != 0 {
            self.bit(false);
        }
        let mut nal = vec![header];
        let mut zeros = 0;
        for b in self.bytes {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }
}

/// A baseline SPS NAL unit (header byte included, emulation prevention applied) that
/// asks for `width_mbs`×`height_mbs` macroblocks and `refs` reference frames: the raw
/// material of decoder-bomb tests.
pub fn crafted_sps(width_mbs: u32, height_mbs: u32, refs: u32) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.u(8, 66); // profile_idc: baseline
    w.u(8, 0xc0); // constraint flags 0 and 1
    w.u(8, 51); // level_idc 5.1
    w.ue(0); // seq_parameter_set_id
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(2); // pic_order_cnt_type
    w.ue(refs); // max_num_ref_frames
    w.bit(false); // gaps_in_frame_num_value_allowed_flag
    w.ue(width_mbs - 1);
    w.ue(height_mbs - 1);
    w.bit(true); // frame_mbs_only_flag
    w.bit(true); // direct_8x8_inference_flag
    w.bit(false); // frame_cropping_flag
    w.bit(false); // vui_parameters_present_flag
    w.finish(0x67)
}

/// `au` with each of its SPS NAL units replaced by `sps` (Annex-B, 4-byte start codes).
pub fn replace_sps(au: &[u8], sps: &[u8]) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(au.len() + sps.len());
    for nal in crate::h264::nal_units(au) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        let is_sps = nal.first().is_some_and(|h| h & 0x1f == crate::sps::NAL_SPS);
        out.extend_from_slice(if is_sps { sps } else { nal });
    }
    out.into()
}
