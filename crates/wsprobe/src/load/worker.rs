//! One task per connection: wait for its turn to open, connect, send pings (on the
//! timetable, or one at a time), match echoes by sequence, then wait for the echoes in
//! flight and close.
//!
//! A connection that cannot be opened is counted by cause and not retried: retrying in
//! a loop would hammer a stage that is already refusing, and would blur what the run
//! measured. The run goes on with the connections that opened. A connection the server
//! closes (or that breaks) is counted as dropped, with its close code, and not reopened —
//! unless `--reconnect` accepts its close (1001 and 1006; any with `always`): then the
//! pings in flight on it are counted as lost to the reconnect, the core's `redial`
//! reopens it with its backoff (the whole handshake again, a fresh SigV4 signature), and
//! sending goes on where the timetable is. A reconnect that the server refuses (401, 403)
//! or that gives up after `--reconnect-max` attempts drops the connection, counted by
//! cause. See "Soak tests" in `docs/load.md`.
//!
//! `--keepalive` sends a ping frame (or the `--keepalive-message` text) whenever the
//! connection sent nothing for that long, as a session does; answers are recognised as a
//! session recognises them (`answers_keepalive`) and counted, not taken for echoes.
//!
//! The task reads and writes the WebSocket itself (no session task, no channels): one
//! `select!` over the next incoming message, the next due send and the stop signal.
//!
//! Every send is bounded: it must be written out within `--timeout`, and while it waits
//! the connection keeps reading (a server blocked writing its echoes to us must not look
//! like one that stopped reading). A send that cannot complete in time means the server
//! is not reading: the connection is counted as *stalled* (and dropped) and abandoned. A
//! stop (Ctrl-C) ends a waiting send at once. So no server can hold a run past its end.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt as _, Stream as _, StreamExt};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use url::Url;

use super::inflight::{EchoVerdict, InFlight};
use super::ping::{Decoded, PingFormat};
use super::schedule;
use super::stats::Stats;
use super::{Limit, Plan, WorkMode};
use wsprobe_core::client::{self, ClientConfig, Stream};
use wsprobe_core::message::parse_gateway_error;
use wsprobe_core::reconnect::{Backoff, ReconnectEvent, ReconnectPolicy, redial};
use wsprobe_core::session::{
    Ending, KEEPALIVE_ANSWER_WINDOW, KEEPALIVE_PING, KeepAlive, MIN_KEEPALIVE, answers_keepalive,
};

/// How early the open model wakes up for a slot, in µs. tokio's timer fires on the
/// first millisecond tick at or after the deadline, so waking for the slot itself would
/// add 0–1 ms of timer slack to every measured latency. Waking up to 1 ms early and
/// measuring from the earlier of the slot and the actual send keeps the timetable's rate
/// and leaves the slack out of the latencies.
const TIMER_LEAD_US: u64 = 1_000;

/// Reading comes first in the sending loops, so a server that floods could keep their
/// timers from ever being polled (and the end of `-d` from being seen): after this many
/// messages in a row, the loop looks at the clock itself.
const FLOOD_CHECK: u32 = 64;

use wsprobe_core::session::CLOSE_WAIT;

/// What every worker shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Where to connect.
    pub url: Url,
    /// How to connect (small tungstenite buffers).
    pub(crate) client: ClientConfig,
    /// What to do.
    pub(crate) plan: Plan,
    /// How pings look.
    pub(crate) format: PingFormat,
    /// Where measurements go.
    pub(crate) stats: Stats,
    /// Closed model with `-n`: pings left to send, taken one at a time by any worker.
    pub(crate) tickets: AtomicU64,
    /// Connections that have not yet tried to open; the last one to try starts the
    /// sending for everyone.
    pub(crate) openings_left: AtomicUsize,
    /// When sending starts (µs since the start), once every connection has tried to open.
    pub(crate) go: watch::Sender<Option<u64>>,
    /// `--start-at`, µs since the start: the go is then this time, not the moment the
    /// last connection tried to open (sending waits for both).
    pub(crate) start_at_us: Option<u64>,
    /// When the last connection tried to open (µs since the start); 0 until then.
    pub(crate) opened_us: AtomicU64,
    /// The global number of connection 0 (a shard's first connection), which ping tokens
    /// carry, so the shards of one run send distinct tokens.
    pub(crate) first_connection: u64,
    /// `--keepalive`: what to send after how long without sending.
    pub(crate) keepalive: Option<KeepAlive>,
    /// `--reconnect`: which closes are reopened, and how many failed attempts in a row
    /// give up.
    pub(crate) reconnect: Option<ReconnectPolicy>,
}

impl Shared {
    /// This connection has tried to open (or will not): the last one gives the go.
    fn opening_done(&self) {
        if self.openings_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now_us = self.stats.now_us();
            self.opened_us.store(now_us, Ordering::Release);
            self.go
                .send_replace(Some(self.start_at_us.unwrap_or(now_us)));
        }
    }

    fn take_ticket(&self) -> bool {
        self.tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    /// The instant `us` after the start (far in the future rather than overflowing, for
    /// absurd rates and durations).
    fn at(&self, us: u64) -> Instant {
        Instant::from_std(schedule::after(self.stats.start, Duration::from_micros(us)))
    }
}

/// What a worker tells the run when it is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WorkerEnd {
    /// When it sent its last ping (µs since the start), if it sent any.
    pub(crate) last_send_us: Option<u64>,
    /// When it stopped sending (µs since the start), if it opened.
    pub(crate) stopped_sending_us: Option<u64>,
    /// It went through its whole share of the timetable, or sent until the end of `-d`
    /// (not stopped early by a drop, a stall or Ctrl-C).
    pub(crate) completed: bool,
}

/// A send is *lagged* when it left more than this long (µs) after both its slot and
/// the end of the connection's previous send: time the client spent elsewhere (a busy
/// runtime), not waiting for the server.
pub(crate) const LAG_BOUND_US: u64 = 10_000;

/// The open model's lags of one connection, added to the shared counts at its end (so
/// the hot loop touches nothing shared for them).
#[derive(Clone, Copy, Debug, Default)]
struct Lag {
    /// Sends lagged beyond [`LAG_BOUND_US`].
    lagged: u64,
    /// The longest lag, µs.
    max_us: u64,
}

impl Lag {
    fn record(&mut self, lag_us: u64) {
        self.lagged += u64::from(lag_us > LAG_BOUND_US);
        self.max_us = self.max_us.max(lag_us);
    }
}

/// How a wait on the connection ended.
enum Flow {
    /// The connection is still open.
    Continue,
    /// The server closed the connection, or it broke, or stalled; it has been counted as
    /// dropped.
    Ended,
    /// The run was aborted (a second Ctrl-C) while echoes were awaited: the pings then
    /// in flight are not counted.
    Aborted,
}

/// How a send ended.
enum Sent {
    /// Written out.
    Done,
    /// A stop came first. The ping counts as sent if it was handed to the connection
    /// (the rest of it may still go out while the echoes in flight are awaited).
    Stopped,
    /// The connection ended (counted as dropped), or the send could not complete in
    /// time (counted as stalled); the ping was not sent.
    Ended,
}

/// What one turn of pushing a message out produced.
enum Push {
    /// The message is written out, or writing failed.
    Done(Result<(), tungstenite::Error>),
    /// While the write waits, a message came in (or the connection ended).
    Incoming(Option<Result<Message, tungstenite::Error>>),
}

/// Runs connection `index` to its end: open at its turn, wait for the go (every
/// connection has tried to open), send until the limit or a `stop`, drain, close. An
/// `abort` ends the drain and the close at once.
pub(crate) async fn run(
    shared: Arc<Shared>,
    index: usize,
    mut stop: Stop,
    mut abort: Stop,
) -> WorkerEnd {
    let plan = &shared.plan;
    // In a block of its own: a local moved out of keeps its place in the task's future
    // until its scope ends, so `ws` would hold 328 bytes beside the worker it moved into.
    let mut worker = {
        let ws = open(&shared, index, &mut stop).await;
        shared.opening_done();
        let Some(ws) = ws else {
            return WorkerEnd::default();
        };
        let timeout_us = u64::try_from(plan.timeout.as_micros()).unwrap_or(u64::MAX);
        Worker {
            index,
            token: shared.first_connection.saturating_add(index as u64),
            shared: &shared,
            ws,
            inflight: InFlight::new(timeout_us),
            timeout_us,
            buffer: BytesMut::new(),
            end: WorkerEnd::default(),
            owed_close: None,
            ended: None,
            last_sent_us: shared.stats.now_us(),
            keepalive_sent_us: None,
        }
    };
    let mut flow = match worker.wait_for_go(&mut stop).await {
        Go::Start(go_us) => match plan.mode {
            WorkMode::Open(_) => worker.open_loop(go_us, &mut stop).await,
            WorkMode::Closed => worker.closed_loop(go_us, &mut stop).await,
        },
        Go::Stop => Flow::Continue,
        Go::Ended => Flow::Ended,
    };
    worker.end.stopped_sending_us = Some(shared.stats.now_us());
    worker.end.completed = matches!(flow, Flow::Continue) && !stop.requested();
    if let Flow::Continue = flow {
        flow = worker.drain(&mut abort).await;
    }
    if let Flow::Continue = flow {
        worker.close(CloseCode::Normal, &mut abort).await;
    }
    if let Some(code) = worker.owed_close.take() {
        worker.close(code, &mut abort).await;
    }
    let stats = &shared.stats;
    if let Some(code) = worker.ended.take() {
        stats.record_dropped(index, code);
    }
    if let Flow::Aborted = flow {
        // Overdue pings are lost; those still within the timeout might have come back.
        stats.add(index, |c| &c.lost, worker.inflight.overdue());
        stats.add(index, |c| &c.in_flight, worker.inflight.waiting() as u64);
    } else {
        stats.add(index, |c| &c.lost, worker.inflight.lost());
    }
    stats.count(index, |c| &c.closed);
    worker.end
}

/// Waits for this connection's turn and opens it; `None` if it failed (counted) or the
/// run stopped first. Only the WebSocket is kept: the handshake's headers and the rest
/// are dropped here, so an idle connection holds as little as possible.
async fn open(shared: &Shared, index: usize, stop: &mut Stop) -> Option<WebSocketStream<Stream>> {
    let opening = Instant::from_std(schedule::after(
        shared.stats.start,
        shared.plan.openings.at(index),
    ));
    tokio::select! {
        _ = sleep_until(opening) => {}
        () = stop.wait() => return None,
    }
    // Boxed: the connect's state (DNS, TLS, the handshake: ~5 KiB) lives on the heap
    // only while it runs, instead of sizing the task of every open connection.
    let result = tokio::select! {
        result = Box::pin(client::connect(&shared.url, &shared.client)) => result,
        () = stop.wait() => return None,
    };
    match result {
        Ok(connection) => {
            let connect_us = u64::try_from(connection.connect_time.as_micros()).unwrap_or(u64::MAX);
            shared.stats.record_connected(index, connect_us);
            Some(connection.stream)
        }
        Err(error) => {
            shared.stats.record_connect_failure(index, error);
            None
        }
    }
}

/// How the wait for the go ended.
enum Go {
    /// Sending starts at this time (µs since the start).
    Start(u64),
    /// The run stopped before.
    Stop,
    /// The connection ended before (counted as dropped).
    Ended,
}

/// A request of the run (stop sending at the first Ctrl-C, abort at the second), as one
/// worker sees it: its own oneshot channel, so checking and waiting touch nothing shared
/// with other workers (a shared `watch` would take a lock on every turn of every
/// worker's loop).
#[derive(Debug)]
pub(crate) struct Stop {
    receiver: oneshot::Receiver<()>,
    requested: bool,
}

impl Stop {
    /// A stop requested by sending on (or dropping) the other end of `receiver`.
    pub(crate) fn new(receiver: oneshot::Receiver<()>) -> Self {
        Self {
            receiver,
            requested: false,
        }
    }

    /// Whether a stop was requested (one atomic load).
    fn requested(&mut self) -> bool {
        if !self.requested {
            self.requested = !matches!(self.receiver.try_recv(), Err(TryRecvError::Empty));
        }
        self.requested
    }

    /// Resolves when a stop is requested; at once if it was.
    async fn wait(&mut self) {
        if !self.requested {
            // A dropped sender means the run is gone, which is a stop too.
            let _ = (&mut self.receiver).await;
            self.requested = true;
        }
    }
}

struct Worker<'a> {
    index: usize,
    /// The connection number ping tokens carry: `index` plus the shard's first.
    token: u64,
    shared: &'a Shared,
    ws: WebSocketStream<Stream>,
    inflight: InFlight,
    /// `--timeout` in µs: how long an echo, and a send, may take.
    timeout_us: u64,
    /// Reused for every ping (see `ping.rs`).
    buffer: BytesMut,
    end: WorkerEnd,
    /// The close frame owed to the server after it broke the protocol (an oversized
    /// message: 1009; a protocol error: 1002; invalid UTF-8: 1007), sent before the
    /// connection is dropped.
    owed_close: Option<CloseCode>,
    /// The close code of the connection's end, once it ended (not after a stall): counted
    /// as dropped at the worker's end, unless a reconnect takes it.
    ended: Option<u16>,
    /// When this connection last sent something (µs since the start): keepalives go after
    /// `--keepalive` of silence.
    last_sent_us: u64,
    /// When the last `--keepalive-message` went out, until its answer arrives.
    keepalive_sent_us: Option<u64>,
}

impl Worker<'_> {
    /// Waits, open and reading, until every connection has tried to open, and then
    /// (with `--start-at`) until the go.
    async fn wait_for_go(&mut self, stop: &mut Stop) -> Go {
        let mut go = self.shared.go.subscribe();
        loop {
            let known = *go.borrow_and_update();
            if let Some(go_us) = known {
                return self.wait_until(go_us, stop).await;
            }
            let keepalive = self.keepalive_at();
            tokio::select! {
                () = stop.wait() => return Go::Stop,
                changed = go.changed() => {
                    if changed.is_err() {
                        return Go::Stop;
                    }
                }
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming)
                        && !self.resume(stop, u64::MAX).await
                    {
                        return Go::Ended;
                    }
                }
                () = sleep_until(keepalive.unwrap_or_else(far_future)), if keepalive.is_some() => {
                    if let Flow::Ended = self.keep_alive().await
                        && !self.resume(stop, u64::MAX).await
                    {
                        return Go::Ended;
                    }
                }
            }
        }
    }

    /// Waits, reading, until `go_us` (µs since the start): at once unless `--start-at`
    /// put the go in the future.
    async fn wait_until(&mut self, go_us: u64, stop: &mut Stop) -> Go {
        let sleep = sleep_until(self.shared.at(go_us));
        tokio::pin!(sleep);
        loop {
            let keepalive = self.keepalive_at();
            tokio::select! {
                () = &mut sleep => return Go::Start(go_us),
                () = stop.wait() => return Go::Stop,
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming)
                        && !self.resume(stop, u64::MAX).await
                    {
                        return Go::Ended;
                    }
                }
                () = sleep_until(keepalive.unwrap_or_else(far_future)), if keepalive.is_some() => {
                    if let Flow::Ended = self.keep_alive().await
                        && !self.resume(stop, u64::MAX).await
                    {
                        return Go::Ended;
                    }
                }
            }
        }
    }

    /// Open model: send on the timetable until the limit or a stop. With `-d`, sending
    /// stops at the end of the duration even when the connection is behind: the slots
    /// left are counted as not sent. Each send's own lag (how long after both its slot
    /// and the end of the previous send it left: time the client spent elsewhere) is
    /// measured, to tell a saturated client from a slow server.
    async fn open_loop(&mut self, go_us: u64, stop: &mut Stop) -> Flow {
        let (WorkMode::Open(timetable), limit) = (self.shared.plan.mode, self.shared.plan.limit)
        else {
            return Flow::Continue;
        };
        let mut slot = 0;
        let (quota, end_us) = match limit {
            Limit::Count(count) => (timetable.share_of(self.index, count), u64::MAX),
            Limit::Duration(duration) => {
                let duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
                (
                    timetable.share_of(self.index, timetable.slots_before(duration_us)),
                    go_us.saturating_add(duration_us),
                )
            }
        };
        // A soak (`--reconnect` or `--keepalive` with `-d`) holds each connection open,
        // reading, keeping alive and reconnecting, from its last slot to the end of `-d`:
        // at a low rate a connection's last ping may come long before the end.
        let hold = matches!(limit, Limit::Duration(_))
            && (self.shared.reconnect.is_some() || self.shared.keepalive.is_some());
        let mut lag = Lag::default();
        let wake_at = |due_us: u64| self.shared.at(due_us.saturating_sub(TIMER_LEAD_US));
        let sleep = sleep_until(wake_at(if quota == 0 && hold {
            end_us
        } else {
            go_us.saturating_add(timetable.due_us(self.index, slot))
        }));
        tokio::pin!(sleep);
        // When this connection was last free to send: the go, then the end of each send.
        let mut free_since_us = go_us;
        // When the connection was last reopened: the slots due while it was closed are
        // sent at once, their latencies counted from the reopen (the outage is measured
        // as the reconnect's, not as round trips).
        let mut reopened_us = 0;
        // Messages read in a row since the timer was last looked at.
        let mut streak = 0;
        // `--keepalive`: armed for the end of the silence as it was when last armed; a
        // send since only makes it fire early once (it is then re-armed), so the hot loop
        // touches no timer for it.
        // Boxed: only with `--keepalive` does a connection's task hold its timer.
        let mut keepalive = self.keepalive_at().map(|at| Box::pin(sleep_until(at)));
        let flow = loop {
            let holding = slot >= quota;
            if holding && !hold {
                break Flow::Continue;
            }
            let due_us = if holding {
                end_us
            } else {
                go_us.saturating_add(timetable.due_us(self.index, slot))
            };
            // Incoming first: echoes are bounded by the sends, so reading cannot starve
            // sending, while a connection behind its timetable (its slot always due)
            // would otherwise never read and inflate every latency it measures.
            let slot_due = tokio::select! {
                biased;
                () = stop.wait() => break Flow::Continue,
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming) {
                        if !self.resume(stop, end_us).await {
                            break Flow::Ended;
                        }
                        reopened_us = self.shared.stats.now_us();
                        free_since_us = reopened_us;
                        continue;
                    }
                    streak += 1;
                    streak % FLOOD_CHECK == 0
                        && self.shared.stats.now_us() >= due_us.saturating_sub(TIMER_LEAD_US)
                }
                () = &mut sleep => true,
                () = keepalive_due(&mut keepalive), if keepalive.is_some() => {
                    if let Flow::Ended = self.keep_alive().await {
                        if !self.resume(stop, end_us).await {
                            break Flow::Ended;
                        }
                        reopened_us = self.shared.stats.now_us();
                        free_since_us = reopened_us;
                    }
                    self.rearm_keepalive(&mut keepalive);
                    false
                }
            };
            if slot_due {
                streak = 0;
                let now_us = self.shared.stats.now_us();
                if holding {
                    if now_us.saturating_add(TIMER_LEAD_US) >= end_us {
                        break Flow::Continue;
                    }
                    continue;
                }
                if now_us >= end_us {
                    // Behind the timetable at the end of -d: what is left is not sent.
                    self.shared
                        .stats
                        .add(self.index, |c| &c.not_sent, quota - slot);
                    break Flow::Continue;
                }
                lag.record(now_us.saturating_sub(due_us.max(free_since_us)));
                // Late, the latency counts from the slot (the wait counts), or from the
                // reopen if the slot fell while the connection was closed; early (by the
                // timer lead), from the actual send.
                match self
                    .send(due_us.max(reopened_us).min(now_us), now_us, stop)
                    .await
                {
                    Sent::Done => {}
                    Sent::Stopped => break Flow::Continue,
                    Sent::Ended => {
                        if !self.resume(stop, end_us).await {
                            break Flow::Ended;
                        }
                        // The slot was not sent: it goes on the new connection.
                        reopened_us = self.shared.stats.now_us();
                        free_since_us = reopened_us;
                        continue;
                    }
                }
                free_since_us = self.shared.stats.now_us();
                self.inflight.expire(free_since_us);
                slot += 1;
                let next_us = if slot >= quota && hold {
                    end_us
                } else {
                    go_us.saturating_add(timetable.due_us(self.index, slot))
                };
                sleep.as_mut().reset(wake_at(next_us));
            }
        };
        self.shared
            .stats
            .record_lag(self.index, lag.lagged, lag.max_us);
        flow
    }

    /// Closed model: one ping in flight; the next goes as soon as the echo is in (or the
    /// ping timed out).
    async fn closed_loop(&mut self, go_us: u64, stop: &mut Stop) -> Flow {
        let limit = self.shared.plan.limit;
        // A reconnect does not go on past the end of `-d`.
        let end_us = match limit {
            Limit::Duration(duration) => {
                go_us.saturating_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
            }
            Limit::Count(_) => u64::MAX,
        };
        // One timer for the whole loop, armed for the expiry of the ping waiting when it
        // is armed. It may then fire for a ping already echoed (its expiry is earlier
        // than the current one's), which costs one spurious wake-up per timeout period
        // instead of a timer registered and cancelled for every ping.
        let timer = sleep_until(self.shared.at(go_us));
        tokio::pin!(timer);
        let mut armed = false;
        // Messages read in a row since the timer was last looked at.
        let mut streak = 0;
        // `--keepalive`, as in the open model (here a connection is silent only while an
        // echo is awaited, up to `--timeout`).
        let mut keepalive = self.keepalive_at().map(|at| Box::pin(sleep_until(at)));
        loop {
            if self.inflight.waiting() == 0 {
                if stop.requested() {
                    return Flow::Continue;
                }
                let now_us = self.shared.stats.now_us();
                let may_send = match limit {
                    Limit::Duration(duration) => {
                        Duration::from_micros(now_us.saturating_sub(go_us)) < duration
                    }
                    Limit::Count(_) => self.shared.take_ticket(),
                };
                if !may_send {
                    return Flow::Continue;
                }
                match self.send(now_us, now_us, stop).await {
                    Sent::Done => continue,
                    Sent::Stopped => return Flow::Continue,
                    Sent::Ended => {
                        if !self.resume(stop, end_us).await {
                            return Flow::Ended;
                        }
                        armed = false;
                        continue;
                    }
                }
            }
            if !armed {
                let expiry = self.inflight.next_expiry().unwrap_or_default();
                timer
                    .as_mut()
                    .reset(self.shared.at(expiry.saturating_add(1)));
                armed = true;
            }
            tokio::select! {
                biased;
                () = stop.wait() => return Flow::Continue,
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming) {
                        if !self.resume(stop, end_us).await {
                            return Flow::Ended;
                        }
                        armed = false;
                        continue;
                    }
                    streak += 1;
                    if streak % FLOOD_CHECK == 0 {
                        self.inflight.expire(self.shared.stats.now_us());
                    }
                }
                () = &mut timer => {
                    armed = false;
                    streak = 0;
                    self.inflight.expire(self.shared.stats.now_us());
                }
                () = keepalive_due(&mut keepalive), if keepalive.is_some() => {
                    if let Flow::Ended = self.keep_alive().await {
                        if !self.resume(stop, end_us).await {
                            return Flow::Ended;
                        }
                        armed = false;
                    }
                    self.rearm_keepalive(&mut keepalive);
                }
            }
        }
    }

    /// After the last send: wait for the echoes in flight, each up to the timeout, or
    /// until an abort.
    async fn drain(&mut self, abort: &mut Stop) -> Flow {
        while let Some(expiry) = self.inflight.next_expiry() {
            tokio::select! {
                () = abort.wait() => return Flow::Aborted,
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming) {
                        self.ended_after_sending();
                        return Flow::Ended;
                    }
                }
                () = sleep_until(self.shared.at(expiry.saturating_add(1))) => {
                    self.inflight.expire(self.shared.stats.now_us());
                }
            }
        }
        Flow::Continue
    }

    /// Closes with `code` and waits briefly for the server's close frame (not after an
    /// abort).
    async fn close(&mut self, code: CloseCode, abort: &mut Stop) {
        if abort.requested() {
            return;
        }
        let closing = tokio::time::timeout(CLOSE_WAIT, async {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::default(),
            };
            if self.ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = self.ws.next().await {}
            }
        });
        tokio::select! {
            _ = closing => {}
            () = abort.wait() => {}
        }
    }

    /// Sends the next ping; its latency will count from `since_us`. `now_us` is the
    /// time just before the send (one clock read serves both).
    ///
    /// The send must be written out within the timeout, reading what comes in
    /// meanwhile; otherwise the server is not reading, and the connection is given up as
    /// stalled. A stop ends the wait at once.
    async fn send(&mut self, since_us: u64, now_us: u64, stop: &mut Stop) -> Sent {
        let sequence = self.inflight.next_sequence();
        let bytes = self
            .shared
            .format
            .encode(&mut self.buffer, self.token, sequence);
        // The ping is built from JSON-escaped text and ASCII only, so it is UTF-8.
        let text = Utf8Bytes::try_from(bytes).expect("pings are ASCII");
        self.inflight.sent(since_us);
        let mut message = Some(Message::Text(text));
        // Usually the ping goes out at once: then no timer is armed for it.
        let first = poll_fn(|cx| Poll::Ready(poll_push(&mut self.ws, &mut message, cx))).await;
        if let Poll::Ready(push) = first
            && let Some(sent) = self.pushed(push, now_us)
        {
            return sent;
        }
        let deadline = sleep_until(self.shared.at(now_us.saturating_add(self.timeout_us)));
        tokio::pin!(deadline);
        loop {
            let push = tokio::select! {
                biased;
                () = stop.wait() => {
                    if message.is_some() {
                        self.inflight.unsend();
                    } else {
                        self.count_sent(now_us);
                    }
                    return Sent::Stopped;
                }
                // Before the push: a server that floods must not hide the deadline.
                () = &mut deadline => {
                    // The ping never (wholly) left: it cannot be lost.
                    self.inflight.unsend();
                    self.shared.stats.record_stalled(self.index);
                    return Sent::Ended;
                }
                push = poll_fn(|cx| poll_push(&mut self.ws, &mut message, cx)) => push,
            };
            if let Some(sent) = self.pushed(push, now_us) {
                return sent;
            }
        }
    }

    /// What one turn of a send produced: `Some` when the send is over.
    fn pushed(&mut self, push: Push, now_us: u64) -> Option<Sent> {
        match push {
            Push::Done(Ok(())) => {
                self.count_sent(now_us);
                Some(Sent::Done)
            }
            Push::Done(Err(error)) => {
                self.inflight.unsend();
                self.dropped(close_code_of(&error));
                Some(Sent::Ended)
            }
            Push::Incoming(incoming) => match self.on_incoming(incoming) {
                Flow::Ended | Flow::Aborted => {
                    self.inflight.unsend();
                    Some(Sent::Ended)
                }
                Flow::Continue => None,
            },
        }
    }

    fn count_sent(&mut self, now_us: u64) {
        self.shared.stats.count(self.index, |c| &c.sent);
        self.end.last_send_us = Some(now_us);
        self.last_sent_us = now_us;
    }

    /// The close code the connection ended with, if `--reconnect` takes it (and no stop
    /// came): then it is not a drop.
    fn reconnectable(&self, stop: &mut Stop) -> Option<(u16, ReconnectPolicy)> {
        let code = self.ended?;
        let policy = self.shared.reconnect?;
        let cause = Ending::Closed {
            code,
            reason: String::new(),
        };
        (policy.applies_to(&cause) && !stop.requested()).then_some((code, policy))
    }

    /// The connection ended (counted in `ended`): reopens it if `--reconnect` takes its
    /// close, and says whether it did. The pings in flight are lost to the reconnect
    /// (those already overdue, to the server). A stop ends the reconnecting at once (not a
    /// drop); a refusal (401, 403) or giving up leaves the close to be counted as dropped,
    /// and the reconnect failure by cause. Reconnecting stops at `until_us` (the end of
    /// `-d`; µs since the start) as at a stop: a server that stays down cannot hold the
    /// run past its end with the backoff.
    async fn resume(&mut self, stop: &mut Stop, until_us: u64) -> bool {
        let Some((code, policy)) = self.reconnectable(stop) else {
            return false;
        };
        // Boxed: the reconnect's state (the backoff's generator, the handshake) lives on
        // the heap while it runs, not in every connection's task.
        Box::pin(self.reopen(code, policy, stop, until_us)).await
    }

    /// [`resume`](Self::resume), once the close is known to be reconnected.
    async fn reopen(
        &mut self,
        code: u16,
        policy: ReconnectPolicy,
        stop: &mut Stop,
        until_us: u64,
    ) -> bool {
        self.ended = None;
        if let Some(owed) = self.owed_close.take() {
            self.close(owed, stop).await;
        }
        let stats = &self.shared.stats;
        let (overdue, waiting) = self.inflight.abandon();
        stats.add(self.index, |c| &c.lost, overdue);
        stats.add(self.index, |c| &c.lost_to_reconnect, waiting);
        stats.count(self.index, |c| &c.reconnecting);
        let closed_us = stats.now_us();
        let cause = Ending::Closed {
            code,
            reason: String::new(),
        };
        let mut backoff = Backoff::new();
        let mut report = |_: ReconnectEvent| {};
        let redialled = tokio::select! {
            result = redial(
                &self.shared.url,
                &self.shared.client,
                &policy,
                &mut backoff,
                &cause,
                None,
                &mut report,
            ) => Some(result),
            () = stop.wait() => None,
            () = sleep_until(self.shared.at(until_us)) => None,
        };
        stats.uncount(self.index, |c| &c.reconnecting);
        let now_us = stats.now_us();
        let took_us = now_us.saturating_sub(closed_us);
        match redialled {
            Some(Ok(connection)) => {
                stats.record_reconnect(self.index, code, took_us);
                self.ws = connection.stream;
                self.last_sent_us = now_us;
                self.keepalive_sent_us = None;
                true
            }
            Some(Err(error)) => {
                stats.record_reconnect_failure(self.index, error.connect_error(), took_us);
                self.ended = Some(code);
                false
            }
            None => {
                stats.add(self.index, |c| &c.disconnected_us, took_us);
                false
            }
        }
    }

    /// The connection ended while its last echoes were awaited: a close `--reconnect`
    /// takes is not a drop then (the run was done with the connection; nothing is
    /// reopened), and its pings in flight are lost to it.
    fn ended_after_sending(&mut self) {
        let Some(code) = self.ended else {
            return;
        };
        let accepted = self.shared.reconnect.is_some_and(|policy| {
            policy.applies_to(&Ending::Closed {
                code,
                reason: String::new(),
            })
        });
        if accepted {
            self.ended = None;
            let (overdue, waiting) = self.inflight.abandon();
            let stats = &self.shared.stats;
            stats.add(self.index, |c| &c.lost, overdue);
            stats.add(self.index, |c| &c.lost_to_reconnect, waiting);
        }
    }

    /// When the next keepalive is due (after `--keepalive` of silence); `None` without
    /// `--keepalive`.
    /// Re-arms `timer` for the next keepalive, counted from the last send.
    fn rearm_keepalive(&self, timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
        if let (Some(timer), Some(at)) = (timer.as_mut(), self.keepalive_at()) {
            timer.as_mut().reset(at);
        }
    }

    fn keepalive_at(&self) -> Option<Instant> {
        let every = self.shared.keepalive.as_ref()?.every.max(MIN_KEEPALIVE);
        let every_us = u64::try_from(every.as_micros()).unwrap_or(u64::MAX);
        Some(self.shared.at(self.last_sent_us.saturating_add(every_us)))
    }

    /// Sends a keepalive if the connection has been silent for `--keepalive` (a send
    /// since the timer was armed puts it off). A send that cannot complete within
    /// `--timeout` stalls the connection, as a ping's would.
    async fn keep_alive(&mut self) -> Flow {
        // Boxed (once per keepalive, not per ping): the send's state stays out of every
        // connection's task.
        Box::pin(self.send_keepalive()).await
    }

    async fn send_keepalive(&mut self) -> Flow {
        let Some(keepalive) = &self.shared.keepalive else {
            return Flow::Continue;
        };
        let now_us = self.shared.stats.now_us();
        if self.keepalive_at().is_some_and(|at| Instant::now() < at) {
            return Flow::Continue;
        }
        let message = match &keepalive.message {
            Some(text) => Message::text(text.clone()),
            None => Message::Ping(Bytes::from_static(KEEPALIVE_PING)),
        };
        let timeout = Duration::from_micros(self.timeout_us);
        match tokio::time::timeout(timeout, self.ws.send(message)).await {
            Ok(Ok(())) => {
                self.shared.stats.count(self.index, |c| &c.keepalives);
                self.last_sent_us = now_us;
                if keepalive.message.is_some() {
                    self.keepalive_sent_us = Some(now_us);
                }
                Flow::Continue
            }
            Ok(Err(error)) => {
                self.dropped(close_code_of(&error));
                Flow::Ended
            }
            Err(_) => {
                self.shared.stats.record_stalled(self.index);
                Flow::Ended
            }
        }
    }

    fn on_incoming(&mut self, incoming: Option<Result<Message, tungstenite::Error>>) -> Flow {
        match incoming {
            Some(Ok(Message::Text(text))) => {
                self.on_text(text.as_str());
                Flow::Continue
            }
            Some(Ok(Message::Binary(_))) => {
                self.shared.stats.count(self.index, |c| &c.corrupted);
                Flow::Continue
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(wsprobe_core::session::NO_STATUS, |f| u16::from(f.code));
                self.dropped(code);
                Flow::Ended
            }
            Some(Ok(Message::Pong(payload))) => {
                if payload.as_ref() == KEEPALIVE_PING {
                    self.shared
                        .stats
                        .count(self.index, |c| &c.keepalive_answers);
                }
                Flow::Continue
            }
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => Flow::Continue,
            Some(Err(error)) => {
                match close_owed_for(&error) {
                    Some(code) => {
                        self.owed_close = Some(code);
                        self.dropped(u16::from(code));
                    }
                    None => self.dropped(close_code_of(&error)),
                }
                Flow::Ended
            }
            None => {
                self.dropped(wsprobe_core::session::ABNORMAL);
                Flow::Ended
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        let stats = &self.shared.stats;
        let now_us = stats.now_us();
        match self.shared.format.decode(text) {
            Decoded::Echo {
                connection,
                sequence,
            } if connection == self.token => match self.inflight.echo(sequence, now_us) {
                EchoVerdict::OnTime(latency) => {
                    stats.count(self.index, |c| &c.echoed);
                    stats.record_round_trip(self.index, latency);
                }
                EchoVerdict::Late(latency) => {
                    stats.count(self.index, |c| &c.late);
                    stats.record_round_trip(self.index, latency);
                }
                EchoVerdict::Duplicate => stats.count(self.index, |c| &c.duplicated),
                EchoVerdict::Unknown => stats.count(self.index, |c| &c.corrupted),
            },
            Decoded::Damaged {
                connection,
                sequence,
            } => {
                stats.count(self.index, |c| &c.corrupted);
                // It came back, damaged: counted as corrupted, not lost as well.
                if connection == self.token {
                    self.inflight.settle(sequence);
                }
            }
            Decoded::Echo { .. } | Decoded::Corrupted => stats.count(self.index, |c| &c.corrupted),
            // Off the hot path: the answer to a keepalive text, as a session recognises it.
            Decoded::NotAnEcho
                if self.keepalive_sent_us.is_some_and(|at| {
                    now_us.saturating_sub(at) <= KEEPALIVE_ANSWER_WINDOW.as_micros() as u64
                }) && self
                    .shared
                    .keepalive
                    .as_ref()
                    .and_then(|keepalive| keepalive.message.as_deref())
                    .is_some_and(|sent| answers_keepalive(sent, text)) =>
            {
                self.keepalive_sent_us = None;
                stats.count(self.index, |c| &c.keepalive_answers);
            }
            // Off the hot path: a full parse to recognise a gateway error frame.
            Decoded::NotAnEcho => match parse_gateway_error(text) {
                Some(error) => {
                    stats.record_error_frame(self.index, &error.message);
                    self.inflight.answer_oldest();
                }
                None => stats.count(self.index, |c| &c.corrupted),
            },
        }
    }

    /// The connection ended with `code`: counted as dropped at the end, unless a
    /// reconnect takes it.
    fn dropped(&mut self, code: u16) {
        self.ended = Some(code);
    }
}

/// An instant no run reaches: the deadline of a timer that is never polled.
/// Waits for the keepalive timer of a sending loop; never ends when there is none (its
/// `select!` arm is disabled then).
async fn keepalive_due(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// One turn of writing `message` out: hands it to the connection when it is ready to
/// take it (taking it out of `message`), then flushes. While the write waits, whatever
/// comes in is returned, so the caller can read while a send is pending.
fn poll_push(
    ws: &mut WebSocketStream<Stream>,
    message: &mut Option<Message>,
    cx: &mut Context<'_>,
) -> Poll<Push> {
    let mut ws = Pin::new(ws);
    if message.is_some() {
        match ws.as_mut().poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                if let Some(message) = message.take()
                    && let Err(error) = ws.as_mut().start_send(message)
                {
                    return Poll::Ready(Push::Done(Err(error)));
                }
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Push::Done(Err(error))),
            Poll::Pending => {}
        }
    }
    if message.is_none()
        && let Poll::Ready(result) = ws.as_mut().poll_flush(cx)
    {
        return Poll::Ready(Push::Done(result));
    }
    ws.poll_next(cx).map(Push::Incoming)
}

/// The close frame a reading `error` calls for, when the connection can still carry one:
/// a message over the size limit (1009), a protocol violation (1002), text that is not
/// UTF-8 (1007). I/O errors and a connection already closed get none.
fn close_owed_for(error: &tungstenite::Error) -> Option<CloseCode> {
    use tungstenite::error::ProtocolError;
    match error {
        tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
        tungstenite::Error::Utf8(_) => Some(CloseCode::Invalid),
        tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::ReceivedAfterClosing
            | ProtocolError::SendAfterClosing,
        ) => None,
        tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
        _ => None,
    }
}

/// The close code to count for a connection that broke with `error`.
fn close_code_of(error: &tungstenite::Error) -> u16 {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            wsprobe_core::session::NO_STATUS
        }
        _ => wsprobe_core::session::ABNORMAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the futures `make` returns (without making one).
    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(Arc<Shared>, usize, Stop, Stop) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every open connection's task holds its future for the whole run, sized for the
    /// largest state it can be in. The connect (~5 KiB) is boxed, and the WebSocket is not
    /// kept twice (once moved into the worker): 1.3 KiB, in a debug or a release build,
    /// against 6.4 KiB before (1.6 KiB with the connect boxed alone).
    #[test]
    fn a_connection_task_is_not_sized_for_its_connect() {
        let task = future_size(run);
        assert!(task <= 1400, "{task} bytes");
    }
}
