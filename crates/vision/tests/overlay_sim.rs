//! The overlay on a simulated clock: the overlay bench's two walkers
//! (scripts/make-overlay-video.py: A goes 200 px/s left–right, B 117 px/s up–down, both
//! reversing every 1.2 s, 640×480 at 30 fps), a detector that sees each sampled frame's
//! true boxes (±1 % jitter) at a given rate with 60 ms latency, the real `Tracker`, and the
//! page's drawing (web/track.js `boxesAt`: the newest result with capture ≤ the frame's,
//! tracked boxes extrapolated by their velocity for at most 500 ms, lost tracks fading
//! over 400 ms). Every displayed frame is scored against its truth like
//! tests/e2e/overlay.bench.js scores the browser: mean IoU, share of IoU ≥ 0.5, id switches.
//!
//! What it isolates: the tracker and the drawing rule, at known detection rates and
//! latency, with no browser, network or machine load in the way. What it leaves out: the
//! real detector's misses and box errors, decoding, and the browser's frame timing (the
//! browser bench measures those).
//!
//! `cargo test --workspace --test overlay_sim -- --nocapture` prints the table.

use callsight_vision::{Detection, Tracker, TrackerConfig};

const FPS: f64 = 30.0;
const LATENCY_MS: f64 = 60.0;
const MAX_EXTRAPOLATE_MS: f64 = 500.0;
const FADE_MS: f64 = 400.0;
const TRACK_WINDOW_MS: f64 = 2000.0;

fn tri(p: f64) -> f64 {
    1.0 - (1.0 - 2.0 * p.rem_euclid(1.0)).abs()
}

/// The truth at capture time `t_ms`: (object, `[x, y, w, h]` normalised), as the video
/// generator draws it (2.4 s loop).
fn truth(t_ms: f64) -> [(usize, [f64; 4]); 2] {
    let p = t_ms / 2400.0;
    let a = [(10.0 + 240.0 * tri(p)) / 640.0, 70.0 / 480.0, 178.0 / 640.0, 300.0 / 480.0];
    let b = [460.0 / 640.0, (5.0 + 140.0 * tri(p + 0.25)) / 480.0, 112.0 / 640.0, 320.0 / 480.0];
    [(0, a), (1, b)]
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let iy = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// One box of a result as the page receives it.
#[derive(Clone, Debug)]
struct Sent {
    bbox: [f64; 4],
    track_id: Option<u64>,
    velocity: Option<[f64; 4]>,
}

struct Result_ {
    capture: f64,
    boxes: Vec<Sent>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Drawing {
    /// Each result's boxes as they came (no tracker): the drawing before tracking.
    AsIs,
    /// The tracker's boxes moved to the frame's capture time (the page's default).
    Predicted,
}

struct Row {
    mean: f64,
    good: f64,
    switches: usize,
}

/// The server side: detections at `rate` per second (first at `phase` ms), through the
/// tracker unless `drawing` is `AsIs`.
fn results(rate: f64, drawing: Drawing, config: &TrackerConfig, until: f64) -> Vec<Result_> {
    let mut tracker = Tracker::new(config.clone());
    let mut seed = 0x2545_f491u32;
    let mut jitter = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((seed >> 8) as f64 / (1u32 << 24) as f64 - 0.5) * 0.02
    };
    let mut out = Vec::new();
    // Detection samples the newest frame: capture times on the 30 fps grid.
    let frame_ms = 1000.0 / FPS;
    let mut next = 0.0;
    let mut n = 0u64;
    while next < until {
        let capture = (next / frame_ms).ceil() * frame_ms;
        let dets: Vec<Detection> = truth(capture)
            .iter()
            .map(|(_, b)| {
                let (dw, dh) = (b[2] * jitter(), b[3] * jitter());
                let bbox = [b[0] + dw, b[1] + dh, b[2] * (1.0 + jitter()), b[3] * (1.0 + jitter())];
                Detection { class_id: 0, label: "person".into(), score: 0.8, bbox: bbox.map(|v| v as f32) }
            })
            .collect();
        let boxes = match drawing {
            Drawing::AsIs => {
                dets.iter().map(|d| Sent { bbox: d.bbox.map(f64::from), track_id: None, velocity: None }).collect()
            }
            Drawing::Predicted => tracker
                .update(&dets, capture)
                .iter()
                .map(|o| Sent {
                    bbox: o.bbox.map(f64::from),
                    track_id: Some(o.track_id),
                    velocity: Some(o.velocity.map(f64::from)),
                })
                .collect(),
        };
        out.push(Result_ { capture, boxes });
        n += 1;
        next = n as f64 * 1000.0 / rate;
    }
    out
}

/// web/track.js `boxesAt` for one frame: (box, track id).
fn draw(results: &[Result_], base: usize, frame: f64, drawing: Drawing) -> Vec<([f64; 4], Option<u64>)> {
    let b = &results[base];
    if drawing == Drawing::AsIs {
        return b.boxes.iter().map(|s| (s.bbox, s.track_id)).collect();
    }
    // Newest observation of every track in the window, and where it went missing.
    let mut seen: Vec<(u64, f64, Sent, Option<f64>, bool)> = Vec::new();
    for i in (0..=base).rev() {
        let r = &results[i];
        if r.capture < frame - TRACK_WINDOW_MS {
            break;
        }
        for s in &r.boxes {
            let Some(id) = s.track_id else { continue };
            if !seen.iter().any(|x| x.0 == id) {
                let missing = results.get(i + 1).filter(|_| i < base).map(|n| n.capture);
                seen.push((id, r.capture, s.clone(), missing, i == base));
            }
        }
    }
    let mut out = Vec::new();
    for (id, capture, s, missing, in_base) in seen {
        if !in_base {
            let Some(m) = missing else { continue };
            if frame - m >= FADE_MS {
                continue;
            }
        }
        let dt = (frame - capture).clamp(0.0, MAX_EXTRAPOLATE_MS) / 1000.0;
        let v = s.velocity.unwrap_or([0.0; 4]);
        let bx = [
            s.bbox[0] + v[0] * dt,
            s.bbox[1] + v[1] * dt,
            (s.bbox[2] + v[2] * dt).max(0.0),
            (s.bbox[3] + v[3] * dt).max(0.0),
        ];
        out.push((bx, Some(id)));
    }
    out
}

/// Scores the displayed frames from `from` to `until` ms of capture time. `hold`: the
/// picture is held back by the latency, so a frame's own result has arrived when it shows.
fn score(results: &[Result_], drawing: Drawing, hold: bool, from: f64, until: f64) -> Row {
    let mut ious = Vec::new();
    let mut last_id: [Option<u64>; 2] = [None; 2];
    let mut switches = 0;
    let mut k = (from * FPS / 1000.0).ceil() as u64;
    loop {
        let frame = k as f64 * 1000.0 / FPS;
        if frame > until {
            break;
        }
        k += 1;
        let shown_at = if hold { frame + LATENCY_MS } else { frame };
        let base = results.iter().rposition(|r| r.capture <= frame && r.capture + LATENCY_MS <= shown_at);
        let drawn = base.map(|b| draw(results, b, frame, drawing)).unwrap_or_default();
        // Greedy pairing by IoU, as the browser bench does.
        let mut pairs = Vec::new();
        for (o, t) in truth(frame) {
            for (j, d) in drawn.iter().enumerate() {
                pairs.push((iou(t, d.0), o, j));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut best = [(0.0, None); 2];
        let (mut used_o, mut used_d) = ([false; 2], vec![false; drawn.len()]);
        for (v, o, j) in pairs {
            if used_o[o] || used_d[j] || v <= 0.0 {
                continue;
            }
            used_o[o] = true;
            used_d[j] = true;
            best[o] = (v, drawn[j].1);
        }
        for (o, (v, id)) in best.into_iter().enumerate() {
            ious.push(v);
            if let (true, Some(id)) = (v >= 0.3, id) {
                if last_id[o].is_some_and(|l| l != id) {
                    switches += 1;
                }
                last_id[o] = Some(id);
            }
        }
    }
    let n = ious.len().max(1) as f64;
    Row { mean: ious.iter().sum::<f64>() / n, good: ious.iter().filter(|&&v| v >= 0.5).count() as f64 / n, switches }
}

fn run(rate: f64, drawing: Drawing, hold: bool, config: &TrackerConfig) -> Row {
    // 1 s to settle, then four loops of the video.
    let until = 1000.0 + 4.0 * 2400.0;
    let r = results(rate, drawing, config, until + 1000.0);
    score(&r, drawing, hold, 1000.0, until)
}

#[test]
fn overlay_quality_table_and_goal() {
    let config = TrackerConfig::default();
    println!("\n| detection | drawing | hold | mean IoU | IoU ≥ 0.5 | id switches |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (rate_name, rate) in [("15/s (natural cap)", 15.0), ("10/s", 10.0), ("5/s", 5.0), ("2/s", 2.0)] {
        for (drawing, name) in [(Drawing::AsIs, "as is, no tracking"), (Drawing::Predicted, "tracking + prediction")] {
            for hold in [true, false] {
                let row = run(rate, drawing, hold, &config);
                println!(
                    "| {rate_name} | {name} | {} | {:.2} | {:.0} % | {} |",
                    if hold { "on" } else { "off" },
                    row.mean,
                    row.good * 100.0,
                    row.switches
                );
                rows.push((rate, drawing, hold, row));
            }
        }
    }
    let get = |rate: f64, drawing: Drawing, hold: bool| {
        &rows.iter().find(|r| r.0 == rate && r.1 == drawing && r.2 == hold).expect("row").3
    };
    // The goal of issue 11: mean IoU ≥ 0.75 at display rate with detection at ≤ 10/s, no
    // id switches for objects that do not cross — with and without the hold.
    for rate in [10.0, 5.0] {
        for hold in [true, false] {
            let r = get(rate, Drawing::Predicted, hold);
            assert!(r.mean >= 0.75, "{rate}/s hold {hold}: mean IoU {:.3}", r.mean);
            assert_eq!(r.switches, 0, "{rate}/s hold {hold}");
        }
    }
    // Prediction is what closes the gap: without the hold, boxes as they came lag by the
    // detection interval plus the latency.
    assert!(get(5.0, Drawing::Predicted, false).mean > get(5.0, Drawing::AsIs, false).mean + 0.05);
    // At 2 results/s A moves ¾ of its width between two results: the tracker still
    // confirms and follows it (IoU association alone never confirms it).
    let slow = get(2.0, Drawing::Predicted, true);
    assert_eq!(slow.switches, 0);
    assert!(slow.good > 0.6, "2/s: {:.2} of frames with IoU ≥ 0.5", slow.good);
    let iou_only = run(2.0, Drawing::Predicted, true, &TrackerConfig { max_jump_speed: 0.0, ..config });
    println!(
        "| 2/s | tracking + prediction, IoU-only association (before stage 1b) | on | {:.2} | {:.0} % | {} |",
        iou_only.mean,
        iou_only.good * 100.0,
        iou_only.switches
    );
    assert!(iou_only.good < slow.good, "IoU-only association: {:.2} vs {:.2}", iou_only.good, slow.good);
}
