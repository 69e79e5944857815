//! One live connection: a reader task feeding an inbox, sending, and waiting for messages.
//!
//! [`Session::start`] takes an open [`Connection`] and spawns a reader task. Every frame
//! that arrives becomes an [`Incoming`] (stamped with its arrival time) in the session's
//! inbox; pings are answered with pongs by tungstenite as they are read.
//!
//! - The command engine ([`crate::command::engine`]) calls [`Session::wait_for`] with a
//!   matcher: buffered messages are scanned in arrival order, then new arrivals, until the
//!   deadline; the first match is consumed and the others stay buffered for later
//!   expectations. Every wait is cancel-safe: what it read stays buffered.
//! - The prompt also wants to *see* everything as it arrives: [`Session::start_watched`]
//!   returns a [`Watch`] that receives a copy of every frame the moment it is read,
//!   independently of what `wait_for` consumes.
//! - A connection opened with an observer ([`crate::client::connect_observed`], e.g. the
//!   transcript of `--log`) has every frame sent and read reported to it
//!   ([`crate::transcript::Observer`]); the pongs tungstenite answers pings with are not.
//!
//! The inbox is bounded ([`InboxLimits`]: frames and payload bytes). A front-end that does
//! not wait (a script that sleeps, a prompt whose user is typing) while the server floods
//! keeps the newest frames: the oldest unconsumed ones are dropped to make room, and
//! counted ([`Inbox::dropped`], and in every [`WaitError`]). A message larger than the
//! whole inbox is refused by tungstenite; the reader then closes the connection with 1009
//! (1002 for a protocol error, 1007 for text that is not UTF-8) before it gives up on it.
//!
//! Keepalive ([`Session::keep_alive`], [`KeepAlive`]): after every `every` of *silence* —
//! nothing sent by us, keepalives included — the session sends a ping, or the keepalive
//! text. Silence counts our sends only, because that is what API Gateway's idle timer
//! counts (it reportedly ignores pings, hence the text). Answers to keepalives are
//! counted ([`KeepAliveStats`]) and kept out of the inbox and the watch, so an `expect`
//! never matches one by accident and the prompt does not show them:
//! - a pong whose payload is [`KEEPALIVE_PING`] (our keepalive pings carry it, so the
//!   pong of a user's own ping is still delivered);
//! - for a keepalive text, the first text frame within [`KEEPALIVE_ANSWER_WINDOW`] after
//!   it that is the same text, a value of its top-level JSON object (the echo of its body
//!   field), or an API Gateway error frame (a JSON object with `message` and
//!   `connectionId` or `requestId`, e.g. `{"message":"Forbidden",…}` for an unmatched
//!   route). One frame at most is taken per keepalive.
//!
//! Every wait has a deadline. A failed wait ([`WaitError`]) tells a timeout from a closed
//! connection and carries the messages that arrived and were not consumed, so a failure
//! report can show what the server actually said.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use wsprobe_core::client::{self, ClientConfig};
//! use wsprobe_core::session::{Outgoing, Session};
//!
//! let url = client::parse_url("ws://127.0.0.1:8080/dev")?;
//! let mut session = Session::start(client::connect(&url, &ClientConfig::default()).await?);
//! session.send(Outgoing::Text(r#"{"action":"send","body":"hi"}"#.into())).await?;
//! let echo = session
//!     .wait_for(Duration::from_secs(2), |m| m.frame.as_text() == Some("\"hi\""))
//!     .await?;
//! println!("echo after {:?}", echo.at.elapsed());
//! session.close(1000, "bye", Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use crate::client::{Connection, Stream};
pub use crate::options::InboxLimits;
use crate::text::one_line;
use crate::transcript::{Event, SharedObserver};

/// The close code reported when a close frame carries no status (RFC 6455 §7.1.5).
pub const NO_STATUS: u16 = 1005;
/// The close code of a connection that ended without a close frame (RFC 6455 §7.1.5).
pub const ABNORMAL: u16 = 1006;

/// How long closing a connection politely may wait for the server's answer.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long the reader keeps the socket after a close frame, so that tungstenite can
/// send its reply and the server can end TCP cleanly.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The payload of keepalive pings: the pongs that carry it are answers to keepalives.
pub const KEEPALIVE_PING: &[u8] = b"wsprobe keepalive";

/// How long after a keepalive text its answer may arrive to be recognised as one.
pub const KEEPALIVE_ANSWER_WINDOW: Duration = Duration::from_secs(2);

/// The shortest keepalive interval: a shorter one is raised to it, so keepalive can never
/// spin.
pub const MIN_KEEPALIVE: Duration = Duration::from_millis(10);

/// Keeping an idle connection open: a frame after every `every` without sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// How long we may stay silent (nothing sent) before a keepalive goes out.
    pub every: Duration,
    /// The text frame to send; `None` sends a ping (with [`KEEPALIVE_PING`] as payload).
    pub message: Option<String>,
}

/// How many keepalives went out on a connection, and how many answers were recognised
/// (and kept out of the inbox).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepAliveStats {
    /// Keepalive frames sent.
    pub sent: u64,
    /// Answers to them that arrived.
    pub answered: u64,
}

/// A frame to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A ping with its payload (at most 125 bytes).
    Ping(Vec<u8>),
    /// An unsolicited pong (a heartbeat) with its payload (at most 125 bytes).
    Pong(Vec<u8>),
    /// A close frame, with a code and reason (at most 123 bytes) or without a status.
    Close(Option<(u16, String)>),
}

/// A frame that arrived, or the abnormal end of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A ping from the server (already answered with a pong).
    Ping(Vec<u8>),
    /// A pong, e.g. the answer to our ping.
    Pong(Vec<u8>),
    /// A close frame: the server's, or its answer to ours. `code` is 1005 when the frame
    /// carried no status.
    Close {
        /// The close code.
        code: u16,
        /// The close reason, possibly empty.
        reason: String,
    },
    /// The connection ended without a close frame (close code 1006): reset, EOF, or a
    /// protocol error.
    Dropped {
        /// What happened, in plain words.
        reason: String,
    },
}

impl Frame {
    /// The text of a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Whether this is a text or binary message (not a control frame or an ending).
    pub fn is_data(&self) -> bool {
        matches!(self, Frame::Text(_) | Frame::Binary(_))
    }

    /// Whether this frame ends the connection (close or dropped): nothing follows it.
    pub fn is_ending(&self) -> bool {
        matches!(self, Frame::Close { .. } | Frame::Dropped { .. })
    }

    /// How the connection ended, for an ending frame.
    pub fn ending(&self) -> Option<Ending> {
        match self {
            Frame::Close { code, reason } => Some(Ending::Closed {
                code: *code,
                reason: reason.clone(),
            }),
            Frame::Dropped { reason } => Some(Ending::Dropped {
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    /// A short name of the frame's kind: `text`, `binary`, `ping`, `pong`, `close`, `dropped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Text(_) => "text",
            Frame::Binary(_) => "binary",
            Frame::Ping(_) => "ping",
            Frame::Pong(_) => "pong",
            Frame::Close { .. } => "close",
            Frame::Dropped { .. } => "dropped",
        }
    }
}

impl fmt::Display for Frame {
    /// For failure reports: text (escaped for a terminal), binary and control payloads by
    /// their size, the ending with its code and reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Text(text) => f.write_str(&one_line(text)),
            Frame::Binary(bytes) => write!(f, "<binary, {} bytes>", bytes.len()),
            Frame::Ping(bytes) => write!(f, "<ping, {} bytes>", bytes.len()),
            Frame::Pong(bytes) => write!(f, "<pong, {} bytes>", bytes.len()),
            Frame::Close { code, reason } if reason.is_empty() => write!(f, "<close {code}>"),
            Frame::Close { code, reason } => write!(f, "<close {code} {}>", one_line(reason)),
            Frame::Dropped { reason } => write!(f, "<dropped: {}>", one_line(reason)),
        }
    }
}

/// A frame and when it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// When the reader task read it.
    pub at: Instant,
    /// What arrived.
    pub frame: Frame,
}

impl Incoming {
    /// The text of a text frame.
    pub fn text(&self) -> Option<&str> {
        self.frame.as_text()
    }
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame arrived (the server's, or its answer to ours).
    Closed {
        /// The close code (1005 when the frame had no status).
        code: u16,
        /// The close reason, possibly empty.
        reason: String,
    },
    /// The connection ended without a close frame (code 1006).
    Dropped {
        /// What happened, in plain words.
        reason: String,
    },
}

impl Ending {
    /// The close code: the frame's, or 1006 for a dropped connection.
    pub fn code(&self) -> u16 {
        match self {
            Ending::Closed { code, .. } => *code,
            Ending::Dropped { .. } => ABNORMAL,
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Closed { code, reason } if reason.is_empty() => {
                write!(f, "closed with code {code}")
            }
            Ending::Closed { code, reason } => {
                write!(f, "closed with code {code} ({})", one_line(reason))
            }
            Ending::Dropped { reason } => {
                write!(f, "dropped without a close frame: {}", one_line(reason))
            }
        }
    }
}

/// Why a frame could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The connection is closed or closing.
    #[error("the connection is closed")]
    Closed,
    /// The frame itself is not allowed (ping payload too long, reserved close code, …).
    #[error("{0}")]
    Invalid(String),
    /// Writing to the socket failed.
    #[error("sending failed: {0}")]
    Io(String),
}

/// Why a wait ended without the message it waited for. Both variants carry `seen`: the
/// messages that arrived and are still unconsumed (in arrival order), to show in a report,
/// and `dropped`: how many older unconsumed frames the full inbox had to drop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed.
    #[error("nothing matched within {}", humantime::format_duration(*after))]
    Timeout {
        /// The wait's length.
        after: Duration,
        /// Unconsumed messages, in arrival order.
        seen: Vec<Incoming>,
        /// Unconsumed frames dropped by the full inbox since the session started.
        dropped: u64,
    },
    /// The connection ended first; nothing more can arrive.
    #[error("the connection {ending} before anything matched")]
    Closed {
        /// How it ended.
        ending: Ending,
        /// Unconsumed messages, in arrival order (the ending frame among them unless it
        /// was consumed earlier).
        seen: Vec<Incoming>,
        /// Unconsumed frames dropped by the full inbox since the session started.
        dropped: u64,
    },
}

impl WaitError {
    /// The unconsumed messages at the time the wait gave up.
    pub fn seen(&self) -> &[Incoming] {
        match self {
            WaitError::Timeout { seen, .. } | WaitError::Closed { seen, .. } => seen,
        }
    }

    /// How many unconsumed frames the full inbox dropped before the wait gave up: the
    /// message waited for may have been among them.
    pub fn dropped(&self) -> u64 {
        match self {
            WaitError::Timeout { dropped, .. } | WaitError::Closed { dropped, .. } => *dropped,
        }
    }

    /// Whether the wait ran out of time (rather than the connection ending).
    pub fn is_timeout(&self) -> bool {
        matches!(self, WaitError::Timeout { .. })
    }
}

/// What the handshake of a session's connection told us.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The URL connected to.
    pub url: Url,
    /// The address connected to.
    pub peer: SocketAddr,
    /// HTTP status of the handshake response (101).
    pub status: u16,
    /// Headers of the handshake response.
    pub headers: tokio_tungstenite::tungstenite::http::HeaderMap,
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// DNS, TCP, TLS and the handshake together.
    pub connect_time: Duration,
}

/// State the reader task shares with every handle.
#[derive(Debug)]
struct Shared {
    /// Set once, when the reader sees the connection end.
    ending: OnceLock<Ending>,
    /// Told about every frame sent and read (the connection's, see
    /// [`crate::client::connect_observed`]).
    observer: Option<SharedObserver>,
    /// When we last sent a frame (or the session started): keepalive counts silence
    /// from here.
    last_sent: std::sync::Mutex<Instant>,
    /// Keepalive counts and the keepalive text awaiting its answer.
    keepalive: std::sync::Mutex<KeepAliveState>,
}

#[derive(Debug, Default)]
struct KeepAliveState {
    stats: KeepAliveStats,
    /// The last keepalive text and when it went out, until its answer arrives.
    pending: Option<(String, Instant)>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            ending: OnceLock::new(),
            observer: None,
            last_sent: std::sync::Mutex::new(Instant::now()),
            keepalive: std::sync::Mutex::default(),
        }
    }
}

impl Shared {
    fn observe(&self, event: Event<'_>) {
        if let Some(observer) = &self.observer {
            observer.observe(event);
        }
    }

    /// Notes that a frame went out now: keepalive silence counts from here.
    fn sent_now(&self) {
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last_sent(&self) -> Instant {
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keepalive(&self) -> std::sync::MutexGuard<'_, KeepAliveState> {
        self.keepalive.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `frame`, read at `at`, answers a keepalive (see the module doc); if so it
    /// is counted.
    fn take_keepalive_answer(&self, frame: &Frame, at: Instant) -> bool {
        let mut state = self.keepalive();
        let answer = match frame {
            Frame::Pong(payload) => payload == KEEPALIVE_PING,
            Frame::Text(text) => match &state.pending {
                Some((sent, when))
                    if at.saturating_duration_since(*when) <= KEEPALIVE_ANSWER_WINDOW =>
                {
                    answers_keepalive(sent, text)
                }
                _ => false,
            },
            _ => false,
        };
        if answer {
            if matches!(frame, Frame::Text(_)) {
                state.pending = None;
            }
            state.stats.answered += 1;
        }
        answer
    }
}

/// Whether `text` answers the keepalive text `sent`: the same text, a top-level value of
/// `sent` as JSON (an echo of its body), or an API Gateway error frame.
pub fn answers_keepalive(sent: &str, text: &str) -> bool {
    if text == sent {
        return true;
    }
    let Ok(received) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    if let Some(object) = received.as_object()
        && object
            .get("message")
            .is_some_and(serde_json::Value::is_string)
        && (object.contains_key("connectionId") || object.contains_key("requestId"))
    {
        return true;
    }
    match serde_json::from_str::<serde_json::Value>(sent) {
        Ok(serde_json::Value::Object(fields)) => {
            received == serde_json::Value::Object(fields.clone())
                || fields.values().any(|value| *value == received)
        }
        _ => false,
    }
}

type Sink = SplitSink<WebSocketStream<Stream>, Message>;

/// The sending half of a session. Cheap to clone; clones send on the same connection.
#[derive(Clone, Debug)]
pub struct SessionSender {
    sink: Arc<Mutex<Sink>>,
    shared: Arc<Shared>,
}

impl SessionSender {
    /// Sends one frame and flushes it.
    pub async fn send(&self, frame: Outgoing) -> Result<(), SessionError> {
        // The frame is kept for the observer only when there is one.
        let (message, observed) = match &self.shared.observer {
            Some(observer) => (to_message(frame.clone())?, Some((observer, frame))),
            None => (to_message(frame)?, None),
        };
        if self.shared.ending.get().is_some() {
            return Err(SessionError::Closed);
        }
        let mut sink = self.sink.lock().await;
        // Told as the frame is handed to the socket, under the lock: sends are observed
        // in the order they go out, and before anything can answer them. A write that
        // then fails ends the connection, which the reader reports next.
        if let Some((observer, frame)) = &observed {
            observer.observe(Event::Sent(frame));
        }
        sink.send(message).await.map_err(send_error)?;
        self.shared.sent_now();
        Ok(())
    }

    /// Keepalives sent on this connection and answers recognised.
    pub fn keepalive_stats(&self) -> KeepAliveStats {
        self.shared.keepalive().stats
    }

    /// Whether the connection has ended (a close frame arrived, or it dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.ending.get().is_some()
    }

    /// How the connection ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.shared.ending.get()
    }
}

fn to_message(frame: Outgoing) -> Result<Message, SessionError> {
    Ok(match frame {
        Outgoing::Text(text) => Message::Text(text.into()),
        Outgoing::Binary(bytes) => Message::Binary(bytes.into()),
        Outgoing::Ping(payload) => {
            if payload.len() > 125 {
                return Err(SessionError::Invalid(format!(
                    "a ping payload is at most 125 bytes, this one has {}",
                    payload.len()
                )));
            }
            Message::Ping(payload.into())
        }
        Outgoing::Pong(payload) => {
            if payload.len() > 125 {
                return Err(SessionError::Invalid(format!(
                    "a pong payload is at most 125 bytes, this one has {}",
                    payload.len()
                )));
            }
            Message::Pong(payload.into())
        }
        Outgoing::Close(None) => Message::Close(None),
        Outgoing::Close(Some((code, reason))) => {
            check_close_code(code)?;
            if reason.len() > 123 {
                return Err(SessionError::Invalid(format!(
                    "a close reason is at most 123 bytes, this one has {}",
                    reason.len()
                )));
            }
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))
        }
    })
}

/// Codes an endpoint may send (RFC 6455 §7.4): 1000–1003, 1007–1014, and 3000–4999.
fn check_close_code(code: u16) -> Result<(), SessionError> {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(()),
        1004..=1006 | 1015 => Err(SessionError::Invalid(format!(
            "close code {code} is reserved and must not be sent"
        ))),
        _ => Err(SessionError::Invalid(format!(
            "close code {code} is not allowed; use 1000-1003, 1007-1014 or 3000-4999"
        ))),
    }
}

fn send_error(error: tungstenite::Error) -> SessionError {
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError;
    match error {
        E::ConnectionClosed | E::AlreadyClosed | E::Protocol(ProtocolError::SendAfterClosing) => {
            SessionError::Closed
        }
        E::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            SessionError::Closed
        }
        E::Capacity(e) => SessionError::Invalid(e.to_string()),
        other => SessionError::Io(other.to_string()),
    }
}

/// What the reader delivered and nobody consumed yet, shared by the reader task (which
/// appends, dropping the oldest frames when a limit is passed) and the [`Inbox`] (which
/// scans and consumes). The lock is never held across an await.
#[derive(Debug)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
    /// Woken on every arrival and when the reader stops.
    arrived: Notify,
}

#[derive(Debug)]
struct QueueState {
    /// Unconsumed frames, in arrival order.
    frames: VecDeque<Incoming>,
    /// Their payload bytes.
    bytes: usize,
    limits: InboxLimits,
    /// Frames dropped from the front to stay within `limits`. A scan that let go of the
    /// lock finds its place again by how much this grew meanwhile.
    dropped: u64,
    /// Set when the ending frame arrived (or the reader stopped without one): nothing more
    /// will come.
    finished: Option<Ending>,
}

impl Queue {
    fn new(limits: InboxLimits) -> Self {
        Self {
            state: std::sync::Mutex::new(QueueState {
                frames: VecDeque::new(),
                bytes: 0,
                limits: InboxLimits {
                    frames: limits.frames.max(1),
                    bytes: limits.bytes,
                },
                dropped: 0,
                finished: None,
            }),
            arrived: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic while the lock was held left the queue consistent: every change to it is
        // a single push or pop together with its byte count.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a frame from the reader, dropping the oldest unconsumed ones while a limit
    /// is passed (never the frame just read, so the newest is always there to see).
    fn push(&self, incoming: Incoming) {
        {
            let mut state = self.lock();
            if let Some(ending) = incoming.frame.ending() {
                state.finished.get_or_insert(ending);
            }
            state.bytes += payload_len(&incoming.frame);
            state.frames.push_back(incoming);
            while state.frames.len() > 1
                && (state.frames.len() > state.limits.frames || state.bytes > state.limits.bytes)
            {
                if let Some(oldest) = state.frames.pop_front() {
                    state.bytes -= payload_len(&oldest.frame);
                    state.dropped += 1;
                }
            }
        }
        self.arrived.notify_one();
    }

    /// The reader stopped: if it did so without an ending frame (a panic), the connection
    /// is as good as dropped.
    fn reader_stopped(&self, shared: &Shared) {
        let ending = Ending::Dropped {
            reason: "the reader stopped".into(),
        };
        let _ = shared.ending.set(ending.clone());
        self.lock().finished.get_or_insert(ending);
        self.arrived.notify_one();
    }
}

impl QueueState {
    fn take(&mut self, index: usize) -> Option<Incoming> {
        let taken = self.frames.remove(index)?;
        self.bytes -= payload_len(&taken.frame);
        Some(taken)
    }
}

/// The bytes a frame holds, as the inbox counts them.
fn payload_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(text) => text.len(),
        Frame::Binary(bytes) | Frame::Ping(bytes) | Frame::Pong(bytes) => bytes.len(),
        Frame::Close { reason, .. } | Frame::Dropped { reason } => reason.len(),
    }
}

/// Marks the queues (the inbox's, the watch's) finished when the reader task ends, however
/// it ends.
struct ReaderDone(Arc<Queue>, Arc<Shared>, Option<Arc<Queue>>);

impl Drop for ReaderDone {
    fn drop(&mut self) {
        self.0.reader_stopped(&self.1);
        if let Some(watch) = &self.2 {
            watch.reader_stopped(&self.1);
        }
    }
}

/// Where the reader task delivers frames: a bounded queue of unconsumed frames (see the
/// module doc).
#[derive(Debug)]
pub struct Inbox {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    _reader: AbortOnDrop,
    /// The keepalive task, if one runs: it goes with the inbox, like the reader.
    keepalive: Option<AbortOnDrop>,
}

/// Stops the reader task when the inbox goes away, so a forgotten session does not keep
/// its socket open forever.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What [`Inbox::find`] does with the first match.
#[derive(Clone, Copy)]
enum OnMatch {
    /// Takes it out of the inbox.
    Consume,
    /// Leaves it there and returns a copy.
    Peek,
}

impl Inbox {
    /// The next message: the oldest buffered one, else the next to arrive, waiting as long
    /// as it takes. `None` once the connection has ended and everything was delivered.
    /// Cancel-safe, so it can sit in a `tokio::select!` loop.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            {
                let mut state = self.queue.lock();
                if let Some(message) = state.take(0) {
                    return Some(message);
                }
                if state.finished.is_some() {
                    return None;
                }
            }
            self.queue.arrived.notified().await;
        }
    }

    /// Strictly the next message (buffered first), within `within`.
    pub async fn next(&mut self, within: Duration) -> Result<Incoming, WaitError> {
        self.wait_for(within, |_| true).await
    }

    /// The first message, in arrival order, that `matcher` accepts: buffered ones first,
    /// then new arrivals until `within` has passed. The match is consumed; the messages it
    /// skipped stay buffered for later waits. The ending frame (close or dropped) can be
    /// matched like any other; once it is buffered and unmatched, the wait fails at once
    /// with [`WaitError::Closed`].
    pub async fn wait_for(
        &mut self,
        within: Duration,
        matcher: impl FnMut(&Incoming) -> bool,
    ) -> Result<Incoming, WaitError> {
        self.find(within, matcher, OnMatch::Consume).await
    }

    /// Waits until no data frame (text or binary) arrives for the whole of `within`. If
    /// one does, or one is already buffered, it is returned as the error and stays
    /// buffered. Control frames and the connection's end do not count. For `expect nothing`.
    pub async fn expect_silence(&mut self, within: Duration) -> Result<(), Incoming> {
        match self
            .find(within, |m| m.frame.is_data(), OnMatch::Peek)
            .await
        {
            Ok(found) => Err(found),
            Err(_) => Ok(()),
        }
    }

    /// Waits until the connection ends, for at most `within`; whether it has. Nothing is
    /// consumed (the ending frame stays for the waits that look for it).
    pub async fn wait_ended(&mut self, within: Duration) -> bool {
        match self
            .find(within, |m| m.frame.is_ending(), OnMatch::Peek)
            .await
        {
            Ok(_) | Err(WaitError::Closed { .. }) => true,
            Err(WaitError::Timeout { .. }) => false,
        }
    }

    /// The first message `matcher` accepts, scanning the buffer and then new arrivals
    /// until the deadline.
    async fn find(
        &mut self,
        within: Duration,
        mut matcher: impl FnMut(&Incoming) -> bool,
        on_match: OnMatch,
    ) -> Result<Incoming, WaitError> {
        let deadline = tokio::time::Instant::now() + within;
        // The position of the next frame to look at, counted from the first frame the
        // session ever buffered (dropped ones included), so that drops at the front while
        // the lock was let go do not make the scan skip or repeat frames.
        let mut next_position: Option<u64> = None;
        loop {
            {
                let mut state = self.queue.lock();
                let start = next_position.map_or(0, |position| {
                    usize::try_from(position.saturating_sub(state.dropped)).unwrap_or(usize::MAX)
                });
                let found = (start..state.frames.len()).find(|&i| matcher(&state.frames[i]));
                if let Some(index) = found {
                    let message = match on_match {
                        OnMatch::Consume => state.take(index),
                        OnMatch::Peek => state.frames.get(index).cloned(),
                    };
                    if let Some(message) = message {
                        return Ok(message);
                    }
                }
                next_position = Some(state.dropped + state.frames.len() as u64);
                if let Some(ending) = &state.finished {
                    return Err(WaitError::Closed {
                        ending: ending.clone(),
                        seen: state.frames.iter().cloned().collect(),
                        dropped: state.dropped,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, self.queue.arrived.notified())
                .await
                .is_err()
            {
                let state = self.queue.lock();
                return Err(WaitError::Timeout {
                    after: within,
                    seen: state.frames.iter().cloned().collect(),
                    dropped: state.dropped,
                });
            }
        }
    }

    /// Every message that arrived and was not consumed yet, in arrival order.
    pub fn received_so_far(&mut self) -> Vec<Incoming> {
        self.queue.lock().frames.iter().cloned().collect()
    }

    /// Takes every message that arrived and was not consumed yet, in arrival order.
    pub fn drain(&mut self) -> Vec<Incoming> {
        let mut state = self.queue.lock();
        state.bytes = 0;
        state.frames.drain(..).collect()
    }

    /// How many unconsumed frames were dropped, oldest first, because the inbox was full.
    pub fn dropped(&self) -> u64 {
        self.queue.lock().dropped
    }

    /// Whether the connection has ended (a close frame arrived, or it dropped), even if
    /// the ending frame is still buffered.
    pub fn is_closed(&self) -> bool {
        self.shared.ending.get().is_some()
    }

    /// How the connection ended, once it has (the reader records it before it delivers
    /// the ending frame).
    pub fn ending(&self) -> Option<&Ending> {
        self.shared.ending.get()
    }
}

/// A copy of every frame as it arrives, for display: see [`Session::start_watched`]. It is
/// bounded like the inbox (and by the same limits): a display that falls behind a flood
/// loses the oldest frames not shown yet, counted in [`Watch::dropped`], never the ending.
#[derive(Debug)]
pub struct Watch {
    queue: Arc<Queue>,
    /// Whether the ending frame has been handed out: nothing follows it.
    delivered_ending: bool,
}

impl Watch {
    /// The next frame to arrive; `None` once the ending frame (close or dropped, always
    /// the last) has been delivered. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            if let Some(message) = self.try_recv() {
                return Some(message);
            }
            if self.delivered_ending || self.queue.lock().finished.is_some() {
                return None;
            }
            self.queue.arrived.notified().await;
        }
    }

    /// A frame that has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        let message = self.queue.lock().take(0)?;
        if message.frame.is_ending() {
            self.delivered_ending = true;
        }
        Some(message)
    }

    /// How many frames were dropped, oldest first, because the display fell behind.
    pub fn dropped(&self) -> u64 {
        self.queue.lock().dropped
    }
}

/// One live connection: send frames, wait for messages.
#[derive(Debug)]
pub struct Session {
    info: ConnectionInfo,
    sender: SessionSender,
    inbox: Inbox,
}

impl Session {
    /// Starts the reader task on `connection`, with the default inbox limits. Must run
    /// inside a tokio runtime.
    pub fn start(connection: Connection) -> Session {
        Self::spawn(connection, InboxLimits::default(), None)
    }

    /// Like [`Session::start`], with an inbox bounded by `limits`.
    pub fn start_bounded(connection: Connection, limits: InboxLimits) -> Session {
        Self::spawn(connection, limits, None)
    }

    /// Like [`Session::start_bounded`], and also returns a [`Watch`] that gets a copy of
    /// every frame (data, control and the ending) the moment it is read, whatever the
    /// inbox's waits consume: a REPL prints from it while scripts-style waits run on the
    /// session.
    pub fn start_watched(connection: Connection, limits: InboxLimits) -> (Session, Watch) {
        let queue = Arc::new(Queue::new(limits));
        (
            Self::spawn(connection, limits, Some(queue.clone())),
            Watch {
                queue,
                delivered_ending: false,
            },
        )
    }

    fn spawn(connection: Connection, limits: InboxLimits, watch: Option<Arc<Queue>>) -> Session {
        let Connection {
            stream,
            url,
            peer,
            status,
            headers,
            subprotocol,
            connect_time,
            observer,
        } = connection;
        let (sink, source) = stream.split();
        let shared = Arc::new(Shared {
            observer,
            ..Shared::default()
        });
        let queue = Arc::new(Queue::new(limits));
        let sink = Arc::new(Mutex::new(sink));
        let reader = tokio::spawn(read_loop(
            source,
            sink.clone(),
            ReaderDone(queue.clone(), shared.clone(), watch.clone()),
            watch,
        ));
        Session {
            info: ConnectionInfo {
                url,
                peer,
                status,
                headers,
                subprotocol,
                connect_time,
            },
            sender: SessionSender {
                sink,
                shared: shared.clone(),
            },
            inbox: Inbox {
                queue,
                shared,
                _reader: AbortOnDrop(reader),
                keepalive: None,
            },
        }
    }

    /// What the handshake told us.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The observer the connection was opened with ([`crate::client::connect_observed`]):
    /// code that reopens the connection passes it on, so the new one reports to it too.
    pub fn observer(&self) -> Option<&SharedObserver> {
        self.sender.shared.observer.as_ref()
    }

    /// Separates sending from receiving, e.g. to wait in one task and send in another.
    pub fn split(self) -> (SessionSender, Inbox) {
        (self.sender, self.inbox)
    }

    /// The inbox, for the waits not mirrored here.
    pub fn inbox(&mut self) -> &mut Inbox {
        &mut self.inbox
    }

    /// Sends one frame and flushes it.
    pub async fn send(&self, frame: Outgoing) -> Result<(), SessionError> {
        self.sender.send(frame).await
    }

    /// Starts keeping the connection alive (see the module doc), replacing an earlier
    /// keepalive; `None` stops it. The task ends with the connection.
    pub fn keep_alive(&mut self, keepalive: Option<KeepAlive>) {
        self.inbox.keepalive = keepalive
            .map(|keepalive| AbortOnDrop(tokio::spawn(keep_alive(self.sender.clone(), keepalive))));
    }

    /// Keepalives sent on this connection and answers recognised.
    pub fn keepalive_stats(&self) -> KeepAliveStats {
        self.sender.keepalive_stats()
    }

    /// Strictly the next message (buffered first), within `within`.
    pub async fn next(&mut self, within: Duration) -> Result<Incoming, WaitError> {
        self.inbox.next(within).await
    }

    /// The first message that `matcher` accepts, within `within`; see [`Inbox::wait_for`].
    pub async fn wait_for(
        &mut self,
        within: Duration,
        matcher: impl FnMut(&Incoming) -> bool,
    ) -> Result<Incoming, WaitError> {
        self.inbox.wait_for(within, matcher).await
    }

    /// Waits until no data frame arrives for the whole of `within`; see
    /// [`Inbox::expect_silence`].
    pub async fn expect_silence(&mut self, within: Duration) -> Result<(), Incoming> {
        self.inbox.expect_silence(within).await
    }

    /// Every message that arrived and was not consumed yet, in arrival order.
    pub fn received_so_far(&mut self) -> Vec<Incoming> {
        self.inbox.received_so_far()
    }

    /// Takes every message that arrived and was not consumed yet.
    pub fn drain(&mut self) -> Vec<Incoming> {
        self.inbox.drain()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inbox.is_closed()
    }

    /// How the connection ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.inbox.ending()
    }

    /// Ends the connection politely: sends a close frame with `code` and `reason` (unless
    /// it has ended already) and waits for the server's answer, all of it within `within`.
    /// Returns how the connection ended, or `None` if the server did not answer in time
    /// (or did not even read the close frame).
    pub async fn close(mut self, code: u16, reason: &str, within: Duration) -> Option<Ending> {
        let deadline = Instant::now() + within;
        if !self.is_closed() {
            let frame = Outgoing::Close(Some((code, reason.to_owned())));
            match tokio::time::timeout(within, self.send(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) if self.is_closed() => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.wait_for(left, |m| m.frame.is_ending()).await {
            Ok(found) => found.frame.ending(),
            Err(WaitError::Closed { ending, .. }) => Some(ending),
            Err(WaitError::Timeout { .. }) => None,
        }
    }
}

/// Sends a keepalive whenever nothing was sent for `keepalive.every`, until the
/// connection ends or a keepalive cannot be sent.
async fn keep_alive(sender: SessionSender, keepalive: KeepAlive) {
    let every = keepalive.every.max(MIN_KEEPALIVE);
    loop {
        let due = sender.shared.last_sent() + every;
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        if sender.is_closed() {
            return;
        }
        let frame = match &keepalive.message {
            Some(text) => {
                sender.shared.keepalive().pending = Some((text.clone(), Instant::now()));
                Outgoing::Text(text.clone())
            }
            None => Outgoing::Ping(KEEPALIVE_PING.to_vec()),
        };
        // A server that stopped reading must not hold the task forever.
        match tokio::time::timeout(every.max(CLOSE_WAIT), sender.send(frame)).await {
            Ok(Ok(())) => sender.shared.keepalive().stats.sent += 1,
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Reads frames until the connection ends, delivering each to the inbox (and the watch).
/// The last frame delivered is always an ending (close or dropped). A frame tungstenite
/// refuses (too large, a protocol violation, text that is not UTF-8) ends the connection:
/// the reader first tells the server why with a close frame (1009, 1002, 1007).
async fn read_loop(
    mut source: SplitStream<WebSocketStream<Stream>>,
    sink: Arc<Mutex<Sink>>,
    done: ReaderDone,
    watch: Option<Arc<Queue>>,
) {
    let ReaderDone(queue, shared, _) = &done;
    loop {
        let next = source.next().await;
        let at = Instant::now();
        let frame = match next {
            Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
            Some(Ok(Message::Ping(bytes))) => Frame::Ping(bytes.to_vec()),
            Some(Ok(Message::Pong(bytes))) => Frame::Pong(bytes.to_vec()),
            Some(Ok(Message::Close(close))) => match close {
                Some(close) => Frame::Close {
                    code: close.code.into(),
                    reason: close.reason.as_str().to_owned(),
                },
                None => Frame::Close {
                    code: NO_STATUS,
                    reason: String::new(),
                },
            },
            // Raw frames are never returned by a read.
            Some(Ok(Message::Frame(_))) => continue,
            Some(Err(error)) => {
                let mut reason = dropped_reason(&error);
                if let Some(code) = refusal_code(&error)
                    && close_for(&sink, code).await
                {
                    shared.observe(Event::Sent(&Outgoing::Close(Some((code, String::new())))));
                    reason.push_str(&format!(" (wsprobe closed the connection with {code})"));
                }
                Frame::Dropped { reason }
            }
            None => Frame::Dropped {
                reason: "the connection ended without a close frame".into(),
            },
        };
        // The transcript sees keepalive answers too; the inbox does not.
        shared.observe(Event::Received(&frame));
        if shared.take_keepalive_answer(&frame, at) {
            continue;
        }
        let ending = frame.ending();
        if let Some(ending) = &ending {
            let _ = shared.ending.set(ending.clone());
        }
        let incoming = Incoming { at, frame };
        if let Some(watch) = &watch {
            watch.push(incoming.clone());
        }
        queue.push(incoming);
        if ending.is_some() {
            break;
        }
    }
    // After a close frame, keep reading a little: this lets tungstenite send its answer
    // to the server's close and see the TCP connection end cleanly.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = source.next().await {}
    })
    .await;
}

/// The close code that tells the server why a frame it sent was refused, for the errors
/// that are about what the server sent (not about the connection breaking).
fn refusal_code(error: &tungstenite::Error) -> Option<u16> {
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError;
    match error {
        E::Capacity(_) => Some(1009),
        E::Utf8(_) => Some(1007),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        E::Protocol(_) => Some(1002),
        _ => None,
    }
}

/// Sends a close frame with `code`, within [`CLOSE_WAIT`] (a server that stopped reading
/// must not hold the reader). Whether it went out.
async fn close_for(sink: &Mutex<Sink>, code: u16) -> bool {
    let frame = Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }));
    tokio::time::timeout(CLOSE_WAIT, async {
        sink.lock().await.send(frame).await.is_ok()
    })
    .await
    .unwrap_or(false)
}

fn dropped_reason(error: &tungstenite::Error) -> String {
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError;
    match error {
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "the server ended the connection without a close frame".into()
        }
        E::Io(e) => format!("the connection broke: {e}"),
        E::Capacity(e) => format!("a message was too large: {e}"),
        E::Utf8(_) => "a text message was not valid UTF-8".into(),
        E::Protocol(e) => format!("WebSocket protocol error: {e}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_that_may_be_sent() {
        for code in [1000, 1001, 1003, 1008, 1011, 3000, 4999] {
            assert!(check_close_code(code).is_ok(), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(check_close_code(code).is_err(), "{code}");
        }
    }

    #[test]
    fn oversized_control_payloads_are_refused() {
        assert!(to_message(Outgoing::Ping(vec![0; 125])).is_ok());
        assert!(to_message(Outgoing::Ping(vec![0; 126])).is_err());
        assert!(to_message(Outgoing::Close(Some((1000, "x".repeat(123))))).is_ok());
        assert!(to_message(Outgoing::Close(Some((1000, "x".repeat(124))))).is_err());
    }

    #[test]
    fn keepalive_answers_are_recognised() {
        let sent = r#"{"action":"send","body":"ka"}"#;
        assert!(answers_keepalive(sent, sent));
        assert!(answers_keepalive(sent, r#""ka""#));
        assert!(answers_keepalive(sent, r#"{"body":"ka","action":"send"}"#));
        assert!(answers_keepalive(
            sent,
            r#"{"message": "Forbidden", "connectionId":"abc=", "requestId":"r1"}"#
        ));
        assert!(!answers_keepalive(sent, r#""other""#));
        assert!(!answers_keepalive(sent, r#"{"message":"hello"}"#));
        assert!(!answers_keepalive("ping", "pong"));
        assert!(answers_keepalive("ping", "ping"));
    }

    #[test]
    fn only_keepalive_pongs_and_one_answer_per_text_are_taken() {
        let shared = Shared::default();
        let now = Instant::now();
        assert!(!shared.take_keepalive_answer(&Frame::Pong(b"mine".to_vec()), now));
        assert!(shared.take_keepalive_answer(&Frame::Pong(KEEPALIVE_PING.to_vec()), now));
        // No keepalive text pending: an identical text is a message.
        assert!(!shared.take_keepalive_answer(&Frame::Text("ka".into()), now));
        shared.keepalive().pending = Some(("ka".into(), now));
        assert!(shared.take_keepalive_answer(&Frame::Text("ka".into()), now));
        assert!(!shared.take_keepalive_answer(&Frame::Text("ka".into()), now));
        // Too late to be the answer.
        shared.keepalive().pending = Some(("ka".into(), now));
        let late = now + KEEPALIVE_ANSWER_WINDOW + Duration::from_millis(1);
        assert!(!shared.take_keepalive_answer(&Frame::Text("ka".into()), late));
        assert_eq!(shared.keepalive().stats.answered, 2);
    }

    #[test]
    fn frames_display_on_one_line() {
        assert_eq!(Frame::Text("hi".into()).to_string(), "hi");
        assert_eq!(Frame::Binary(vec![1, 2]).to_string(), "<binary, 2 bytes>");
        assert_eq!(
            Frame::Close {
                code: 1000,
                reason: "bye".into()
            }
            .to_string(),
            "<close 1000 bye>"
        );
        let ending = Ending::Dropped {
            reason: "reset".into(),
        };
        assert_eq!(ending.code(), ABNORMAL);
    }
}
