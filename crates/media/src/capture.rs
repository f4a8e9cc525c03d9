//! Sender capture time of each frame.
//!
//! Chromium puts abs-capture-time on about one frame per second; in between the capture
//! time is extrapolated from the RTP clock (90 kHz), which is what the sender stamped its
//! frames with. Before the first stamp there is nothing to anchor to: `None`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Per track: the last (extended RTP time, capture time in unix ms) anchor.
#[derive(Default, Debug)]
pub(crate) struct CaptureClock {
    anchor: Option<(u64, f64)>,
}

impl CaptureClock {
    /// `rtp` is str0m's extended (unwrapped) 90 kHz time; `stamp` the frame's abs-capture-time.
    pub(crate) fn frame(&mut self, rtp: u64, stamp: Option<SystemTime>) -> Option<f64> {
        if let Some(t) = stamp {
            // Before 1970 can only be a broken sender clock: ignore it.
            if let Ok(d) = t.duration_since(UNIX_EPOCH) {
                let ms = d.as_secs_f64() * 1000.0;
                self.anchor = Some((rtp, ms));
                return Some(ms);
            }
        }
        let (a_rtp, a_ms) = self.anchor?;
        // Signed: reordered frames may be older than the anchor.
        let ticks = rtp as i128 - a_rtp as i128;
        Some(a_ms + ticks as f64 / 90.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn extrapolates_from_last_stamp() {
        let mut c = CaptureClock::default();
        assert_eq!(c.frame(1000, None), None);
        let t0 = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert_eq!(c.frame(9000, Some(t0)), Some(1_700_000_000_000.0));
        // 3000 ticks = 33.3 ms later; 900 ticks earlier = 10 ms before.
        let later = c.frame(12_000, None).unwrap();
        assert!((later - 1_700_000_000_033.333).abs() < 0.01, "{later}");
        let earlier = c.frame(8100, None).unwrap();
        assert!((earlier - 1_699_999_999_990.0).abs() < 0.01, "{earlier}");
        // A new stamp re-anchors.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(c.frame(99_000, Some(t1)), Some(1_700_000_001_000.0));
    }
}
