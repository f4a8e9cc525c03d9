//! Motion gate on real photo content: a static scene with sensor-like noise stays Static
//! (except the periodic re-check); an object cut from another photo, pasted at moving
//! positions, is Changed on the very frame it moves.

mod common;

use callsight_vision::motion::{MotionConfig, MotionGate, MotionVerdict};
use callsight_vision::preprocess::rgb_to_i420;
use callsight_vision::{I420Buffer, I420Frame};
use image::{imageops, RgbImage};

/// Deterministic ±`amp` luma noise (a small LCG), like a camera's sensor noise.
fn noisy(y: &[u8], seed: u32, amp: i32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    y.iter()
        .map(|&v| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = ((s >> 16) % (2 * amp as u32 + 1)) as i32 - amp;
            (v as i32 + n).clamp(0, 255) as u8
        })
        .collect()
}

fn frame<'a>(w: usize, h: usize, y: &'a [u8], u: &'a [u8], v: &'a [u8]) -> I420Frame<'a> {
    I420Frame { width: w, height: h, y, u, v, y_stride: w, uv_stride: w.div_ceil(2) }
}

/// bus.jpg scaled to 640×480, the background of every test.
fn background() -> RgbImage {
    imageops::resize(&common::load_rgb("bus.jpg"), 640, 480, imageops::FilterType::Triangle)
}

#[test]
fn static_scene_is_static_except_rechecks() {
    let bg = background();
    let I420Buffer { y, u, v, .. } = rgb_to_i420(&bg);
    let cfg = MotionConfig { recheck_ms: 1000.0, ..MotionConfig::default() };
    let mut gate = MotionGate::new(cfg);
    let mut verdicts = Vec::new();
    // 3 s at 30 fps, every frame with fresh noise of ±6 luma levels.
    for i in 0..90 {
        let t = i as f64 * 1000.0 / 30.0;
        let yn = noisy(&y, i, 6);
        verdicts.push((t, gate.observe(&frame(640, 480, &yn, &u, &v), t)));
    }
    assert_eq!(verdicts[0].1, MotionVerdict::Changed, "the first frame is always analysed");
    let analysed: Vec<f64> = verdicts.iter().filter(|(_, v)| v.analyse()).map(|(t, _)| *t).collect();
    let kinds: Vec<MotionVerdict> = verdicts.iter().skip(1).filter(|(_, v)| v.analyse()).map(|(_, v)| *v).collect();
    assert!(kinds.iter().all(|k| *k == MotionVerdict::Recheck), "only rechecks after the first: {verdicts:?}");
    // Re-checked once a second: at 0, ~1000 and ~2000 ms.
    assert_eq!(analysed.len(), 3, "{analysed:?}");
    for (a, b) in analysed.iter().zip(analysed.iter().skip(1)) {
        assert!((1000.0..1034.0).contains(&(b - a)), "{analysed:?}");
    }
}

#[test]
fn object_pasted_at_moving_positions_is_changed_at_once() {
    let bg = background();
    // A person's head and shoulders from zidane.jpg, 60×80 pixels.
    let zidane = common::load_rgb("zidane.jpg");
    let cut = imageops::resize(
        &imageops::crop_imm(&zidane, 700, 40, 300, 400).to_image(),
        60,
        80,
        imageops::FilterType::Triangle,
    );
    // Re-checks a second apart: none falls in the static second below.
    let mut gate = MotionGate::new(MotionConfig { recheck_ms: 1000.0, ..MotionConfig::default() });
    let I420Buffer { y: y0, u: u0, v: v0, .. } = rgb_to_i420(&bg);
    // A static second first, so the object enters a scene the gate has settled on.
    for i in 0..30 {
        let yn = noisy(&y0, i, 6);
        let verdict = gate.observe(&frame(640, 480, &yn, &u0, &v0), i as f64 * 33.3);
        assert_eq!(verdict == MotionVerdict::Static, i > 0, "frame {i}");
    }
    // Then the object walks across at 4 px per frame (120 px/s at 30 fps).
    for k in 0..40u32 {
        let mut img = bg.clone();
        imageops::overlay(&mut img, &cut, 100 + 4 * i64::from(k), 300);
        let I420Buffer { y, u, v, .. } = rgb_to_i420(&img);
        let yn = noisy(&y, 100 + k, 6);
        let t = (30 + k) as f64 * 33.3;
        let verdict = gate.observe(&frame(640, 480, &yn, &u, &v), t);
        assert_eq!(verdict, MotionVerdict::Changed, "moving object, frame {k}");
    }
}

#[test]
fn size_change_and_bad_planes_are_analysed() {
    let bg = background();
    let I420Buffer { y, u, v, .. } = rgb_to_i420(&bg);
    let mut gate = MotionGate::new(MotionConfig::default());
    assert_eq!(gate.observe(&frame(640, 480, &y, &u, &v), 0.0), MotionVerdict::Changed);
    assert_eq!(gate.observe(&frame(640, 480, &y, &u, &v), 10.0), MotionVerdict::Static);
    // Same bytes read as another size: a new stream shape, analysed.
    assert_eq!(gate.observe(&frame(320, 480, &y, &u, &v), 20.0), MotionVerdict::Changed);
    // Planes too short for the claimed size: no panic, the detector gets to refuse it.
    assert_eq!(gate.observe(&frame(640, 480, &y[..1000], &u, &v), 30.0), MotionVerdict::Changed);
    assert_eq!(gate.observe(&frame(0, 0, &y, &u, &v), 40.0), MotionVerdict::Changed);
}
