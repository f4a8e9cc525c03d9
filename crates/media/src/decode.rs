//! One decoder thread per track: encoded access units in, I420 frames out to a
//! [`FrameSink`] (the detection stage).
//!
//! Decoding every access unit is required (P-frames depend on their predecessors), and
//! cheap next to detection (~1 ms per 640×480 frame), so it is never skipped; only
//! detection is. After a gap (`contiguous == false`, a queue overflow) or a decode error
//! the thread asks for a keyframe and skips frames until one arrives, so no broken
//! picture is ever detected.
//!
//! The decoder never sees an SPS that [`crate::sps`] has not passed: a stream whose
//! SPS asks for more than the limits allow is dropped (counted, no keyframe request —
//! asking the sender again would only bring the same SPS back) until a keyframe with an
//! acceptable SPS arrives.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use callsight_vision::{I420Buffer, MotionVerdict};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

use crate::contain::contain;
use crate::metrics::{MediaMetrics, Stage};
use crate::sps::{check_access_unit, SpsLimits};
use crate::stats::Counters;
use crate::types::{AccessUnit as Au, Frame, FrameSink};

/// What a decoder thread needs besides its input.
pub(crate) struct DecoderCtx {
    pub track_id: u64,
    pub sink: Arc<dyn FrameSink>,
    pub counters: Arc<Counters>,
    pub metrics: Arc<MediaMetrics>,
    pub max_pixels: usize,
    pub max_dimension: usize,
    /// What an SPS may ask of the decoder.
    pub sps_limits: SpsLimits,
    /// Ask the sender for a keyframe (the driver rate-limits).
    pub request_keyframe: Box<dyn Fn() + Send>,
    /// Called once when the thread ends (track freed; the decoder count goes down).
    pub on_exit: Box<dyn FnOnce() + Send>,
}

pub(crate) fn spawn(ctx: DecoderCtx, rx: Receiver<Au>) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("h264-{}", ctx.track_id)).spawn(move || run(ctx, rx)).map(|_| ())
}

fn run(ctx: DecoderCtx, rx: Receiver<Au>) {
    let mut decoder = match Decoder::new() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(track = ctx.track_id, "cannot create H.264 decoder: {e}");
            None
        }
    };
    // Until the first keyframe nothing can be decoded.
    let mut waiting_for_keyframe = true;
    // The stream's last SPS was refused.
    let mut refused = false;
    // Ends when the driver drops the sender (unpublish, session closed, shutdown).
    while let Ok(au) = rx.recv() {
        let Some(dec) = decoder.as_mut() else {
            Counters::inc(&ctx.counters.dropped);
            continue;
        };
        if au.discontinuity && !waiting_for_keyframe {
            waiting_for_keyframe = true;
            (ctx.request_keyframe)();
        }
        if refused {
            // Until a keyframe brings an acceptable SPS, drop without asking for one.
            if !crate::h264::is_keyframe(&au.data) {
                Counters::inc(&ctx.counters.dropped);
                continue;
            }
            waiting_for_keyframe = true;
        }
        if waiting_for_keyframe {
            if !crate::h264::is_keyframe(&au.data) {
                Counters::inc(&ctx.counters.dropped);
                (ctx.request_keyframe)();
                continue;
            }
            waiting_for_keyframe = false;
        }
        // Any access unit may carry an SPS; every one is checked before decoding.
        match check_access_unit(&au.data, &ctx.sps_limits) {
            Ok(_) => refused = false,
            Err(e) => {
                if !refused {
                    tracing::warn!(track = ctx.track_id, "video refused: {e}");
                }
                Counters::inc(&ctx.counters.sps_refused);
                Counters::inc(&ctx.counters.dropped);
                refused = true;
                continue;
            }
        }
        // openh264 is C behind a thin wrapper: never let a panic in it kill the track.
        let started = Instant::now();
        ctx.metrics.observe(Stage::Receive, started.saturating_duration_since(au.arrival));
        let outcome = contain(|| match dec.decode(&au.data) {
            Ok(Some(yuv)) => Ok(Some(copy_frame(&yuv, &au, &ctx))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        });
        ctx.metrics.observe(Stage::Decode, started.elapsed());
        match outcome {
            Ok(Ok(Some(Some(frame)))) => {
                Counters::inc(&ctx.counters.decoded);
                ctx.sink.submit(ctx.track_id, frame);
            }
            Ok(Ok(Some(None))) => {
                // Decoded but refused (too large).
                Counters::inc(&ctx.counters.decoded);
                Counters::inc(&ctx.counters.dropped);
            }
            // Decoder buffering (no picture yet).
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(track = ctx.track_id, "decode error: {e}");
                Counters::inc(&ctx.counters.decode_errors);
                Counters::inc(&ctx.counters.dropped);
                waiting_for_keyframe = true;
                (ctx.request_keyframe)();
            }
            Err(_) => {
                tracing::warn!(track = ctx.track_id, "decoder panicked; restarting it");
                Counters::inc(&ctx.counters.decode_errors);
                Counters::inc(&ctx.counters.dropped);
                decoder = Decoder::new().ok();
                waiting_for_keyframe = true;
                (ctx.request_keyframe)();
            }
        }
    }
    ctx.sink.close(ctx.track_id);
    (ctx.on_exit)();
}

/// Copies the decoder's padded planes into a compact frame, downscaling (nearest
/// neighbour: the detector resizes again anyway) when it exceeds `max_pixels`.
/// None when the frame is refused for its size.
fn copy_frame(yuv: &impl YUVSource, au: &Au, ctx: &DecoderCtx) -> Option<Frame> {
    let (w, h) = yuv.dimensions();
    // Even sizes keep the 4:2:0 chroma arithmetic exact; a 1-pixel crop is harmless.
    let (w, h) = (w & !1, h & !1);
    if w == 0 || h == 0 || w > ctx.max_dimension || h > ctx.max_dimension {
        Counters::inc(&ctx.counters.refused);
        return None;
    }
    let (ys, us, _vs) = yuv.strides();
    let (ow, oh) = fit(w, h, ctx.max_pixels.max(4));
    if (ow, oh) != (w, h) {
        Counters::inc(&ctx.counters.downscaled);
    }
    let y = resample(yuv.y(), ys, w, h, ow, oh)?;
    let u = resample(yuv.u(), us, w / 2, h / 2, ow / 2, oh / 2)?;
    let v = resample(yuv.v(), us, w / 2, h / 2, ow / 2, oh / 2)?;
    Some(Frame {
        image: I420Buffer { width: ow, height: oh, y, u, v },
        orig_width: w,
        orig_height: h,
        rtp_timestamp: au.rtp_timestamp,
        rtp_time: au.rtp_time,
        capture_time: au.capture_time,
        arrival: au.arrival,
        decoded: Instant::now(),
        motion: MotionVerdict::Changed,
    })
}

/// Largest even size with the same aspect and at most `max_pixels` pixels.
fn fit(w: usize, h: usize, max_pixels: usize) -> (usize, usize) {
    if w * h <= max_pixels {
        return (w, h);
    }
    let s = (max_pixels as f64 / (w * h) as f64).sqrt();
    let ow = (((w as f64 * s) as usize) & !1).max(2);
    let oh = (((h as f64 * s) as usize) & !1).max(2);
    (ow, oh)
}

/// Nearest-neighbour copy of a `w`×`h` plane with `stride` into a compact `ow`×`oh` one.
/// None when the plane is shorter than its geometry says.
fn resample(src: &[u8], stride: usize, w: usize, h: usize, ow: usize, oh: usize) -> Option<Vec<u8>> {
    if h == 0 || stride < w || src.len() < (h - 1) * stride + w {
        return None;
    }
    let mut out = Vec::with_capacity(ow * oh);
    if (ow, oh) == (w, h) {
        for row in 0..h {
            out.extend_from_slice(&src[row * stride..row * stride + w]);
        }
        return Some(out);
    }
    let xmap: Vec<usize> = (0..ow).map(|x| x * w / ow).collect();
    for row in 0..oh {
        let line = &src[(row * h / oh) * stride..];
        out.extend(xmap.iter().map(|&x| line[x]));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_bound() {
        assert_eq!(fit(640, 480, 1920 * 1080), (640, 480));
        let (w, h) = fit(3840, 2160, 1920 * 1080);
        assert!(w * h <= 1920 * 1080 && w % 2 == 0 && h % 2 == 0);
        assert!((w as f64 / h as f64 - 16.0 / 9.0).abs() < 0.01, "{w}x{h}");
    }

    #[test]
    fn resample_reads_with_stride_and_rejects_short_planes() {
        // 4x2 plane, stride 6 (2 bytes of padding per row).
        let src = [1, 2, 3, 4, 99, 99, 5, 6, 7, 8, 99, 99];
        assert_eq!(resample(&src, 6, 4, 2, 4, 2).unwrap(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(resample(&src, 6, 4, 2, 2, 1).unwrap(), vec![1, 3]);
        assert!(resample(&src[..8], 6, 4, 2, 4, 2).is_none());
    }
}
