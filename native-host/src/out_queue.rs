//! Each connection's outbound queue, bounded in bytes: per connection (`OUT_QUEUE_MB`) and
//! over every connection of the process together (`OUT_QUEUE_TOTAL_MB`).
//!
//! The hub thread puts frames in ([`Sender::send`], which never waits); the connection's
//! writer task ([`crate::ws::write_loop`]) takes them out and gives their bytes back once the
//! socket has taken them. A frame that would take its queue past the bound, or every queue
//! together past the total, is refused and the queue is marked **behind**: the hub ends the
//! session, and the writer drops what is still queued at once (its bytes come back) and closes
//! the socket with 1013, "the connection fell behind; reconnect". The client resumes from its
//! cursor (agents: `subscribe` with `from`) or its vector (peers).
//!
//! A frame is counted as the bytes of its JSON encoding (exact for agents, who speak JSON;
//! peers' binary frames are within a few bytes per number of it), measured without building
//! the text. A frame to a queue holding nothing is always taken, so a frame larger than the
//! bound still goes out, and a connection that keeps up is never closed because slower ones
//! hold the total: the total may pass its bound by at most one frame per connection.
//!
//! **Room.** What the engine can hold back (a subscriber's replay, read from the store a
//! page at a time) goes out only while the queue is below half its bound
//! ([`Sender::has_room`]); the hub then tells the engine the session is full and asks to be
//! woken once the writer has drained it below half again ([`Sender::when_room`]). So a
//! replay of any size proceeds as fast as the client reads and never closes the connection
//! by itself.

use crate::hub::Output;
use bridge_core::Frame;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Default of `OUT_QUEUE_MB`.
pub const DEFAULT_PER_CONNECTION_MB: u64 = 8;
/// Default of `OUT_QUEUE_TOTAL_MB`.
pub const DEFAULT_TOTAL_MB: u64 = 256;

/// The bounds, and the bytes queued now over every connection. One per process, shared by
/// every queue ([`channel`]).
#[derive(Debug)]
pub struct Budget {
    per_connection: usize,
    total_max: usize,
    total: AtomicUsize,
}

impl Budget {
    pub fn new(per_connection: usize, total: usize) -> Arc<Budget> {
        Arc::new(Budget {
            per_connection,
            total_max: total,
            total: AtomicUsize::new(0),
        })
    }

    /// Bytes queued now, over every connection.
    pub fn queued(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// What a queue's two ends share.
struct Shared {
    budget: Arc<Budget>,
    queued: AtomicUsize,
    behind: AtomicBool,
    wake: Notify,
    /// Set while [`Sender::when_room`] waits: `on_room` is called once the queue has room.
    want_room: AtomicBool,
    on_room: Mutex<Option<OnRoom>>,
}

/// What [`Sender::when_room`] calls.
type OnRoom = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("queued", &self.queued)
            .field("behind", &self.behind)
            .field("want_room", &self.want_room)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn release(&self, bytes: usize) {
        let left = self.queued.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        self.budget.total.fetch_sub(bytes, Ordering::Relaxed);
        if self.want_room.load(Ordering::Relaxed) && self.room(left) {
            self.call_on_room();
        }
    }

    fn room(&self, queued: usize) -> bool {
        queued < self.budget.per_connection / 2
    }

    /// Calls the waiting `on_room`, once, whoever gets here first.
    fn call_on_room(&self) {
        let f = match self.on_room.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(f) = f {
            self.want_room.store(false, Ordering::Relaxed);
            f();
        }
    }
}

/// A new queue for one connection, counted against `budget`.
pub fn channel(budget: &Arc<Budget>) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        budget: budget.clone(),
        queued: AtomicUsize::new(0),
        behind: AtomicBool::new(false),
        wake: Notify::new(),
        want_room: AtomicBool::new(false),
        on_room: Mutex::new(None),
    });
    (
        Sender {
            tx,
            shared: shared.clone(),
        },
        Receiver { rx, shared },
    )
}

/// Why [`Sender::send`] did not queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue (or all of them) would pass its bound: the connection is being closed
    /// with 1013; end its session.
    Behind,
    /// The connection is gone.
    Closed,
}

/// The hub's end of a queue.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<(Output, usize)>,
    shared: Arc<Shared>,
}

impl Sender {
    /// Queues `out`, or refuses it. Never waits. A close is never refused for its size.
    pub fn send(&self, out: Output) -> Result<(), Refused> {
        let s = &self.shared;
        if s.behind.load(Ordering::Relaxed) {
            return Err(Refused::Behind);
        }
        let bytes = match &out {
            Output::Frame(f) => frame_bytes(f),
            Output::Close { .. } => 0,
        };
        let queued = s.queued.load(Ordering::Relaxed);
        if queued > 0
            && (queued + bytes > s.budget.per_connection
                || s.budget.total.load(Ordering::Relaxed) + bytes > s.budget.total_max)
        {
            s.behind.store(true, Ordering::Relaxed);
            s.wake.notify_waiters();
            return Err(Refused::Behind);
        }
        s.queued.fetch_add(bytes, Ordering::Relaxed);
        s.budget.total.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send((out, bytes)).is_err() {
            s.release(bytes);
            return Err(Refused::Closed);
        }
        Ok(())
    }

    /// Whether the queue is below half its bound: what the engine may hold back (replays)
    /// is sent only then, so that it never makes the queue fall behind.
    pub fn has_room(&self) -> bool {
        self.shared.room(self.shared.queued.load(Ordering::Relaxed))
    }

    /// Calls `f` once the queue has room ([`Sender::has_room`]): at once if it has now, else
    /// from the writer when the socket has taken enough. Replaces an earlier `f` not yet
    /// called. `f` must not block (it runs on the writer's task).
    pub fn when_room(&self, f: impl FnOnce() + Send + 'static) {
        let s = &self.shared;
        match s.on_room.lock() {
            Ok(mut g) => *g = Some(Box::new(f)),
            Err(poisoned) => *poisoned.into_inner() = Some(Box::new(f)),
        }
        s.want_room.store(true, Ordering::Relaxed);
        // Read after the flag is set: a release in between either saw the flag or left the
        // room this finds.
        if self.has_room() {
            s.call_on_room();
        }
    }

    /// A handle that does not keep the connection open (the writer ends once the hub's
    /// sender is gone).
    pub fn downgrade(&self) -> WeakSender {
        WeakSender {
            tx: self.tx.downgrade(),
            shared: self.shared.clone(),
        }
    }

    /// Bytes queued now on this connection.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

/// See [`Sender::downgrade`].
#[derive(Debug, Clone)]
pub struct WeakSender {
    tx: mpsc::WeakUnboundedSender<(Output, usize)>,
    shared: Arc<Shared>,
}

impl WeakSender {
    pub fn upgrade(&self) -> Option<Sender> {
        Some(Sender {
            tx: self.tx.upgrade()?,
            shared: self.shared.clone(),
        })
    }
}

/// The writer's end of a queue. Dropping it gives back the bytes of what is still queued.
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<(Output, usize)>,
    shared: Arc<Shared>,
}

impl Receiver {
    /// The next output; `None` once the hub let go and everything queued was taken.
    pub async fn recv(&mut self) -> Option<Queued> {
        let (out, bytes) = self.rx.recv().await?;
        Some(self.queued(out, bytes))
    }

    /// The next output if one is queued now.
    pub fn try_recv(&mut self) -> Option<Queued> {
        let (out, bytes) = self.rx.try_recv().ok()?;
        Some(self.queued(out, bytes))
    }

    fn queued(&self, out: Output, bytes: usize) -> Queued {
        Queued {
            out,
            bytes,
            shared: self.shared.clone(),
        }
    }

    /// Resolves once the queue fell behind ([`Refused::Behind`]); for the writer to stop
    /// waiting on a socket that does not drain.
    pub fn fell_behind(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            loop {
                // Registered before the flag is read, so a wake in between is not lost.
                let woken = shared.wake.notified();
                if shared.behind.load(Ordering::Relaxed) {
                    return;
                }
                woken.await;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Nothing can be queued after `close`; what already is gives its bytes back.
        self.rx.close();
        while let Ok((_, bytes)) = self.rx.try_recv() {
            self.shared.release(bytes);
        }
    }
}

/// An output taken from the queue; its bytes count until it is dropped, which the writer
/// does once the socket has taken the frame.
#[derive(Debug)]
pub struct Queued {
    out: Output,
    bytes: usize,
    shared: Arc<Shared>,
}

impl Queued {
    pub fn output(&self) -> &Output {
        &self.out
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.shared.release(self.bytes);
    }
}

/// The bytes of `frame`'s JSON text (as [`bridge_core::codec::encode_json`] writes it),
/// counted without building it.
pub fn frame_bytes(frame: &Frame) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Counting cannot fail; a frame serde cannot write is sent as `null` (4 bytes).
    let _ = serde_json::to_writer(&mut n, frame);
    // `,"v":1` (the protocol version the encoder adds).
    n.0 + 6
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::codec;
    use serde_json::json;

    fn frame(payload_bytes: usize) -> Frame {
        Frame::Error {
            req: Some(1),
            code: bridge_core::ErrorCode::Internal,
            message: "x".repeat(payload_bytes),
        }
    }

    #[test]
    fn counts_the_json_text() {
        let f = frame(1000);
        assert_eq!(frame_bytes(&f), codec::encode_json(&f).len());
        let f = Frame::Ping { nonce: 7 };
        assert_eq!(frame_bytes(&f), codec::encode_json(&f).len());
        let f: Frame = match codec::decode_json(
            json!({"type": "send", "req": 3, "channel": "ops", "payload": {"a": [1, "\"q\"", null]}})
                .to_string()
                .as_bytes(),
        ) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(frame_bytes(&f), codec::encode_json(&f).len());
    }

    #[tokio::test]
    async fn bytes_come_back_when_sent_or_dropped() {
        let n = frame_bytes(&frame(100));
        let budget = Budget::new(10 * n, 100 * n);
        let (tx, mut rx) = channel(&budget);
        for _ in 0..10 {
            assert_eq!(tx.send(Output::Frame(frame(100))), Ok(()));
        }
        assert_eq!((tx.queued(), budget.queued()), (10 * n, 10 * n));
        // Taken but not yet written: still counted.
        let first = rx.recv().await;
        assert_eq!(budget.queued(), 10 * n);
        drop(first);
        assert_eq!((tx.queued(), budget.queued()), (9 * n, 9 * n));
        // The writer goes away with frames queued: all come back, and the queue is closed.
        drop(rx);
        assert_eq!((tx.queued(), budget.queued()), (0, 0));
        assert_eq!(tx.send(Output::Frame(frame(100))), Err(Refused::Closed));
        assert_eq!(budget.queued(), 0);
    }

    #[tokio::test]
    async fn a_queue_past_its_bound_falls_behind_and_stays_behind() {
        let n = frame_bytes(&frame(100));
        let budget = Budget::new(3 * n, 100 * n);
        let (tx, rx) = channel(&budget);
        let behind = tokio::spawn(rx.fell_behind());
        for _ in 0..3 {
            assert_eq!(tx.send(Output::Frame(frame(100))), Ok(()));
        }
        assert_eq!(tx.send(Output::Frame(frame(100))), Err(Refused::Behind));
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(5), behind)
                .await
                .is_ok(),
            "the writer was not told"
        );
        // Behind is final, even for a close or once bytes came back.
        drop(rx);
        assert_eq!(budget.queued(), 0);
        let close = Output::Close {
            code: 1000,
            reason: String::new(),
        };
        assert_eq!(tx.send(close), Err(Refused::Behind));
        // A writer that starts waiting after the fact is not left waiting.
        let (tx, rx) = channel(&budget);
        assert_eq!(tx.send(Output::Frame(frame(100))), Ok(()));
        assert_eq!(tx.send(Output::Frame(frame(5 * 100))), Err(Refused::Behind));
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(5), rx.fell_behind())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn when_room_calls_back_once_the_writer_drained_below_half() {
        let n = frame_bytes(&frame(100));
        let budget = Budget::new(4 * n, 100 * n);
        let (tx, mut rx) = channel(&budget);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = |calls: &Arc<AtomicUsize>| {
            let calls = calls.clone();
            move || {
                calls.fetch_add(1, Ordering::Relaxed);
            }
        };
        // Room now: called at once.
        assert!(tx.has_room());
        tx.when_room(counter(&calls));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        for _ in 0..4 {
            assert_eq!(tx.send(Output::Frame(frame(100))), Ok(()));
        }
        assert!(!tx.has_room());
        tx.when_room(counter(&calls));
        assert_eq!(calls.load(Ordering::Relaxed), 1, "no room yet");
        drop(rx.recv().await);
        drop(rx.recv().await);
        assert_eq!(calls.load(Ordering::Relaxed), 1, "half is not below half");
        drop(rx.recv().await);
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "called once drained below half"
        );
        drop(rx.recv().await);
        assert_eq!(calls.load(Ordering::Relaxed), 2, "and only once");
        assert!(tx.has_room());
    }

    #[tokio::test]
    async fn an_empty_queue_always_takes_one_frame() {
        let n = frame_bytes(&frame(100));
        // A frame over the per-connection bound still goes out, alone.
        let budget = Budget::new(n / 2, 100 * n);
        let (tx, mut rx) = channel(&budget);
        assert_eq!(tx.send(Output::Frame(frame(100))), Ok(()));
        drop(rx.recv().await);
        assert_eq!(tx.send(Output::Frame(frame(100))), Ok(()));
        assert_eq!(tx.send(Output::Frame(frame(100))), Err(Refused::Behind));

        // The total: slow connections hold it, a connection that keeps up still gets its
        // frames one at a time; a second frame queued behind the first is refused.
        let budget = Budget::new(10 * n, 4 * n);
        let (slow, _slow_rx) = channel(&budget);
        for _ in 0..4 {
            assert_eq!(slow.send(Output::Frame(frame(100))), Ok(()));
        }
        let (fast, mut fast_rx) = channel(&budget);
        for _ in 0..3 {
            assert_eq!(fast.send(Output::Frame(frame(100))), Ok(()));
            assert_eq!(budget.queued(), 5 * n);
            drop(fast_rx.recv().await);
        }
        assert_eq!(fast.send(Output::Frame(frame(100))), Ok(()));
        assert_eq!(fast.send(Output::Frame(frame(100))), Err(Refused::Behind));
        assert_eq!(slow.send(Output::Frame(frame(100))), Err(Refused::Behind));
    }
}
