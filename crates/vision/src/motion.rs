//! Motion gate, sans-IO: decides per decoded frame whether the detector needs to look at
//! it, as NVR software does. The luma plane is averaged over a coarse grid of cells
//! (`grid_width` × proportional rows, e.g. 64×48 for 4:3: 10×10-pixel cells at 640×480,
//! which averages sensor noise away) and compared with the grid of the **last frame that
//! was analysed** (so slow drift adds up until it counts). A frame whose share of changed
//! cells reaches `changed_fraction` is [`MotionVerdict::Changed`]; otherwise it is
//! [`MotionVerdict::Static`], except that a static scene is re-checked every `recheck_ms`
//! of capture time ([`MotionVerdict::Recheck`]). `Changed` and `Recheck` frames become the
//! new reference: the caller analyses them. Meanwhile the caller's tracks coast
//! (a tracker's `max_coast_ms` should exceed `recheck_ms`, or the caller re-feeds the last
//! result for static frames).
//!
//! Cost: one pass over the luma plane summing into the grid (no allocation after the first
//! frame of a size).

use crate::types::I420Frame;

/// Tuning of [`MotionGate`].
#[derive(Clone, Debug, PartialEq)]
pub struct MotionConfig {
    /// Cells across the frame (rows follow the aspect ratio).
    pub grid_width: usize,
    /// A cell changed when its mean luma moved by more than this (0..255).
    pub cell_threshold: f32,
    /// The frame changed when at least this share of cells changed (0..1).
    pub changed_fraction: f32,
    /// A static scene is analysed again after this much capture time.
    pub recheck_ms: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        // Twice a second: a tracker's coast limit (1 s by default) must exceed it.
        MotionConfig { grid_width: 64, cell_threshold: 10.0, changed_fraction: 0.002, recheck_ms: 500.0 }
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MotionVerdict {
    /// The picture changed since the last analysed frame: analyse it.
    Changed,
    /// Nothing moved: skip it (tracks coast).
    Static,
    /// Nothing moved, but the scene is due for its periodic re-check: analyse it.
    Recheck,
}

impl MotionVerdict {
    /// True for the verdicts whose frame should go to the detector.
    pub fn analyse(self) -> bool {
        !matches!(self, MotionVerdict::Static)
    }
}

/// The gate of one video stream. See the module documentation.
#[derive(Debug)]
pub struct MotionGate {
    config: MotionConfig,
    /// Grid of the last analysed frame, its size, and when it was analysed.
    reference: Vec<f32>,
    size: (usize, usize),
    grid: (usize, usize),
    analysed_at: f64,
    scratch: Vec<f32>,
}

impl MotionGate {
    pub fn new(config: MotionConfig) -> Self {
        MotionGate {
            config,
            reference: Vec::new(),
            size: (0, 0),
            grid: (0, 0),
            analysed_at: f64::NEG_INFINITY,
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// Share of cells that changed in the last observed frame against the reference.
    fn changed_share(&self) -> f32 {
        let over = self
            .scratch
            .iter()
            .zip(&self.reference)
            .filter(|(a, b)| (*a - *b).abs() > self.config.cell_threshold)
            .count();
        over as f32 / self.scratch.len().max(1) as f32
    }

    /// Judges the frame captured at `t_ms`. A frame that is not a valid I420 frame (sizes
    /// that don't fit the planes) is `Changed`, so the detector reports the problem.
    pub fn observe(&mut self, frame: &I420Frame<'_>, t_ms: f64) -> MotionVerdict {
        let (w, h) = (frame.width, frame.height);
        let fits = w > 0
            && h > 0
            && frame.y_stride >= w
            && frame.y_stride.checked_mul(h - 1).and_then(|n| n.checked_add(w)).is_some_and(|n| n <= frame.y.len());
        if !fits {
            self.reference.clear();
            return MotionVerdict::Changed;
        }
        let gw = self.config.grid_width.clamp(1, w);
        let gh = ((gw * h).div_ceil(w)).clamp(1, h);
        self.scratch.clear();
        self.scratch.resize(gw * gh, 0.0);
        let mut counts = vec![0u32; gw * gh];
        // Cell of each column, computed once per frame.
        let col_cell: Vec<usize> = (0..w).map(|x| x * gw / w).collect();
        for y in 0..h {
            let row = &frame.y[y * frame.y_stride..y * frame.y_stride + w];
            let base = (y * gh / h) * gw;
            for (x, &v) in row.iter().enumerate() {
                self.scratch[base + col_cell[x]] += f32::from(v);
                counts[base + col_cell[x]] += 1;
            }
        }
        for (s, c) in self.scratch.iter_mut().zip(&counts) {
            *s /= (*c).max(1) as f32;
        }

        let new_shape = self.reference.len() != self.scratch.len() || self.size != (w, h) || self.grid != (gw, gh);
        // A NaN time (unknown) counts as due: analyse rather than stall.
        let since = t_ms - self.analysed_at;
        let due = since.is_nan() || since >= self.config.recheck_ms;
        let verdict = if new_shape || self.changed_share() >= self.config.changed_fraction {
            MotionVerdict::Changed
        } else if due {
            MotionVerdict::Recheck
        } else {
            MotionVerdict::Static
        };
        if verdict.analyse() {
            std::mem::swap(&mut self.reference, &mut self.scratch);
            self.size = (w, h);
            self.grid = (gw, gh);
            if t_ms.is_finite() {
                self.analysed_at = t_ms;
            }
        }
        verdict
    }
}
