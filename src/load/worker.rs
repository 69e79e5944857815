//! One task per connection: wait for its turn to open, connect, send pings (on the
//! timetable, or one at a time), match echoes by sequence, then wait for the echoes in
//! flight and close.
//!
//! A connection that cannot be opened is counted by cause and not retried: retrying in
//! a loop would hammer a stage that is already refusing, and would blur what the run
//! measured. The run goes on with the connections that opened. A connection the server
//! closes (or that breaks) is counted as dropped, with its close code, and not reopened.
//!
//! The task reads and writes the WebSocket itself (no session task, no channels): one
//! `select!` over the next incoming message, the next due send and the stop signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use url::Url;

use super::inflight::{EchoVerdict, InFlight};
use super::ping::{Decoded, PingFormat};
use super::stats::Stats;
use super::{Limit, Plan, WorkMode};
use crate::client::{self, ClientConfig, Stream};
use crate::message::parse_gateway_error;

/// How long a worker waits for the server's reply to its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    /// Where to connect.
    pub url: Url,
    /// How to connect (small tungstenite buffers).
    pub client: ClientConfig,
    /// What to do.
    pub plan: Plan,
    /// How pings look.
    pub format: PingFormat,
    /// Where measurements go.
    pub stats: Stats,
    /// Closed model with `-n`: pings left to send, taken one at a time by any worker.
    pub tickets: AtomicU64,
}

impl Shared {
    fn take_ticket(&self) -> bool {
        self.tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    fn at(&self, us: u64) -> Instant {
        Instant::from_std(self.stats.start) + Duration::from_micros(us)
    }
}

/// What a worker tells the run when it is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerEnd {
    /// When it sent its last ping (µs since the start), if it sent any.
    pub last_send_us: Option<u64>,
    /// When it stopped sending (µs since the start), if it opened.
    pub stopped_sending_us: Option<u64>,
    /// It never tried to connect: sending had ended before its turn.
    pub skipped: bool,
}

/// How a wait on the connection ended.
enum Flow {
    Continue,
    /// The server closed the connection, or it broke; it has been counted as dropped.
    Ended,
}

/// Runs connection `index` to its end.
pub async fn run(shared: Arc<Shared>, index: usize, mut stop: watch::Receiver<bool>) -> WorkerEnd {
    let plan = &shared.plan;
    let opens_at = plan.openings.at(index);
    if let Limit::Duration(duration) = plan.limit {
        if opens_at >= duration {
            return WorkerEnd {
                skipped: true,
                ..WorkerEnd::default()
            };
        }
    }
    let opening = Instant::from_std(shared.stats.start) + opens_at;
    tokio::select! {
        _ = sleep_until(opening) => {}
        _ = stopped(&mut stop) => return WorkerEnd { skipped: true, ..WorkerEnd::default() },
    }
    let connection = tokio::select! {
        result = client::connect(&shared.url, &shared.client) => result,
        _ = stopped(&mut stop) => return WorkerEnd { skipped: true, ..WorkerEnd::default() },
    };
    let connection = match connection {
        Ok(connection) => connection,
        Err(error) => {
            shared.stats.record_connect_failure(error);
            return WorkerEnd::default();
        }
    };
    let connect_us = u64::try_from(connection.connect_time.as_micros()).unwrap_or(u64::MAX);
    shared.stats.record_connected(index, connect_us);
    let mut worker = Worker {
        index,
        shared: &shared,
        ws: connection.stream,
        inflight: InFlight::new(u64::try_from(plan.timeout.as_micros()).unwrap_or(u64::MAX)),
        buffer: BytesMut::new(),
        end: WorkerEnd::default(),
    };
    let flow = match plan.mode {
        WorkMode::Open(_) => worker.open_loop(&mut stop).await,
        WorkMode::Closed => worker.closed_loop(&mut stop).await,
    };
    worker.end.stopped_sending_us = Some(shared.stats.now_us());
    if let Flow::Continue = flow {
        if let Flow::Continue = worker.drain().await {
            worker.close().await;
        }
    }
    let stats = &shared.stats;
    stats
        .counters
        .lost
        .fetch_add(worker.inflight.lost(), Ordering::Relaxed);
    stats.counters.open_now.fetch_sub(1, Ordering::Relaxed);
    worker.end
}

/// Resolves when the run asks workers to stop sending (Ctrl-C).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the run is gone, which is a stop too.
    let _ = stop.wait_for(|stop| *stop).await;
}

struct Worker<'a> {
    index: usize,
    shared: &'a Shared,
    ws: WebSocketStream<Stream>,
    inflight: InFlight,
    /// Reused for every ping (see `ping.rs`).
    buffer: BytesMut,
    end: WorkerEnd,
}

impl Worker<'_> {
    /// Open model: send on the timetable until the limit or a stop.
    async fn open_loop(&mut self, stop: &mut watch::Receiver<bool>) -> Flow {
        let (WorkMode::Open(timetable), limit) = (self.shared.plan.mode, self.shared.plan.limit)
        else {
            return Flow::Continue;
        };
        let mut slot = timetable.first_slot_from(self.index, self.shared.stats.now_us());
        // With -n, each connection sends its share of the count even when it opened
        // after its first slots: it joins the timetable where it stands and sends on.
        let quota = match limit {
            Limit::Count(count) => timetable.share_of(self.index, count),
            Limit::Duration(_) => u64::MAX,
        };
        let mut sent = 0;
        let sleep = sleep_until(self.shared.at(timetable.due_us(self.index, slot)));
        tokio::pin!(sleep);
        loop {
            let due_us = timetable.due_us(self.index, slot);
            let within_limit = match limit {
                Limit::Duration(duration) => Duration::from_micros(due_us) < duration,
                Limit::Count(_) => sent < quota,
            };
            if !within_limit {
                return Flow::Continue;
            }
            tokio::select! {
                biased;
                _ = stopped(stop) => return Flow::Continue,
                () = &mut sleep => {
                    // Late or not, the latency counts from the slot.
                    if let Flow::Ended = self.send(due_us).await {
                        return Flow::Ended;
                    }
                    self.inflight.expire(self.shared.stats.now_us());
                    slot += 1;
                    sent += 1;
                    sleep.as_mut().reset(self.shared.at(timetable.due_us(self.index, slot)));
                }
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming) {
                        return Flow::Ended;
                    }
                }
            }
        }
    }

    /// Closed model: one ping in flight; the next goes as soon as the echo is in (or the
    /// ping timed out).
    async fn closed_loop(&mut self, stop: &mut watch::Receiver<bool>) -> Flow {
        let limit = self.shared.plan.limit;
        loop {
            if self.inflight.waiting() == 0 {
                if *stop.borrow() {
                    return Flow::Continue;
                }
                let may_send = match limit {
                    Limit::Duration(duration) => {
                        Duration::from_micros(self.shared.stats.now_us()) < duration
                    }
                    Limit::Count(_) => self.shared.take_ticket(),
                };
                if !may_send {
                    return Flow::Continue;
                }
                let now_us = self.shared.stats.now_us();
                if let Flow::Ended = self.send(now_us).await {
                    return Flow::Ended;
                }
                continue;
            }
            // One ping waits: its expiry is there.
            let expiry = self.inflight.next_expiry().unwrap_or_default();
            tokio::select! {
                biased;
                _ = stopped(stop) => return Flow::Continue,
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming) {
                        return Flow::Ended;
                    }
                }
                () = sleep_until(self.shared.at(expiry + 1)) => {
                    self.inflight.expire(self.shared.stats.now_us());
                }
            }
        }
    }

    /// After the last send: wait for the echoes in flight, each up to the timeout.
    async fn drain(&mut self) -> Flow {
        while let Some(expiry) = self.inflight.next_expiry() {
            tokio::select! {
                incoming = self.ws.next() => {
                    if let Flow::Ended = self.on_incoming(incoming) {
                        return Flow::Ended;
                    }
                }
                () = sleep_until(self.shared.at(expiry + 1)) => {
                    self.inflight.expire(self.shared.stats.now_us());
                }
            }
        }
        Flow::Continue
    }

    /// Closes with 1000 and waits briefly for the server's close frame.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            if self.ws.close(None).await.is_ok() {
                while let Some(Ok(_)) = self.ws.next().await {}
            }
        })
        .await;
    }

    /// Sends the next ping; its latency will count from `since_us`.
    async fn send(&mut self, since_us: u64) -> Flow {
        let sequence = self.inflight.next_sequence();
        let bytes = self
            .shared
            .format
            .encode(&mut self.buffer, self.index as u64, sequence);
        // The ping is built from JSON-escaped text and ASCII only, so it is UTF-8.
        let text = Utf8Bytes::try_from(bytes).expect("pings are ASCII");
        self.inflight.sent(since_us);
        match self.ws.send(Message::Text(text)).await {
            Ok(()) => {
                self.shared.stats.count(|c| &c.sent);
                self.end.last_send_us = Some(self.shared.stats.now_us());
                Flow::Continue
            }
            Err(error) => {
                // The ping never left: it cannot be lost.
                self.inflight.unsend();
                self.dropped(close_code_of(&error));
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
                self.shared.stats.count(|c| &c.corrupted);
                Flow::Continue
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(crate::session::NO_STATUS, |f| u16::from(f.code));
                self.dropped(code);
                Flow::Ended
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Flow::Continue,
            Some(Err(error)) => {
                self.dropped(close_code_of(&error));
                Flow::Ended
            }
            None => {
                self.dropped(crate::session::ABNORMAL);
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
            } if connection == self.index as u64 => match self.inflight.echo(sequence, now_us) {
                EchoVerdict::OnTime(latency) => {
                    stats.count(|c| &c.echoed);
                    stats.record_round_trip(self.index, latency);
                }
                EchoVerdict::Late(latency) => {
                    stats.count(|c| &c.late);
                    stats.record_round_trip(self.index, latency);
                }
                EchoVerdict::Duplicate => stats.count(|c| &c.duplicated),
                EchoVerdict::Unknown => stats.count(|c| &c.corrupted),
            },
            Decoded::Damaged {
                connection,
                sequence,
            } => {
                stats.count(|c| &c.corrupted);
                // It came back, damaged: counted as corrupted, not lost as well.
                if connection == self.index as u64 {
                    self.inflight.settle(sequence);
                }
            }
            Decoded::Echo { .. } | Decoded::Corrupted => stats.count(|c| &c.corrupted),
            // Off the hot path: a full parse to recognise a gateway error frame.
            Decoded::NotAnEcho => match parse_gateway_error(text) {
                Some(error) => {
                    stats.record_error_frame(&error.message);
                    self.inflight.answer_oldest();
                }
                None => stats.count(|c| &c.corrupted),
            },
        }
    }

    fn dropped(&mut self, code: u16) {
        self.shared.stats.record_dropped(code);
    }
}

/// The close code to count for a connection that broke with `error`.
fn close_code_of(error: &tungstenite::Error) -> u16 {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            crate::session::NO_STATUS
        }
        _ => crate::session::ABNORMAL,
    }
}
