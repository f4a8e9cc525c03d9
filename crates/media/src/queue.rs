//! Which track the next free detection worker serves, sans-IO: frames and verdicts in,
//! jobs out, the time passed in by the caller (so the policy has deterministic tests).
//!
//! - Latest frame wins: each track holds at most one pending frame; a newer one replaces
//!   it (the caller counts the replaced one as dropped).
//! - Motion first: a pending frame whose picture changed is served before a periodic
//!   re-check of a still scene; a still frame with nothing pending is not queued at all
//!   (gated), one arriving over a pending frame replaces it and keeps its standing.
//! - Never starving: a frame that has waited `max_wait` is served before any other.
//! - Round-robin within each class (the served track goes to the back of the ring), at
//!   most one job per track at a time (results of a track stay in capture order), and a
//!   track is not served again before `min_interval` (the fps cap) has passed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use callsight_vision::MotionVerdict;

struct Pending<F> {
    frame: F,
    /// The picture changed since the last detected frame (not just a re-check).
    changed: bool,
    /// When the oldest frame this one stands for arrived.
    since: Instant,
}

struct Slot<F> {
    pending: Option<Pending<F>>,
    next_allowed: Instant,
    busy: bool,
}

/// What [`ServeQueue::submit`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Submitted {
    Queued,
    /// Queued in place of an older pending frame (that one is dropped).
    Replaced,
    /// A still picture with nothing pending: not queued.
    Gated,
    /// The track is not open.
    Unknown,
}

/// The next thing a worker should do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pick<F> {
    Job {
        track: u64,
        frame: F,
    },
    /// Nothing is ready before this instant (a capped track).
    WaitUntil(Instant),
    /// Nothing is pending.
    Idle,
}

pub(crate) struct ServeQueue<F> {
    ring: VecDeque<u64>,
    slots: HashMap<u64, Slot<F>>,
    min_interval: Duration,
    max_wait: Duration,
}

impl<F> ServeQueue<F> {
    pub(crate) fn new(min_interval: Duration, max_wait: Duration) -> Self {
        ServeQueue { ring: VecDeque::new(), slots: HashMap::new(), min_interval, max_wait }
    }

    pub(crate) fn open(&mut self, track: u64, now: Instant) {
        if self.slots.insert(track, Slot { pending: None, next_allowed: now, busy: false }).is_none() {
            self.ring.push_back(track);
        }
    }

    /// Forgets the track; true when a pending frame went with it.
    pub(crate) fn close(&mut self, track: u64) -> bool {
        self.ring.retain(|t| *t != track);
        self.slots.remove(&track).is_some_and(|s| s.pending.is_some())
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, track: u64) -> bool {
        self.slots.contains_key(&track)
    }

    pub(crate) fn pending(&self) -> usize {
        self.slots.values().filter(|s| s.pending.is_some()).count()
    }

    pub(crate) fn submit(&mut self, track: u64, frame: F, verdict: MotionVerdict, now: Instant) -> Submitted {
        let Some(slot) = self.slots.get_mut(&track) else { return Submitted::Unknown };
        let changed = verdict == MotionVerdict::Changed;
        match slot.pending.as_mut() {
            Some(p) => {
                // The newer picture carries the change the older one had seen.
                p.frame = frame;
                p.changed |= changed;
                Submitted::Replaced
            }
            None if verdict == MotionVerdict::Static => Submitted::Gated,
            None => {
                slot.pending = Some(Pending { frame, changed, since: now });
                Submitted::Queued
            }
        }
    }

    /// Takes the next job; its track stays busy until [`ServeQueue::done`].
    pub(crate) fn pick(&mut self, now: Instant) -> Pick<F> {
        let mut earliest: Option<Instant> = None;
        // Best candidate so far: (rank, ring index); lower rank first, then ring order.
        let mut best: Option<(u8, usize)> = None;
        for (i, id) in self.ring.iter().enumerate() {
            let Some(slot) = self.slots.get(id) else { continue };
            let Some(p) = slot.pending.as_ref() else { continue };
            if slot.busy {
                continue;
            }
            if slot.next_allowed > now {
                earliest = Some(earliest.map_or(slot.next_allowed, |e| e.min(slot.next_allowed)));
                continue;
            }
            let rank = if now.saturating_duration_since(p.since) >= self.max_wait {
                0
            } else if p.changed {
                1
            } else {
                2
            };
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, i));
            }
        }
        let Some((_, i)) = best else {
            return earliest.map_or(Pick::Idle, Pick::WaitUntil);
        };
        let Some(id) = self.ring.remove(i) else { return Pick::Idle };
        self.ring.push_back(id);
        let Some(slot) = self.slots.get_mut(&id) else { return Pick::Idle };
        let Some(p) = slot.pending.take() else { return Pick::Idle };
        slot.busy = true;
        slot.next_allowed = now + self.min_interval;
        Pick::Job { track: id, frame: p.frame }
    }

    /// The job of `track` is finished: it may be served again.
    pub(crate) fn done(&mut self, track: u64) {
        if let Some(slot) = self.slots.get_mut(&track) {
            slot.busy = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MotionVerdict::{Changed, Recheck, Static};

    const MS: Duration = Duration::from_millis(1);

    fn job(p: Pick<u32>) -> (u64, u32) {
        match p {
            Pick::Job { track, frame } => (track, frame),
            other => panic!("expected a job, got {other:?}"),
        }
    }

    #[test]
    fn latest_frame_wins_and_a_still_frame_alone_is_gated() {
        let t0 = Instant::now();
        let mut q = ServeQueue::new(Duration::ZERO, 500 * MS);
        q.open(1, t0);
        assert_eq!(q.submit(1, 10, Static, t0), Submitted::Gated);
        assert_eq!(q.pick(t0), Pick::Idle);
        assert_eq!(q.submit(1, 11, Changed, t0), Submitted::Queued);
        // A still frame after a changed one replaces it and keeps the change.
        assert_eq!(q.submit(1, 12, Static, t0), Submitted::Replaced);
        assert_eq!(q.pending(), 1);
        assert_eq!(job(q.pick(t0)), (1, 12));
        assert_eq!(q.submit(2, 1, Changed, t0), Submitted::Unknown);
    }

    #[test]
    fn one_job_per_track_at_a_time_and_the_fps_cap() {
        let t0 = Instant::now();
        let mut q = ServeQueue::new(100 * MS, 500 * MS);
        q.open(1, t0);
        q.submit(1, 1, Changed, t0);
        assert_eq!(job(q.pick(t0)), (1, 1));
        q.submit(1, 2, Changed, t0 + 150 * MS);
        // Busy: not served again while its job runs, even past the cap.
        assert_eq!(q.pick(t0 + 150 * MS), Pick::Idle);
        q.done(1);
        assert_eq!(job(q.pick(t0 + 150 * MS)), (1, 2));
        q.done(1);
        q.submit(1, 3, Changed, t0 + 160 * MS);
        assert_eq!(q.pick(t0 + 160 * MS), Pick::WaitUntil(t0 + 250 * MS));
        assert_eq!(job(q.pick(t0 + 250 * MS)), (1, 3));
    }

    #[test]
    fn changed_tracks_first_round_robin_and_nobody_starves() {
        // One worker, four tracks: 1-3 always changing, 4 a still scene whose re-check
        // frame arrives at t = 0. Each job takes 40 ms; every track gets a new frame
        // every 10 ms.
        let t0 = Instant::now();
        let max_wait = 200 * MS;
        let mut q = ServeQueue::new(Duration::ZERO, max_wait);
        for t in 1..=4 {
            q.open(t, t0);
        }
        q.submit(4, 0, Recheck, t0);
        let mut served = Vec::new();
        let mut now = t0;
        let mut frame = 0;
        while now < t0 + 1000 * MS {
            for t in 1..=3 {
                frame += 1;
                q.submit(t, frame, Changed, now);
            }
            frame += 1;
            q.submit(4, frame, Static, now);
            if let Pick::Job { track, .. } = q.pick(now) {
                served.push((track, now));
                q.done(track);
            }
            now += 40 * MS;
        }
        let order: Vec<u64> = served.iter().map(|s| s.0).collect();
        // The changed tracks take turns first...
        assert_eq!(&order[..3], &[1, 2, 3], "{order:?}");
        // ...and the re-check is served once it has waited max_wait, not later.
        let (_, at) = served.iter().find(|s| s.0 == 4).copied().expect("the still track is served");
        let waited = at - t0;
        assert!(waited >= max_wait && waited < max_wait + 40 * MS, "re-check waited {waited:?}: {order:?}");
        // Round-robin among the changing tracks: each served within every 4 jobs.
        for t in 1..=3 {
            let at: Vec<usize> = order.iter().enumerate().filter(|(_, x)| **x == t).map(|(i, _)| i).collect();
            assert!(at.windows(2).all(|w| w[1] - w[0] <= 4), "track {t} at {at:?}");
        }
    }

    #[test]
    fn close_forgets_the_track_and_its_frame() {
        let t0 = Instant::now();
        let mut q = ServeQueue::new(Duration::ZERO, 500 * MS);
        q.open(1, t0);
        q.open(2, t0);
        q.submit(1, 1, Changed, t0);
        assert!(q.close(1));
        assert!(!q.close(2));
        assert!(!q.contains(1));
        assert_eq!(q.pick(t0), Pick::Idle);
    }
}
