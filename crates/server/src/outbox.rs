//! Each connection's queue of frames to write, bounded in bytes (not frames): a reader
//! that stops reading is dropped once this much waits for it, so one slow socket never
//! holds more than the budget in memory nor holds up its room.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a connection's task writes to its socket.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Close(String),
}

impl Outbound {
    fn bytes(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Close(_) => 0,
        }
    }
}

/// The budget is spent: the connection must go.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

pub struct OutboxSender {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: Arc<AtomicUsize>,
    budget: usize,
}

pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

/// A queue that holds at most `budget` bytes (one frame of any size fits an empty queue).
pub fn outbox(budget: usize) -> (OutboxSender, OutboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (OutboxSender { tx, queued: queued.clone(), budget }, OutboxReceiver { rx, queued })
}

impl OutboxSender {
    /// Queues `frame`, or refuses it when the budget would be exceeded. A closed
    /// receiver (the task is ending) swallows frames silently.
    pub fn push(&self, frame: Outbound) -> Result<(), Overflow> {
        let n = frame.bytes();
        let before = self.queued.fetch_add(n, Relaxed);
        if before > 0 && before + n > self.budget {
            self.queued.fetch_sub(n, Relaxed);
            return Err(Overflow);
        }
        if self.tx.send(frame).is_err() {
            self.queued.fetch_sub(n, Relaxed);
        }
        Ok(())
    }
}

impl OutboxReceiver {
    /// The next frame; `None` once the sender is gone (the connection was dropped).
    pub async fn recv(&mut self) -> Option<Outbound> {
        let frame = self.rx.recv().await?;
        self.queued.fetch_sub(frame.bytes(), Relaxed);
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_counts_bytes_and_frees_on_receive() {
        let (tx, mut rx) = outbox(100);
        assert_eq!(tx.push(Outbound::Text("x".repeat(150))), Ok(()), "one big frame fits an empty queue");
        assert_eq!(tx.push(Outbound::Text("y".into())), Err(Overflow));
        rx.recv().await.unwrap();
        for _ in 0..10 {
            tx.push(Outbound::Text("z".repeat(10))).unwrap();
        }
        assert_eq!(tx.push(Outbound::Text("z".into())), Err(Overflow));
        assert_eq!(tx.push(Outbound::Close("bye".into())), Ok(()), "closing costs nothing");
        drop(tx);
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 11);
    }
}
