//! Simulcast: the layers (rids) of one published video track, and each subscriber's
//! choice among them. Sans-IO: frames and times in, decisions out.
//!
//! Each layer is its own RTP stream with its own random timestamp offset. [`Layers`] maps
//! every layer onto one timeline — the first layer seen (the *reference*) — so a
//! subscriber's RTP timestamps do not jump when it is switched to another layer, and a
//! detection made on one layer names the same frame on every other. The offset of a layer
//! is first estimated from sender reports (RTP time ↔ the sender's NTP clock, which all
//! layers share), then made exact by pairing a frame with the reference layer's frame of
//! the same picture (the same capture instant: their mapped times agree within a few
//! ticks). A layer is forwarded and analysed only once it is mapped.
//!
//! [`Choice`] is one subscriber's layer of one track: the smallest layer at least as tall
//! as the subscriber's tile (the largest when none is), lowered while its bitrate exceeds
//! what the subscriber's downlink gives the track; a switch waits for a keyframe of the
//! new layer, meanwhile the old one goes on (no freeze).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use str0m::media::Rid;

/// Layers of one track at most (browsers send three; more are ignored).
const MAX_LAYERS: usize = 4;
/// A layer without a frame for this long is not being sent (the publisher's encoder
/// dropped it to save its uplink).
const ACTIVE_FOR: Duration = Duration::from_millis(1000);
/// Bitrate of a layer: bytes counted over windows of this length.
const RATE_WINDOW: Duration = Duration::from_millis(1000);
/// Reference-layer frame times kept for pairing (about a second at 30 fps).
const RECENT: usize = 32;
/// A paired frame is within this many 90 kHz ticks of the estimate (5 ms).
const PAIR_TICKS: i64 = 450;
/// Going up a layer needs this much headroom over its bitrate.
const UP_HEADROOM: f64 = 1.25;

/// One layer as subscribers and the detector see it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LayerInfo {
    pub rid: Rid,
    pub width: u32,
    pub height: u32,
    /// Bits per second received, over the last window (0 until the first one closed).
    pub bps: u64,
}

struct Layer {
    rid: Rid,
    /// Latest sender report: (NTP time in ms, RTP time).
    sr: Option<(f64, u32)>,
    /// Ticks to add to this layer's RTP time (mod 2³²) to get the reference timeline.
    offset: Option<u32>,
    exact: bool,
    size: Option<(u32, u32)>,
    last_seen: Instant,
    window: (Instant, u64),
    bps: u64,
}

/// The layers of one published video track (publisher side).
pub(crate) struct Layers {
    layers: Vec<Layer>,
    /// Extended RTP times of the reference layer's latest frames (newest last).
    recent: VecDeque<u64>,
    view: Arc<[LayerInfo]>,
    /// The layer the detector decodes.
    detect: Option<Rid>,
    /// The detector's input width: the smallest layer at least this wide is decoded.
    detect_width: u32,
}

/// One frame's place among the layers.
#[derive(Clone, Debug)]
pub(crate) struct LayerFrame {
    pub rid: Rid,
    pub keyframe: bool,
    /// The frame is of the layer the detector decodes.
    pub detect: bool,
    /// The track's layers being sent and mapped, smallest first.
    pub layers: Arc<[LayerInfo]>,
}

fn ntp_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// `t` (32 bits) unwrapped to the extended time nearest `near`.
fn unwrap_near(t: u32, near: u64) -> u64 {
    let delta = t.wrapping_sub(near as u32) as i32 as i64;
    (near as i64 + delta).max(0) as u64
}

impl Layers {
    pub(crate) fn new(detect_width: u32) -> Self {
        Layers { layers: Vec::new(), recent: VecDeque::new(), view: Arc::from(Vec::new()), detect: None, detect_width }
    }

    /// Frames with a rid came: the track is sent in layers.
    pub(crate) fn is_simulcast(&self) -> bool {
        !self.layers.is_empty()
    }

    /// The layer the detector decodes, if any is mapped.
    pub(crate) fn detect_rid(&self) -> Option<Rid> {
        self.detect
    }

    /// A frame of layer `rid` at extended RTP time `ext`, with the latest sender report
    /// of its stream, its size when it is a keyframe with an SPS, and its length.
    /// Returns the frame's time on the reference timeline, `None` while the layer is not
    /// mapped yet (or is one too many).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn frame(
        &mut self,
        rid: Rid,
        ext: u64,
        sender: Option<(SystemTime, u32)>,
        size: Option<(u32, u32)>,
        keyframe: bool,
        bytes: usize,
        now: Instant,
    ) -> Option<(u64, LayerFrame)> {
        let i = match self.layers.iter().position(|l| l.rid == rid) {
            Some(i) => i,
            None if self.layers.len() < MAX_LAYERS => {
                let reference = self.layers.is_empty();
                self.layers.push(Layer {
                    rid,
                    sr: None,
                    offset: reference.then_some(0),
                    exact: reference,
                    size: None,
                    last_seen: now,
                    window: (now, 0),
                    bps: 0,
                });
                self.layers.len() - 1
            }
            None => return None,
        };
        let mut changed = false;
        {
            let l = &mut self.layers[i];
            if let Some((ntp, rtp)) = sender {
                l.sr = Some((ntp_ms(ntp), rtp));
            }
            if size.is_some() && size != l.size {
                l.size = size;
                changed = true;
            }
            changed |= now.saturating_duration_since(l.last_seen) > ACTIVE_FOR;
            l.last_seen = now;
            l.window.1 += bytes as u64;
            let span = now.saturating_duration_since(l.window.0);
            if span >= RATE_WINDOW {
                l.bps = (l.window.1 as f64 * 8.0 / span.as_secs_f64()) as u64;
                l.window = (now, 0);
                changed = true;
            }
        }
        let mapped = if i == 0 {
            self.recent.push_back(ext);
            if self.recent.len() > RECENT {
                self.recent.pop_front();
            }
            ext
        } else {
            let was_mapped = self.layers[i].offset.is_some();
            let t = self.map(i, ext)?;
            changed |= !was_mapped;
            t
        };
        changed |= self.layers.iter().any(|l| {
            let gone = now.saturating_duration_since(l.last_seen) > ACTIVE_FOR;
            gone == self.view.iter().any(|v| v.rid == l.rid)
        });
        if changed {
            self.rebuild(now);
        }
        let frame = LayerFrame { rid, keyframe, detect: self.detect == Some(rid), layers: self.view.clone() };
        Some((mapped, frame))
    }

    /// Layer `i`'s frame at `ext` on the reference timeline: from its offset, else
    /// estimated from the sender reports and paired with a reference frame.
    fn map(&mut self, i: usize, ext: u64) -> Option<u64> {
        let near = *self.recent.back()?;
        let layer = &self.layers[i];
        if let (Some(off), true) = (layer.offset, layer.exact) {
            return Some(unwrap_near((ext as u32).wrapping_add(off), near));
        }
        let estimate = match (self.layers[0].sr, layer.sr) {
            (Some((ref_ntp, ref_rtp)), Some((ntp, rtp))) => {
                // The reference's RTP time at this layer's report instant.
                let at = ref_rtp.wrapping_add(((ntp - ref_ntp) * 90.0).round() as i64 as u32);
                at.wrapping_sub(rtp)
            }
            _ => layer.offset?,
        };
        let guess = unwrap_near((ext as u32).wrapping_add(estimate), near);
        let paired = self.recent.iter().copied().find(|r| (*r as i64 - guess as i64).abs() <= PAIR_TICKS);
        let layer = &mut self.layers[i];
        match paired {
            Some(r) => {
                layer.offset = Some((r as u32).wrapping_sub(ext as u32));
                layer.exact = true;
                Some(r)
            }
            None => {
                layer.offset = Some(estimate);
                Some(guess)
            }
        }
    }

    fn rebuild(&mut self, now: Instant) {
        let mut view: Vec<LayerInfo> = self
            .layers
            .iter()
            .filter(|l| l.offset.is_some() && now.saturating_duration_since(l.last_seen) <= ACTIVE_FOR)
            .filter_map(|l| l.size.map(|(width, height)| LayerInfo { rid: l.rid, width, height, bps: l.bps }))
            .collect();
        view.sort_by_key(|l| (l.height, l.width));
        self.detect = view.iter().find(|l| l.width >= self.detect_width).or(view.last()).map(|l| l.rid);
        tracing::trace!(layers = ?view, detect = ?self.detect, "simulcast layers");
        self.view = Arc::from(view);
    }
}

/// One subscriber's layer of one simulcast track.
#[derive(Debug, Default)]
pub(crate) struct Choice {
    current: Option<Rid>,
}

/// What to do with one frame of a simulcast track, for one subscriber.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Write,
    Drop,
    /// Drop it, and ask the publisher for a keyframe of this layer (the one wanted).
    DropAskKeyframe(Rid),
    /// Write it (the current layer goes on), and ask for a keyframe of the layer wanted.
    WriteAskKeyframe(Rid),
}

/// The layer for a tile `tile` (device pixels; `None`: not told, the largest) and a
/// downlink share `limit` (bits/s), from `layers` (smallest first); `current` gets up a
/// layer only with headroom. `None`: nothing (no layer, or a hidden tile).
pub(crate) fn pick(
    layers: &[LayerInfo],
    tile: Option<(u32, u32)>,
    limit: Option<u64>,
    current: Option<Rid>,
) -> Option<Rid> {
    if tile.is_some_and(|(w, h)| w == 0 || h == 0) || layers.is_empty() {
        return None;
    }
    let fits = match tile {
        Some((_, h)) => layers.iter().position(|l| l.height >= h).unwrap_or(layers.len() - 1),
        None => layers.len() - 1,
    };
    let now_at = current.and_then(|c| layers.iter().position(|l| l.rid == c));
    let mut at = fits;
    if let Some(limit) = limit {
        while at > 0 {
            let l = &layers[at];
            let need = if now_at.is_some_and(|n| at > n) { l.bps as f64 * UP_HEADROOM } else { l.bps as f64 };
            if need <= limit as f64 {
                break;
            }
            at -= 1;
        }
    }
    Some(layers[at].rid)
}

impl Choice {
    /// Decides about one frame of `frame.rid`.
    pub(crate) fn admit(&mut self, frame: &LayerFrame, tile: Option<(u32, u32)>, limit: Option<u64>) -> Admit {
        let Some(want) = pick(&frame.layers, tile, limit, self.current) else {
            self.current = None;
            return Admit::Drop;
        };
        let current_live = self.current.is_some_and(|c| frame.layers.iter().any(|l| l.rid == c));
        if frame.rid == want {
            if self.current == Some(want) {
                return Admit::Write;
            }
            if frame.keyframe {
                self.current = Some(want);
                return Admit::Write;
            }
            return if current_live { Admit::Drop } else { Admit::DropAskKeyframe(want) };
        }
        if Some(frame.rid) == self.current {
            return Admit::WriteAskKeyframe(want);
        }
        Admit::Drop
    }

    /// The layer being forwarded.
    pub(crate) fn current(&self) -> Option<Rid> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 416;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn sr(ms: u64, rtp: u32) -> Option<(SystemTime, u32)> {
        Some((UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms), rtp))
    }

    /// Three layers of one picture sequence, each RTP clock with its own offset; returns
    /// the mapped time of each layer's frame `n` (30 fps), SRs sent with frame 0.
    fn three_layers(frames: u64) -> (Layers, Vec<[Option<u64>; 3]>) {
        let t0 = Instant::now();
        let offsets: [u32; 3] = [1_000, 4_294_000_000, 77_777];
        let sizes = [(320, 180), (640, 360), (1280, 720)];
        let rids = [Rid::from("q"), Rid::from("h"), Rid::from("f")];
        let mut layers = Layers::new(W);
        let mut out = Vec::new();
        for n in 0..frames {
            let mut row = [None; 3];
            for k in 0..3 {
                let rtp = offsets[k].wrapping_add((n * 3000) as u32);
                // Extended like str0m: from the first value seen, without wrapping back.
                let ext = offsets[k] as u64 + n * 3000;
                // SR instant: frame n's capture + 3 ms (rtp advanced by 270 ticks).
                let sender = (n % 30 == 0).then(|| sr(n * 100 / 3 + 3, rtp.wrapping_add(270))).flatten();
                let size = (n % 30 == 0).then_some(sizes[k]);
                let r = layers.frame(rids[k], ext, sender, size, n % 30 == 0, 1000, at(t0, n * 33));
                row[k] = r.map(|(t, _)| t);
            }
            out.push(row);
        }
        (layers, out)
    }

    #[test]
    fn every_layer_maps_exactly_onto_the_reference_timeline() {
        let (layers, rows) = three_layers(10);
        for (n, row) in rows.iter().enumerate() {
            let want = 1_000 + n as u64 * 3000;
            assert_eq!(row[0], Some(want), "reference frame {n}");
            assert_eq!(row[1], Some(want), "h frame {n}");
            assert_eq!(row[2], Some(want), "f frame {n}");
        }
        // The 640-wide layer is the smallest at least 416 wide.
        assert_eq!(layers.detect_rid(), Some(Rid::from("h")));
    }

    #[test]
    fn a_layer_without_sender_reports_is_not_mapped() {
        let t0 = Instant::now();
        let mut layers = Layers::new(W);
        let q = layers.frame(Rid::from("q"), 10, None, Some((320, 180)), true, 10, t0);
        assert_eq!(q.map(|(t, _)| t), Some(10));
        let h = layers.frame(Rid::from("h"), 999, None, Some((640, 360)), true, 10, t0);
        assert!(h.is_none());
    }

    #[test]
    fn a_stopped_layer_leaves_the_view_and_the_detector_moves() {
        let t0 = Instant::now();
        let (mut layers, _) = three_layers(5);
        // Only q and f go on; a second and more later, h is gone.
        let mut last = None;
        for n in 5..50u64 {
            let q = layers.frame(Rid::from("q"), 1_000 + n * 3000, None, None, false, 100, at(t0, n * 33));
            last =
                layers.frame(Rid::from("f"), 77_777 + n * 3000, None, None, false, 100, at(t0, n * 33)).map(|(_, f)| f);
            assert!(q.is_some());
        }
        let f = last.unwrap();
        let rids: Vec<_> = f.layers.iter().map(|l| l.rid).collect();
        assert_eq!(rids, vec![Rid::from("q"), Rid::from("f")]);
        assert_eq!(layers.detect_rid(), Some(Rid::from("f")));
        assert!(f.detect);
    }

    fn info(rid: &str, h: u32, bps: u64) -> LayerInfo {
        LayerInfo { rid: Rid::from(rid), width: h * 16 / 9, height: h, bps }
    }

    #[test]
    fn the_tile_and_the_downlink_pick_the_layer() {
        let l = [info("q", 180, 150_000), info("h", 360, 500_000), info("f", 720, 1_500_000)];
        assert_eq!(pick(&l, Some((300, 170)), None, None), Some(Rid::from("q")));
        assert_eq!(pick(&l, Some((600, 340)), None, None), Some(Rid::from("h")));
        assert_eq!(pick(&l, Some((1920, 1080)), None, None), Some(Rid::from("f")));
        assert_eq!(pick(&l, None, None, None), Some(Rid::from("f")));
        assert_eq!(pick(&l, Some((0, 0)), None, None), None);
        // A 1 Mbit/s share: f does not fit, h does.
        assert_eq!(pick(&l, None, Some(1_000_000), None), Some(Rid::from("h")));
        // Going up from h to f needs 25 % headroom; staying on f does not.
        assert_eq!(pick(&l, None, Some(1_600_000), Some(Rid::from("h"))), Some(Rid::from("h")));
        assert_eq!(pick(&l, None, Some(1_600_000), Some(Rid::from("f"))), Some(Rid::from("f")));
        // Nothing fits: the smallest anyway.
        assert_eq!(pick(&l, None, Some(10_000), None), Some(Rid::from("q")));
    }

    fn frame(rid: &str, keyframe: bool, layers: &Arc<[LayerInfo]>) -> LayerFrame {
        LayerFrame { rid: Rid::from(rid), keyframe, detect: false, layers: layers.clone() }
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_of_the_new_layer_and_the_old_goes_on() {
        let l: Arc<[LayerInfo]> = Arc::from(vec![info("q", 180, 0), info("h", 360, 0), info("f", 720, 0)]);
        let mut c = Choice::default();
        let small = Some((320, 180));
        // Start: nothing forwarded until a keyframe of q.
        assert_eq!(c.admit(&frame("q", false, &l), small, None), Admit::DropAskKeyframe(Rid::from("q")));
        assert_eq!(c.admit(&frame("f", true, &l), small, None), Admit::Drop);
        assert_eq!(c.admit(&frame("q", true, &l), small, None), Admit::Write);
        assert_eq!(c.admit(&frame("q", false, &l), small, None), Admit::Write);
        // The tile grows: q goes on (asking for f's keyframe) until f's keyframe comes.
        let big = Some((1280, 720));
        assert_eq!(c.admit(&frame("q", false, &l), big, None), Admit::WriteAskKeyframe(Rid::from("f")));
        assert_eq!(c.admit(&frame("f", false, &l), big, None), Admit::Drop);
        assert_eq!(c.admit(&frame("f", true, &l), big, None), Admit::Write);
        assert_eq!(c.admit(&frame("q", false, &l), big, None), Admit::Drop);
        assert_eq!(c.current(), Some(Rid::from("f")));
        // Hidden: nothing.
        assert_eq!(c.admit(&frame("f", false, &l), Some((0, 0)), None), Admit::Drop);
        assert_eq!(c.current(), None);
    }
}
