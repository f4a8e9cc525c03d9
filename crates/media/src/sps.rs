//! The decoder-bomb guard: every H.264 sequence parameter set (SPS) is parsed and
//! checked *before* the decoder sees it.
//!
//! openh264 sizes its buffers from the SPS alone: up to 36 864 macroblocks (4096×2304)
//! with 16 reference frames, roughly 250 MB per decoder from a keyframe of a few tens of
//! kilobytes. [`check`] refuses a stream whose coded picture exceeds
//! [`SpsLimits::max_video_pixels`], whose `max_num_ref_frames` exceeds
//! [`SpsLimits::max_ref_frames`], or whose decoded picture buffer (reference frames plus
//! the frame being decoded) would exceed [`SpsLimits::max_dpb_bytes`]. The SPS itself is
//! parsed by `h264-reader`, a kept parser of the field (exp-Golomb fields, emulation
//! prevention, scaling lists, VUI) rather than a hand-written one.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use thiserror::Error;

/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a subset SPS (SVC/MVC); it opens with the same `seq_parameter_set_data`.
pub const NAL_SUBSET_SPS: u8 = 15;

/// 2560×1440 (QHD): a 1080p camera and a QHD screen share pass, 4K is refused. A QHD
/// picture is 5.5 MB in I420; a decoder at the limit with a handful of reference frames
/// stays in the tens of megabytes instead of openh264's ~250 MB worst case.
pub const DEFAULT_MAX_VIDEO_PIXELS: u64 = 2560 * 1440;
/// The largest `max_num_ref_frames` H.264 allows (A.3.1: MaxDpbFrames ≤ 16).
pub const DEFAULT_MAX_REF_FRAMES: u32 = 16;
/// 64 MiB of decoded picture buffer per track: 1080p with all 16 reference frames
/// (≈ 53 MB) passes, QHD with 16 does not (≈ 94 MB).
pub const DEFAULT_MAX_DPB_BYTES: u64 = 64 << 20;

/// What a stream may ask of a decoder. The server's flags set these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsLimits {
    /// Largest coded picture (macroblock-aligned width × height), in pixels.
    pub max_video_pixels: u64,
    /// Largest `max_num_ref_frames`.
    pub max_ref_frames: u32,
    /// Largest decoded picture buffer, in bytes of 8-bit 4:2:0 pictures: coded pixels
    /// × 1.5 × (`max_num_ref_frames` + 1).
    pub max_dpb_bytes: u64,
}

impl Default for SpsLimits {
    fn default() -> Self {
        SpsLimits {
            max_video_pixels: DEFAULT_MAX_VIDEO_PIXELS,
            max_ref_frames: DEFAULT_MAX_REF_FRAMES,
            max_dpb_bytes: DEFAULT_MAX_DPB_BYTES,
        }
    }
}

/// What an accepted SPS says about the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub level_idc: u8,
    /// Coded size: whole macroblocks (what the decoder allocates).
    pub coded_width: u32,
    pub coded_height: u32,
    /// Displayed size: the coded size less the SPS's frame cropping.
    pub width: u32,
    pub height: u32,
    pub max_num_ref_frames: u32,
    /// Decoded picture buffer estimate, in bytes (see [`SpsLimits::max_dpb_bytes`]).
    pub dpb_bytes: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpsError {
    #[error("NAL unit type {0} is not a sequence parameter set")]
    NotSps(u8),
    #[error("malformed SPS: {0}")]
    Malformed(String),
    #[error(
        "coded picture {width}x{height} ({pixels} pixels) exceeds the limit of {limit} pixels (--max-video-pixels)"
    )]
    TooManyPixels { width: u64, height: u64, pixels: u64, limit: u64 },
    #[error("{refs} reference frames exceed the limit of {limit}")]
    TooManyRefFrames { refs: u32, limit: u32 },
    #[error("decoded picture buffer of {bytes} bytes exceeds the limit of {limit} bytes")]
    DpbTooLarge { bytes: u64, limit: u64 },
}

/// Parses one SPS (or subset SPS) NAL unit — header byte included, no start code,
/// emulation prevention bytes still in — and checks it against `limits`.
pub fn check(sps_nal: &[u8], limits: &SpsLimits) -> Result<SpsInfo, SpsError> {
    let Some(&header) = sps_nal.first() else { return Err(SpsError::Malformed("empty NAL unit".into())) };
    let nal_type = header & 0x1f;
    if nal_type != NAL_SPS && nal_type != NAL_SUBSET_SPS {
        return Err(SpsError::NotSps(nal_type));
    }
    let nal = RefNal::new(sps_nal, &[], true);
    let sps = SeqParameterSet::from_bits(nal.rbsp_bits()).map_err(|e| SpsError::Malformed(format!("{e:?}")))?;

    // In macroblocks; with field coding a map unit is a macroblock pair (7.4.2.1.1).
    let width_mbs = u64::from(sps.pic_width_in_mbs_minus1) + 1;
    let map_units = u64::from(sps.pic_height_in_map_units_minus1) + 1;
    let height_mbs = match sps.frame_mbs_flags {
        h264_reader::nal::sps::FrameMbsFlags::Frames => map_units,
        h264_reader::nal::sps::FrameMbsFlags::Fields { .. } => map_units * 2,
    };
    let (coded_width, coded_height) = (width_mbs * 16, height_mbs * 16);
    let pixels = coded_width * coded_height;
    if pixels > limits.max_video_pixels {
        return Err(SpsError::TooManyPixels {
            width: coded_width,
            height: coded_height,
            pixels,
            limit: limits.max_video_pixels,
        });
    }
    let refs = sps.max_num_ref_frames;
    if refs > limits.max_ref_frames {
        return Err(SpsError::TooManyRefFrames { refs, limit: limits.max_ref_frames });
    }
    let dpb_bytes = pixels * 3 / 2 * (u64::from(refs) + 1);
    if dpb_bytes > limits.max_dpb_bytes {
        return Err(SpsError::DpbTooLarge { bytes: dpb_bytes, limit: limits.max_dpb_bytes });
    }
    let (width, height) = sps.pixel_dimensions().map_err(|e| SpsError::Malformed(format!("{e:?}")))?;
    Ok(SpsInfo {
        profile_idc: sps.profile_idc.into(),
        level_idc: sps.level_idc,
        // Both fit: pixels ≤ the limit, itself a u64 far below u32::MAX².
        coded_width: u32::try_from(coded_width).unwrap_or(u32::MAX),
        coded_height: u32::try_from(coded_height).unwrap_or(u32::MAX),
        width,
        height,
        max_num_ref_frames: refs,
        dpb_bytes,
    })
}

/// The SPS and subset-SPS NAL units of an Annex-B access unit.
pub fn sps_nals(au: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::h264::nal_units(au).filter(|n| matches!(n.first().map(|h| h & 0x1f), Some(NAL_SPS | NAL_SUBSET_SPS)))
}

/// Checks every SPS of an access unit: `Ok(None)` when it holds none, the last one's
/// info when all pass, the first refusal otherwise.
pub fn check_access_unit(au: &[u8], limits: &SpsLimits) -> Result<Option<SpsInfo>, SpsError> {
    let mut last = None;
    for nal in sps_nals(au) {
        last = Some(check(nal, limits)?);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{crafted_sps, encode_loop};
    use image::RgbImage;

    /// A real keyframe from openh264's encoder at `width`×`height`.
    fn encoded_keyframe(width: u32, height: u32) -> Vec<u8> {
        let photo = RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let frames = encode_loop(&photo, width, height, 1, 0.0, 500_000).expect("encode");
        frames[0].data.to_vec()
    }

    #[test]
    fn accepts_real_encoder_output_and_reads_its_size() {
        for (w, h) in [(320, 240), (640, 480), (1280, 720), (1920, 1080)] {
            let au = encoded_keyframe(w, h);
            assert_eq!(sps_nals(&au).count(), 1, "{w}x{h}: one SPS per keyframe");
            let info = check_access_unit(&au, &SpsLimits::default()).expect("accepted").expect("has an SPS");
            assert_eq!((info.width, info.height), (w, h));
            assert_eq!((info.coded_width, info.coded_height), (w.div_ceil(16) * 16, h.div_ceil(16) * 16));
            assert!(info.max_num_ref_frames <= 16);
        }
    }

    #[test]
    fn real_1080p_stream_is_refused_under_a_smaller_pixel_limit() {
        let au = encoded_keyframe(1920, 1080);
        let limits = SpsLimits { max_video_pixels: 1280 * 720, ..SpsLimits::default() };
        let err = check_access_unit(&au, &limits).unwrap_err();
        assert_eq!(err, SpsError::TooManyPixels { width: 1920, height: 1088, pixels: 1920 * 1088, limit: 1280 * 720 });
        // A P-frame carries no SPS: nothing to refuse, nothing to accept.
        assert_eq!(check_access_unit(&[0, 0, 0, 1, 0x41, 0x9a, 0x02], &limits), Ok(None));
    }

    #[test]
    fn crafted_sps_round_trips_through_the_parser() {
        // The writer is right: a small crafted SPS reads back as written.
        let info = check(&crafted_sps(20, 15, 1), &SpsLimits::default()).unwrap();
        assert_eq!((info.width, info.height, info.max_num_ref_frames, info.level_idc), (320, 240, 1, 51));
    }

    #[test]
    fn refuses_decoder_bombs() {
        let limits = SpsLimits::default();
        // openh264's maximum: 4096×2304 (36 864 macroblocks), 16 reference frames.
        assert!(matches!(
            check(&crafted_sps(256, 144, 16), &limits),
            Err(SpsError::TooManyPixels { width: 4096, height: 2304, .. })
        ));
        // Far beyond any level: 65 536 × 65 536 macroblocks.
        assert!(matches!(check(&crafted_sps(65_536, 65_536, 1), &limits), Err(SpsError::TooManyPixels { .. })));
        // Absurd reference count at a small size.
        assert_eq!(
            check(&crafted_sps(20, 15, 1_000_000), &limits),
            Err(SpsError::TooManyRefFrames { refs: 1_000_000, limit: 16 })
        );
        // QHD passes the pixel limit, but not with 16 reference frames.
        assert!(check(&crafted_sps(160, 90, 4), &limits).is_ok());
        assert!(matches!(check(&crafted_sps(160, 90, 16), &limits), Err(SpsError::DpbTooLarge { .. })));
        // The same bomb inside an access unit, after a start code, is found and refused.
        let mut au = vec![0, 0, 0, 1];
        au.extend_from_slice(&crafted_sps(256, 144, 16));
        au.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84]);
        assert!(matches!(check_access_unit(&au, &limits), Err(SpsError::TooManyPixels { .. })));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let limits = SpsLimits::default();
        assert!(matches!(check(&[], &limits), Err(SpsError::Malformed(_))));
        assert_eq!(check(&[0x65, 1, 2], &limits), Err(SpsError::NotSps(5)));
        assert!(matches!(check(&[0x67], &limits), Err(SpsError::Malformed(_))));
        assert!(matches!(check(&[0x67, 0xff, 0xff, 0xff, 0xff, 0xff], &limits), Err(SpsError::Malformed(_))));
    }
}
