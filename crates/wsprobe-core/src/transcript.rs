//! The transcript of a session (`--log FILE`): one JSON line per event — the handshake's
//! request and response, every frame sent and received, the end of a connection, and
//! reconnects — each stamped with the wall-clock time in RFC 3339 with microseconds.
//!
//! Two halves:
//! - the **hook**: [`Observer`] and [`Event`]. The client ([`crate::client::connect_observed`])
//!   reports the handshake, the session ([`crate::session`]) every frame that goes out or
//!   comes in. The hook is generic: anything that wants to see a connection's traffic can
//!   implement [`Observer`]; the transcript is one of them.
//! - the **writer**: [`Transcript`] turns events into lines and a background thread writes
//!   them to the file, so a slow disk does not hold the session. The queue between them is
//!   bounded ([`QUEUE_LINES`]): memory stays bounded, and only a disk that falls that far
//!   behind makes the session wait. The thread flushes whenever the queue is empty, so the
//!   file is complete up to the last event within moments, even if the process is then
//!   killed; [`Transcript::finish`] writes what is queued and reports a write error.
//!
//! Nothing secret is written: header values that are marked sensitive or whose names look
//! secret ([`crate::secret::header_looks_secret`]) are replaced by the redaction marker, URLs
//! go through [`crate::client::redacted_url_text`], and every string written (frame text,
//! close reasons, response bodies, errors) has the known secrets (the `--auth` value and its
//! token, the API key, credential headers, and whatever the front-end adds with
//! [`Transcript::add_secret`]) replaced. The file is a log written as the session goes, not
//! a report: it is not written through [`crate::report_file`], so that it survives a crash.
//!
//! The schema is documented in `docs/transcript.md`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::http::HeaderMap;

use crate::client::{ClientConfig, redacted_url_text};
use crate::command::vars::Secrets;
use crate::secret::{REDACTED, header_looks_secret};
use crate::session::{ABNORMAL, Frame, Outgoing};

/// How many lines may wait for the disk before the session waits for it.
pub const QUEUE_LINES: usize = 1024;

/// The `ts` of a line until it is queued: as long as an RFC 3339 time with microseconds.
const TS_PLACEHOLDER: &str = "0000-00-00T00:00:00.000000Z";
/// Where the time is in a line: after `{"ts":"`.
const TS_AT: std::ops::Range<usize> = 7..7 + TS_PLACEHOLDER.len();

/// Something a connection did, as the client and the session report it to an
/// [`Observer`]. Values are the raw ones: an observer that writes them somewhere redacts.
#[derive(Debug)]
pub enum Event<'a> {
    /// The upgrade request, about to be sent (signed, if it is).
    Request {
        /// `GET`.
        method: &'a str,
        /// The request URL, with its query (a presigned URL carries its signature).
        url: &'a str,
        /// The request headers.
        headers: &'a HeaderMap,
    },
    /// The answer to the upgrade request: `101` and its headers, or a refusal with its body.
    Response {
        /// The HTTP status.
        status: u16,
        /// The response headers.
        headers: &'a HeaderMap,
        /// The body of a refusal (`{"message":"Forbidden"}`); `None` for a `101`.
        body: Option<&'a str>,
    },
    /// The connection could not be opened and no HTTP answer came (DNS, TCP, TLS, timeout).
    ConnectFailed {
        /// Why, as the error says it.
        error: &'a str,
    },
    /// A frame went out.
    Sent(&'a Outgoing),
    /// A frame arrived, or the connection ended without one ([`Frame::Dropped`]).
    Received(&'a Frame),
    /// The connection is about to be opened again (reconnect), after `delay`. Emitted by the
    /// code that reconnects, on the observer of the connection it replaces, before the new
    /// handshake's [`Event::Request`].
    Reconnect {
        /// 1 for the first attempt after the connection was lost, then 2, 3, …
        attempt: u32,
        /// The close code that ended the connection (1006 when it dropped), if one did.
        after_code: Option<u16>,
        /// The backoff waited before this attempt.
        delay: Duration,
    },
}

/// Sees what a connection does: the handshake, each frame, reconnects. Called on the task
/// that did it (the reader task for arrivals), so it must be quick and must not block for
/// long.
pub trait Observer: Send + Sync + fmt::Debug {
    /// One event.
    fn observe(&self, event: Event<'_>);
}

/// An optional observer, as the client and session carry it.
pub type SharedObserver = Arc<dyn Observer>;

/// How the front-end names a connection in the transcript.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionLabel {
    /// A script's connection name (`connect alice …`), if it has one.
    pub name: Option<String>,
    /// The script file it belongs to (`wsprobe run` with several files).
    pub script: Option<String>,
}

/// A transcript file being written. Cheap to clone; clones write to the same file.
#[derive(Clone, Debug)]
pub struct Transcript {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` once finished: later events are dropped.
    sender: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<JoinHandle<io::Result<()>>>>,
    /// Values replaced in every string written; always on (`--show-secrets` does not apply).
    secrets: Mutex<Secrets>,
    /// The number of the last connection handed out (they count from 1).
    connections: AtomicUsize,
}

impl Drop for Inner {
    /// The last clone gone without [`Transcript::finish`] (an early return): the queued
    /// lines are still written before the file is closed.
    fn drop(&mut self) {
        drop(lock(&self.sender).take());
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

/// Locks a mutex, taking over a poisoned one (a panicking observer leaves valid data).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Transcript {
    /// Creates (or truncates) the file at `path` and starts the thread that writes to it.
    /// The error names the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        let named = |error: io::Error| {
            io::Error::new(
                error.kind(),
                format!("cannot write the transcript {}: {error}", path.display()),
            )
        };
        let file = File::create(path).map_err(named)?;
        Self::to_writer(file).map_err(named)
    }

    /// A transcript written to `out` (a file, or a buffer in tests).
    pub fn to_writer(out: impl Write + Send + 'static) -> io::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let writer = std::thread::Builder::new()
            .name("wsprobe-transcript".into())
            .spawn(move || write_lines(receiver, out))?;
        Ok(Self {
            inner: Arc::new(Inner {
                sender: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                secrets: Mutex::new(Secrets::new(true)),
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// Adds a value that must never be written (a secret-looking variable's value, a
    /// captured token).
    pub fn add_secret(&self, value: &str) {
        lock(&self.inner.secrets).add(value);
    }

    /// The observer of a new connection, numbered in the order they are asked for (from 1).
    /// The credentials `config` sends (`--auth` and its token, the API key, credential
    /// headers) become secrets the transcript never writes.
    pub fn connection(&self, label: ConnectionLabel, config: &ClientConfig) -> Arc<ConnectionLog> {
        {
            let mut secrets = lock(&self.inner.secrets);
            if let Some(auth) = &config.auth {
                secrets.add_authorization(auth.expose());
            }
            if let Some(key) = &config.api_key {
                secrets.add(key.expose());
            }
            for header in &config.headers {
                secrets.add_header(&header.name, &header.value);
                if header_looks_secret(&header.name) {
                    secrets.add(&header.value);
                }
            }
        }
        let number = self.inner.connections.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::new(ConnectionLog {
            transcript: self.clone(),
            number,
            label,
            connection_id: Mutex::new(None),
        })
    }

    /// Writes what is queued, stops the writer and closes the file; later events are
    /// dropped. Returns the first write error, if writing failed. Safe to call twice.
    pub fn finish(&self) -> io::Result<()> {
        drop(lock(&self.inner.sender).take());
        let writer = lock(&self.inner.writer).take();
        match writer {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the transcript writer panicked"))),
            None => Ok(()),
        }
    }

    fn redact(&self, text: &str) -> String {
        lock(&self.inner.secrets).redact(text)
    }

    /// Stamps one line (which starts with [`TS_PLACEHOLDER`]) and queues it. The time is
    /// taken under the queue's lock, so the lines of the file are in time order whichever
    /// task wrote them. Waits only when [`QUEUE_LINES`] lines are already waiting.
    fn push(&self, mut line: String) {
        let sender = lock(&self.inner.sender);
        let Some(sender) = sender.as_ref() else {
            return;
        };
        let ts = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        if line.get(TS_AT).is_some() && ts.len() == TS_AT.len() {
            line.replace_range(TS_AT, &ts);
        }
        match sender.try_send(line) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            // The disk is that far behind: wait for it rather than lose the event.
            Err(TrySendError::Full(line)) => {
                let _ = sender.send(line);
            }
        }
    }
}

/// The writer thread: a line at a time into a buffer, flushed whenever the queue is empty.
fn write_lines(receiver: Receiver<String>, out: impl Write) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    while let Ok(line) = receiver.recv() {
        writeln!(out, "{line}")?;
        while let Ok(line) = receiver.try_recv() {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    out.flush()
}

/// The transcript's observer of one connection: stamps each event with the connection's
/// number, name and (once learnt) API Gateway connection id, redacts it, and queues it.
#[derive(Debug)]
pub struct ConnectionLog {
    transcript: Transcript,
    number: usize,
    label: ConnectionLabel,
    /// The `connectionId` a message told us (a `whoami` answer, an error frame); cleared
    /// by a reconnect.
    connection_id: Mutex<Option<String>>,
}

impl ConnectionLog {
    /// The connection's number in the transcript (`conn`).
    pub fn number(&self) -> usize {
        self.number
    }

    fn line(&self, kind: &str, dir: Option<&str>) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("ts".into(), TS_PLACEHOLDER.into());
        line.insert("kind".into(), kind.into());
        line.insert("conn".into(), self.number.into());
        if let Some(name) = &self.label.name {
            line.insert("name".into(), name.clone().into());
        }
        if let Some(script) = &self.label.script {
            line.insert("script".into(), script.clone().into());
        }
        if let Some(id) = lock(&self.connection_id).as_ref() {
            line.insert("connection_id".into(), id.clone().into());
        }
        if let Some(dir) = dir {
            line.insert("dir".into(), dir.into());
        }
        line
    }

    fn headers(&self, headers: &HeaderMap) -> Value {
        let mut shown = Map::new();
        for (name, value) in headers {
            let text = if value.is_sensitive() || header_looks_secret(name.as_str()) {
                REDACTED.to_owned()
            } else {
                self.transcript
                    .redact(&String::from_utf8_lossy(value.as_bytes()))
            };
            // Repeated headers are joined as HTTP allows (`a, b`).
            match shown.get_mut(name.as_str()) {
                Some(Value::String(before)) => {
                    before.push_str(", ");
                    before.push_str(&text);
                }
                _ => {
                    shown.insert(name.as_str().to_owned(), text.into());
                }
            }
        }
        Value::Object(shown)
    }

    fn payload(&self, line: &mut Map<String, Value>, bytes: &[u8]) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        line.insert("base64".into(), encoded.into());
    }

    fn frame(&self, line: &mut Map<String, Value>, kind: &str) {
        line.insert("type".into(), kind.into());
    }

    /// Learns the API Gateway connection id from a message that carries one at its top
    /// level (`{"connectionId": "…"}`: the bundled backend's `whoami`, API Gateway's
    /// error frames).
    fn learn_connection_id(&self, text: &str) {
        if !text.contains("\"connectionId\"") || lock(&self.connection_id).is_some() {
            return;
        }
        if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text)
            && let Some(Value::String(id)) = object.get("connectionId")
            && !id.is_empty()
        {
            *lock(&self.connection_id) = Some(id.clone());
        }
    }

    fn to_line(&self, event: &Event<'_>) -> Map<String, Value> {
        let redact = |text: &str| self.transcript.redact(text);
        match event {
            Event::Request {
                method,
                url,
                headers,
            } => {
                let mut line = self.line("request", Some("out"));
                line.insert("method".into(), (*method).into());
                line.insert("url".into(), redact(&redacted_url_text(url)).into());
                line.insert("headers".into(), self.headers(headers));
                line
            }
            Event::Response {
                status,
                headers,
                body,
            } => {
                let mut line = self.line("response", Some("in"));
                line.insert("status".into(), (*status).into());
                line.insert("headers".into(), self.headers(headers));
                if let Some(body) = body {
                    line.insert("body".into(), redact(body).into());
                }
                line
            }
            Event::ConnectFailed { error } => {
                let mut line = self.line("connect_error", None);
                line.insert("error".into(), redact(error).into());
                line
            }
            Event::Sent(frame) => {
                let mut line = self.line("frame", Some("out"));
                match frame {
                    Outgoing::Text(text) => {
                        self.frame(&mut line, "text");
                        line.insert("data".into(), redact(text).into());
                    }
                    Outgoing::Binary(bytes) => {
                        self.frame(&mut line, "binary");
                        self.payload(&mut line, bytes);
                    }
                    Outgoing::Ping(bytes) => {
                        self.frame(&mut line, "ping");
                        self.payload(&mut line, bytes);
                    }
                    Outgoing::Pong(bytes) => {
                        self.frame(&mut line, "pong");
                        self.payload(&mut line, bytes);
                    }
                    Outgoing::Close(close) => {
                        self.frame(&mut line, "close");
                        if let Some((code, reason)) = close {
                            line.insert("code".into(), (*code).into());
                            line.insert("reason".into(), redact(reason).into());
                        }
                    }
                }
                line
            }
            Event::Received(Frame::Dropped { reason }) => {
                let mut line = self.line("dropped", Some("in"));
                line.insert("code".into(), ABNORMAL.into());
                line.insert("reason".into(), redact(reason).into());
                line
            }
            Event::Received(frame) => {
                let mut line = self.line("frame", Some("in"));
                self.frame(&mut line, frame.kind());
                match frame {
                    Frame::Text(text) => {
                        line.insert("data".into(), redact(text).into());
                    }
                    Frame::Binary(bytes) | Frame::Ping(bytes) | Frame::Pong(bytes) => {
                        self.payload(&mut line, bytes);
                    }
                    Frame::Close { code, reason } => {
                        line.insert("code".into(), (*code).into());
                        line.insert("reason".into(), redact(reason).into());
                    }
                    Frame::Dropped { .. } => {}
                }
                line
            }
            Event::Reconnect {
                attempt,
                after_code,
                delay,
            } => {
                let mut line = self.line("reconnect", None);
                line.insert("attempt".into(), (*attempt).into());
                if let Some(code) = after_code {
                    line.insert("after_code".into(), (*code).into());
                }
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                line.insert("delay_ms".into(), delay_ms.into());
                line
            }
        }
    }
}

impl Observer for ConnectionLog {
    fn observe(&self, event: Event<'_>) {
        let line = self.to_line(&event);
        // After the line: the message that tells the id is written without it, the ones
        // after it with it.
        match event {
            Event::Received(Frame::Text(text)) => self.learn_connection_id(text),
            Event::Reconnect { .. } => *lock(&self.connection_id) = None,
            _ => {}
        }
        self.transcript.push(Value::Object(line).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::values::Header;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    /// A buffer the writer thread writes into and the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(out: &Shared) -> Vec<Value> {
        let bytes = lock(&out.0).clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn config() -> ClientConfig {
        ClientConfig {
            auth: Some(Secret::new("Bearer hunter2-token")),
            api_key: Some(Secret::new("key-0123456789")),
            headers: vec![Header {
                name: "X-Session".into(),
                value: "sess-secret-value".into(),
            }],
            ..ClientConfig::default()
        }
    }

    #[test]
    fn every_kind_of_event_becomes_one_line_with_the_documented_keys() {
        let out = Shared::default();
        let transcript = Transcript::to_writer(out.clone()).unwrap();
        let log = transcript.connection(
            ConnectionLabel {
                name: Some("alice".into()),
                script: None,
            },
            &config(),
        );
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_static("Bearer hunter2-token");
        auth.set_sensitive(true);
        headers.insert("authorization", auth);
        headers.insert("x-api-key", HeaderValue::from_static("key-0123456789"));
        headers.insert("host", HeaderValue::from_static("127.0.0.1"));
        log.observe(Event::Request {
            method: "GET",
            url: "ws://127.0.0.1/dev?token=abc&X-Amz-Signature=f00d&page=2",
            headers: &headers,
        });
        log.observe(Event::Response {
            status: 101,
            headers: &HeaderMap::new(),
            body: None,
        });
        log.observe(Event::Sent(&Outgoing::Text(
            "my token is hunter2-token".into(),
        )));
        log.observe(Event::Received(&Frame::Text(
            r#"{"connectionId":"abc="}"#.into(),
        )));
        log.observe(Event::Received(&Frame::Binary(b"Hello".to_vec())));
        log.observe(Event::Sent(&Outgoing::Close(Some((1000, "bye".into())))));
        log.observe(Event::Received(&Frame::Close {
            code: 1000,
            reason: "bye".into(),
        }));
        log.observe(Event::Reconnect {
            attempt: 1,
            after_code: Some(1001),
            delay: Duration::from_millis(250),
        });
        log.observe(Event::Received(&Frame::Dropped {
            reason: "reset".into(),
        }));
        log.observe(Event::ConnectFailed { error: "refused" });
        transcript.finish().unwrap();
        // Finished: later events are dropped, and finishing again is fine.
        log.observe(Event::ConnectFailed { error: "late" });
        transcript.finish().unwrap();

        let raw = String::from_utf8(lock(&out.0).clone()).unwrap();
        for secret in ["hunter2", "key-0123456789", "token=abc", "f00d"] {
            assert!(!raw.contains(secret), "{secret} in {raw}");
        }
        let lines = lines_of(&out);
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "request",
                "response",
                "frame",
                "frame",
                "frame",
                "frame",
                "frame",
                "reconnect",
                "dropped",
                "connect_error"
            ]
        );
        let times: Vec<&str> = lines.iter().map(|l| l["ts"].as_str().unwrap()).collect();
        assert!(times.is_sorted(), "{times:?}");
        for line in &lines {
            let ts = line["ts"].as_str().unwrap();
            humantime::parse_rfc3339(ts).unwrap();
            // Microseconds: `2026-11-28T06:30:01.123456Z`.
            assert_eq!(ts.len(), 27, "{ts}");
            assert_eq!(line["conn"], 1);
            assert_eq!(line["name"], "alice");
        }
        assert_eq!(lines[0]["dir"], "out");
        assert_eq!(lines[0]["headers"]["authorization"], REDACTED);
        assert_eq!(lines[0]["headers"]["x-api-key"], REDACTED);
        assert_eq!(lines[0]["headers"]["host"], "127.0.0.1");
        assert_eq!(
            lines[0]["url"],
            "ws://127.0.0.1/dev?token=<redacted>&X-Amz-Signature=<redacted>&page=2"
        );
        assert_eq!(lines[1]["status"], 101);
        assert_eq!(lines[2]["data"], "my token is <redacted>");
        assert_eq!(lines[2]["type"], "text");
        // The message that tells the id does not carry it; the ones after it do.
        assert!(lines[3].get("connection_id").is_none());
        assert_eq!(lines[4]["connection_id"], "abc=");
        assert_eq!(lines[4]["type"], "binary");
        assert_eq!(lines[4]["base64"], "SGVsbG8=");
        assert_eq!(lines[5]["code"], 1000);
        assert_eq!(lines[6]["dir"], "in");
        assert_eq!(lines[7]["after_code"], 1001);
        assert_eq!(lines[7]["delay_ms"], 250);
        // A reconnect forgets the id: the new connection has another.
        assert!(lines[8].get("connection_id").is_none());
        assert_eq!(lines[8]["code"], 1006);
        assert!(lines[9].get("dir").is_none());
    }

    #[test]
    fn connections_are_numbered_in_order() {
        let transcript = Transcript::to_writer(io::sink()).unwrap();
        let first = transcript.connection(ConnectionLabel::default(), &ClientConfig::default());
        let second = transcript.connection(ConnectionLabel::default(), &ClientConfig::default());
        assert_eq!((first.number(), second.number()), (1, 2));
        transcript.finish().unwrap();
    }

    #[test]
    fn a_write_error_is_reported_by_finish() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("disk full"))
            }
        }
        let transcript = Transcript::to_writer(Broken).unwrap();
        let log = transcript.connection(ConnectionLabel::default(), &ClientConfig::default());
        log.observe(Event::Sent(&Outgoing::Text("x".into())));
        assert!(transcript.finish().is_err());
    }
}
