//! The command engine: runs one parsed statement on a set of named sessions and returns
//! what happened as plain data. `wsprobe run` (scripts) and `wsprobe connect` (the prompt,
//! `-x`, piped lines) both execute every statement through [`Engine::execute`], so a line
//! does the same thing in both: the same matching, the same inbox (frames that do not match
//! stay there; only `expect` and `capture` consume), the same echo verdict
//! ([`crate::message::echo_matches`]), the same waits.
//!
//! What stays in the front-ends: opening connections (`connect` and its options belong to
//! scripts; the prompt has the one connection it was started with), test blocks and
//! reports (`run`), line editing and the display of arriving frames (`connect`).
//!
//! Sessions that last: a session handed over with [`Engine::open_with`] gets its keepalive
//! ([`crate::session::KeepAlive`]), runs its `--on-connect` lines ([`OnConnect`]) through
//! [`Engine::execute`] right away, and — with a [`ReconnectPolicy`] — is reopened when the
//! server ends it: [`Engine::reconnect`] re-runs the whole handshake with the policy's
//! backoff ([`crate::reconnect::redial`]), then the `--on-connect` lines again. A statement
//! on a session that ended and may be reconnected reconnects it first, so a script's later
//! lines find it open. An `expect` or `capture` waiting when the connection ends
//! reconnects within its own deadline and goes on waiting on the new connection (what was
//! left unconsumed on the old one is gone with it); if the deadline comes first it fails
//! as it would without reconnect, and the next statement reconnects. A `sleep` reconnects
//! each connection that ends while it sleeps, at once. Each attempt, each reopened session (with its new watch) and each
//! `--on-connect` line that ran is told to the front-end as a [`SessionEvent`].
//!
//! [`Engine::execute`] is cancel-safe: every wait is on the session's inbox, whose reads
//! keep what arrived, so dropping the future (Ctrl-C at the prompt, a `select!` branch that
//! won) loses no frame and consumes none.

// A statement's `Result<Done, Fault>` is built once per statement, next to a network
// round trip: the size of the error variant costs nothing measurable.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use super::ast::{
    Capture, Command, EchoPolicy, Expect, Expectation, KeepAliveCommand, Matcher, Payload, Span,
    Spanned, Statement,
};
use super::matcher::FrameView;
use super::template::{ResolveError, Template};
use super::vars::Vars;
use crate::client::ClientConfig;
use crate::client::management::{self, Method, Response};
use crate::message::{self, RouteFields};
use crate::reconnect::{self, Backoff, ReconnectEvent, ReconnectPolicy};
use crate::session::{
    CLOSE_WAIT, Ending, Frame, InboxLimits, Incoming, KeepAlive, KeepAliveStats, Outgoing, Session,
    WaitError, Watch,
};

/// Which session a statement acts on: the front-end's own key (a script's connect index,
/// the prompt's one connection).
pub type SessionKey = usize;

/// What the engine needs to know besides the statements.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The wait of an `expect`/`capture` without `within`, and the longest a send may
    /// block on a server that stopped reading.
    pub timeout: Duration,
    /// Route and body fields of route-tagged sends.
    pub fields: RouteFields,
    /// The echo policy at the start; `echo body|full|off` changes it.
    pub echo: EchoPolicy,
    /// The `@connections` base URL, if given (else derived from the connection's URL).
    pub management_url: Option<Url>,
    /// The stage a call goes to when its connection has no URL (no `connect` above it):
    /// `--url`.
    pub stage_url: Option<Url>,
    /// The client settings (TLS, proxies, timeout, signer) of `@connections` calls.
    pub client: ClientConfig,
}

/// One open (or ended) session and what the engine remembers about it.
struct Conn {
    session: Session,
    /// The last route-tagged message sent on it, for `expect echo`.
    last_sent: Option<Value>,
    /// The keepalive in force (`--keepalive`, `keepalive DUR`): kept across reconnects.
    keepalive: Option<KeepAlive>,
    /// Keepalive counts of the connections this one replaced.
    keepalive_before: KeepAliveStats,
    /// Whether we started the closing handshake (`close`): never reconnected then.
    we_closed: bool,
    /// How to reopen it, if it was opened with [`Engine::open_with`].
    life: Option<Life>,
}

/// How a session is reopened and what runs after every open.
struct Life {
    lifeline: Lifeline,
    backoff: Backoff,
}

/// How the engine keeps a session going (see the module doc): what it needs to reopen it,
/// and what to do after every open.
#[derive(Clone, Debug)]
pub struct Lifeline {
    /// The URL it was opened on.
    pub url: Url,
    /// The connection settings it was opened with (headers, credentials, signer): a
    /// reconnect re-runs the handshake with them, signing it anew.
    pub client: ClientConfig,
    /// The bounds of each new session's inbox.
    pub inbox: InboxLimits,
    /// When to reopen it; `None`: never.
    pub reconnect: Option<ReconnectPolicy>,
    /// Lines run after every open, the first included.
    pub on_connect: Vec<OnConnect>,
    /// Whether each new session comes with a [`Watch`] (handed over in
    /// [`SessionEvent::Reopened`]), for a display.
    pub watched: bool,
}

/// An `--on-connect` line: a command line as typed at the prompt (`/send subscribe {…}`),
/// or text to send as typed.
#[derive(Clone, Debug)]
pub struct OnConnect {
    /// The line as given.
    pub line: String,
    /// What it runs.
    pub statement: Statement,
}

impl OnConnect {
    /// Parses a line as the prompt does. Lines that do nothing on a connection (`/help`,
    /// `/quit`, `/pretty`, `/connect`, `@name`) and empty lines are refused.
    pub fn parse(line: &str) -> Result<OnConnect, String> {
        use super::ast::ReplInput;
        let statement = match super::parse_repl_line(line) {
            Err(error) => return Err(error.render_line(line, false).trim_end().to_owned()),
            Ok(ReplInput::Empty) => return Err("an --on-connect line is empty".into()),
            Ok(ReplInput::Text(text)) => Statement::text_as_typed(text),
            Ok(ReplInput::Command(statement)) => statement,
        };
        if statement.target.is_some() {
            return Err(format!(
                "`{line}`: an --on-connect line acts on its own connection; drop the `@name`"
            ));
        }
        if matches!(
            statement.command,
            Command::Connect(_) | Command::Pretty(_) | Command::Help(_) | Command::Quit
        ) {
            return Err(format!(
                "`{line}`: `/{}` does nothing on a connection; an --on-connect line sends, \
                 expects or waits",
                statement.command.keyword()
            ));
        }
        Ok(OnConnect {
            line: line.to_owned(),
            statement,
        })
    }
}

/// What happened to a session besides the statements: for a front-end to show.
#[derive(Debug)]
pub enum SessionEvent {
    /// A step of reopening the session `key`.
    Reconnect {
        /// The session.
        key: SessionKey,
        /// The step.
        event: ReconnectEvent,
    },
    /// The session `key` was reopened; `watch` is the new connection's watch, if the
    /// lifeline asked for one.
    Reopened {
        /// The session.
        key: SessionKey,
        /// A copy of every frame of the new connection.
        watch: Option<Watch>,
    },
    /// An `--on-connect` line ran on the session `key` (the failing one is the outcome of
    /// the open or reconnect instead).
    OnConnect {
        /// The session.
        key: SessionKey,
        /// The line as given.
        line: String,
        /// What it did.
        done: Done,
    },
}

/// The state statements run against: sessions, variables, the echo policy and the answer
/// of the last `@connections` call.
pub struct Engine {
    options: EngineOptions,
    sessions: HashMap<SessionKey, Conn>,
    /// The URL each session was opened on (kept after it ends), for `post`/`get`/`delete`.
    urls: HashMap<SessionKey, Url>,
    /// `${NAME}`: captures, then `--var`, then the environment.
    pub vars: Vars,
    echo: EchoPolicy,
    last_response: Option<Response>,
    /// Where [`SessionEvent`]s go, if a front-end listens.
    events: Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>,
}

/// What a statement did, when it did what it says.
#[derive(Clone, Debug)]
pub enum Done {
    /// A frame went out. `echo` is the echo the route-tagged send expects under the
    /// current policy, if any; `at` is taken just before sending (an echo read before
    /// the send returned still counts).
    Sent {
        /// The frame.
        frame: Outgoing,
        /// When it was handed to the socket.
        at: Instant,
        /// The echo it should produce.
        echo: Option<Value>,
    },
    /// `expect MATCHER` (or `expect next`) consumed `frame`.
    Matched {
        /// `expect json $.a == 1`: the command with its variables filled in.
        what: String,
        /// The frame it matched.
        frame: Incoming,
        /// When the wait started (a frame older than this was already in the inbox).
        started: Instant,
    },
    /// `capture NAME = …` took `value` from `frame`.
    Captured {
        /// The variable set.
        name: String,
        /// Its value.
        value: String,
        /// The frame it came from (consumed).
        frame: Incoming,
        /// When the wait started.
        started: Instant,
    },
    /// `expect nothing`: no message for `within`.
    Silence {
        /// How long it listened.
        within: Duration,
    },
    /// `expect status|response …` held for the last answer.
    Checked {
        /// `expect status 200`.
        what: String,
    },
    /// A `post`/`get`/`delete` was answered.
    Answered {
        /// The answer.
        response: Response,
    },
    /// `sleep`/`wait` is over.
    Slept,
    /// `echo body|full|off` set the policy.
    Echo(EchoPolicy),
    /// `keepalive …`: the keepalive now in force and the counts so far (across reconnects).
    KeepAlive {
        /// The keepalive in force, if any.
        keepalive: Option<KeepAlive>,
        /// Keepalives sent and answers received on the session.
        stats: KeepAliveStats,
    },
    /// The session was reopened (and its `--on-connect` lines ran).
    Reconnected,
    /// The `--on-connect` lines of a session that opened ran.
    Opened,
    /// A command the engine does not run (`connect`, `help`, `pretty`, `quit`): the
    /// front-end's business.
    NotMine,
}

/// Why a statement failed.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A variable could not be filled in (nothing was done).
    Resolve(ResolveError),
    /// The statement ran and failed.
    Failed(Failed),
}

/// Whether a failure is an expectation that did not hold or a command that could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedKind {
    /// `expect`/`capture` did not hold (or `expect status|response`).
    Expectation,
    /// The command could not run: a send on a closed connection, a call without answer.
    Error,
    /// The connection could not be reopened (refused, or every attempt failed).
    Connect,
}

/// A statement that failed, with what the front-ends show about it.
#[derive(Clone, Debug)]
pub struct Failed {
    /// Expectation or error.
    pub kind: FailedKind,
    /// The headline as a script reports it: `expectation failed: json $.a == 1`.
    pub message: String,
    /// The command as the prompt names it: `expect json $.a == 1`, `send`.
    pub command: String,
    /// The part of the line at fault.
    pub span: Span,
    /// Why, in a few words: `nothing matched within 2s`.
    pub label: Option<String>,
    /// What was expected, with variables filled in.
    pub expected: Option<String>,
    /// The unconsumed messages on the connection, oldest first (described), when the
    /// failure is about waiting for one.
    pub received: Option<Vec<String>>,
    /// The last `@connections` answer, in one line, when it is what was checked.
    pub response: Option<String>,
    /// A suggestion.
    pub hint: Option<String>,
    /// A send did not complete within its limit (the server is not reading): the
    /// connection cannot take more, and a front-end feeding it lines should stop.
    pub stalled: bool,
    /// Why a reconnect failed, for [`FailedKind::Connect`] (the exit code and hints).
    pub connect_error: Option<std::sync::Arc<crate::client::ConnectError>>,
}

impl Failed {
    fn new(kind: FailedKind, message: impl Into<String>, command: &str, span: Span) -> Self {
        Self {
            kind,
            message: message.into(),
            command: command.to_owned(),
            span,
            label: None,
            expected: None,
            received: None,
            response: None,
            hint: None,
            stalled: false,
            connect_error: None,
        }
    }

    fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn received(mut self, seen: &[Incoming]) -> Self {
        self.received = Some(seen.iter().map(|m| describe(&m.frame)).collect());
        self
    }

    /// Says that the full inbox dropped `dropped` unconsumed frames: what was waited for
    /// may have been among them.
    fn dropped(mut self, dropped: u64) -> Self {
        if dropped > 0 {
            let plural = if dropped == 1 { "" } else { "s" };
            let label = self.label.take().unwrap_or_default();
            self.label = Some(format!(
                "{label}; {dropped} older unconsumed frame{plural} dropped (the inbox was full)"
            ));
            self.hint = Some(
                "the inbox keeps the newest frames up to --inbox-frames and --inbox-bytes; \
                 raise them, or expect the message sooner"
                    .into(),
            );
        }
        self
    }
}

impl From<Failed> for Fault {
    fn from(failed: Failed) -> Self {
        Fault::Failed(failed)
    }
}

impl From<ResolveError> for Fault {
    fn from(error: ResolveError) -> Self {
        Fault::Resolve(error)
    }
}

impl Engine {
    /// An engine with no session yet.
    pub fn new(options: EngineOptions, vars: Vars) -> Self {
        let echo = options.echo;
        Self {
            options,
            sessions: HashMap::new(),
            urls: HashMap::new(),
            vars,
            echo,
            last_response: None,
            events: None,
        }
    }

    /// Sends [`SessionEvent`]s to `events` from now on.
    pub fn set_events(&mut self, events: tokio::sync::mpsc::UnboundedSender<SessionEvent>) {
        self.events = Some(events);
    }

    /// Hands a freshly opened session to the engine under `key`.
    pub fn open(&mut self, key: SessionKey, session: Session) {
        self.sessions.insert(
            key,
            Conn {
                session,
                last_sent: None,
                keepalive: None,
                keepalive_before: KeepAliveStats::default(),
                we_closed: false,
                life: None,
            },
        );
    }

    /// Hands a freshly opened session to the engine under `key`, to be kept going: starts
    /// `keepalive`, runs the `--on-connect` lines (stopping at the first that fails, which
    /// is the error), and remembers how to reopen it.
    pub async fn open_with(
        &mut self,
        key: SessionKey,
        session: Session,
        keepalive: Option<KeepAlive>,
        lifeline: Lifeline,
    ) -> Result<Done, Fault> {
        self.open(key, session);
        self.keep_going(key, keepalive, lifeline);
        self.run_on_connect(key).await
    }

    /// Keeps the open session `key` going: starts `keepalive` on it and remembers how to
    /// reopen it (see [`Engine::open_with`], which also runs the `--on-connect` lines).
    pub fn keep_going(
        &mut self,
        key: SessionKey,
        keepalive: Option<KeepAlive>,
        lifeline: Lifeline,
    ) {
        if let Some(conn) = self.sessions.get_mut(&key) {
            conn.session.keep_alive(keepalive.clone());
            conn.keepalive = keepalive;
            conn.life = Some(Life {
                lifeline,
                backoff: Backoff::new(),
            });
        }
    }

    /// Whether the session `key` is there and its connection has ended.
    pub fn is_ended(&self, key: SessionKey) -> bool {
        self.sessions
            .get(&key)
            .is_some_and(|conn| conn.session.is_closed())
    }

    /// Whether the session `key` ended (not by our `close`) in a way its reconnect
    /// policy reopens.
    pub fn wants_reconnect(&self, key: SessionKey) -> bool {
        let Some(conn) = self.sessions.get(&key) else {
            return false;
        };
        let policy = conn.life.as_ref().and_then(|life| life.lifeline.reconnect);
        match (policy, conn.session.ending()) {
            (Some(policy), Some(ending)) => !conn.we_closed && policy.applies_to(ending),
            _ => false,
        }
    }

    /// Reopens the session `key` if it wants it ([`Engine::wants_reconnect`]): redials
    /// with backoff (each step a [`SessionEvent::Reconnect`]), then hands the new
    /// connection over ([`SessionEvent::Reopened`]) and runs the `--on-connect` lines.
    /// `Done::NotMine` when there was nothing to do. Cancel-safe in that a cancelled
    /// reconnect leaves the ended session in place.
    pub async fn reconnect(&mut self, key: SessionKey) -> Result<Done, Fault> {
        if !self.wants_reconnect(key) {
            return Ok(Done::NotMine);
        }
        let events = self.events.clone();
        let Some(conn) = self.sessions.get_mut(&key) else {
            return Ok(Done::NotMine);
        };
        let (Some(life), Some(cause)) = (conn.life.as_mut(), conn.session.ending().cloned()) else {
            return Ok(Done::NotMine);
        };
        let policy = life.lifeline.reconnect.unwrap_or_default();
        let mut report = |event| {
            if let Some(events) = &events {
                let _ = events.send(SessionEvent::Reconnect { key, event });
            }
        };
        let observer = conn.session.observer().cloned();
        let redialed = reconnect::redial(
            &life.lifeline.url,
            &life.lifeline.client,
            &policy,
            &mut life.backoff,
            &cause,
            observer.as_ref(),
            &mut report,
        )
        .await;
        let connection = match redialed {
            Ok(connection) => connection,
            Err(error) => {
                let mut failed = Failed::new(
                    FailedKind::Connect,
                    format!("could not reconnect: {error}"),
                    "reconnect",
                    Span::default(),
                )
                .label(format!("the connection {cause}"));
                failed.hint = error.connect_error().hint();
                failed.connect_error = Some(std::sync::Arc::new(error.into_connect_error()));
                return Err(failed.into());
            }
        };
        let (mut session, watch) = if life.lifeline.watched {
            let (session, watch) = Session::start_watched(connection, life.lifeline.inbox);
            (session, Some(watch))
        } else {
            (
                Session::start_bounded(connection, life.lifeline.inbox),
                None,
            )
        };
        session.keep_alive(conn.keepalive.clone());
        let old = conn.session.keepalive_stats();
        conn.keepalive_before.sent += old.sent;
        conn.keepalive_before.answered += old.answered;
        conn.session = session;
        conn.last_sent = None;
        if let Some(events) = &events {
            let _ = events.send(SessionEvent::Reopened { key, watch });
        }
        self.run_on_connect(key).await?;
        Ok(Done::Reconnected)
    }

    /// Runs the `--on-connect` lines of `key`, in order (each one that ran is a
    /// [`SessionEvent::OnConnect`]); the first failure stops them and is returned, naming
    /// the line. `Done::Opened` when they all ran.
    pub async fn run_on_connect(&mut self, key: SessionKey) -> Result<Done, Fault> {
        let lines = match self.sessions.get(&key).and_then(|conn| conn.life.as_ref()) {
            Some(life) => life.lifeline.on_connect.clone(),
            None => return Ok(Done::Opened),
        };
        for OnConnect { line, statement } in lines {
            // Boxed: a line's wait may reconnect, which runs these lines again.
            match Box::pin(self.execute_here(&statement, Some(key))).await {
                Ok(done) => {
                    if let Some(events) = &self.events {
                        let _ = events.send(SessionEvent::OnConnect { key, line, done });
                    }
                }
                Err(Fault::Failed(mut failed)) => {
                    failed.message = format!("--on-connect `{line}` failed: {}", failed.message);
                    failed.command = format!("--on-connect `{line}`: {}", failed.command);
                    return Err(Fault::Failed(failed));
                }
                Err(Fault::Resolve(error)) => {
                    let failed = Failed::new(
                        FailedKind::Error,
                        format!("--on-connect `{line}` failed: {error}"),
                        &format!("--on-connect `{line}`"),
                        error.span(),
                    );
                    return Err(Fault::Failed(failed));
                }
            }
        }
        Ok(Done::Opened)
    }

    /// Records the URL the session `key` is (or was to be) opened on: `post`, `get` and
    /// `delete` derive the `@connections` URL from it.
    pub fn set_url(&mut self, key: SessionKey, url: Url) {
        self.urls.insert(key, url);
    }

    /// Whether the session `key` is open (handed over and not closed by the front-end).
    pub fn is_open(&self, key: SessionKey) -> bool {
        self.sessions.contains_key(&key)
    }

    /// Closes the session `key` politely (code 1000), waiting at most [`CLOSE_WAIT`].
    pub async fn close(&mut self, key: SessionKey, code: u16) -> Option<Ending> {
        let conn = self.sessions.remove(&key)?;
        conn.session.close(code, "", CLOSE_WAIT).await
    }

    /// Closes every session politely with `code`.
    pub async fn close_all(&mut self, code: u16) {
        for (_, conn) in self.sessions.drain() {
            let _ = conn.session.close(code, "", CLOSE_WAIT).await;
        }
    }

    /// The `@connections` URL of `connection_id` for a statement on `target`: the given
    /// base, else derived from the target's URL. `None` when there is neither.
    pub fn connection_url(&self, target: Option<SessionKey>, connection_id: &str) -> Option<Url> {
        let base = match &self.options.management_url {
            Some(base) => base.clone(),
            None => {
                let stage = target.and_then(|target| self.urls.get(&target));
                message::management_url(stage.or(self.options.stage_url.as_ref())?)
            }
        };
        management::connection_url(&base, connection_id)
    }

    /// Runs `statement` on the session `target` (the prompt's one connection, a script's
    /// resolved `@name`). A session that ended and may be reconnected is reopened first.
    /// Cancel-safe (see the module doc).
    pub async fn execute(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
    ) -> Result<Done, Fault> {
        // An `expect` or `capture` reconnects only if what it waits for is not there: so
        // `expect closed 1001` still sees the close that ended the connection.
        let waits = matches!(statement.command, Command::Expect(_) | Command::Capture(_));
        if statement.command.uses_connection()
            && !waits
            && let Some(key) = target
            && self.wants_reconnect(key)
        {
            // What failed (the reconnect, an --on-connect line) is not on this line, but
            // this line is what it stopped.
            self.reconnect(key).await.map_err(|fault| match fault {
                Fault::Failed(mut failed) => {
                    failed.span = statement.keyword;
                    Fault::Failed(failed)
                }
                other => other,
            })?;
        }
        self.execute_here(statement, target).await
    }

    /// Runs `statement` on `target` as it is (no reconnect).
    async fn execute_here(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
    ) -> Result<Done, Fault> {
        let keyword = statement.keyword;
        match &statement.command {
            Command::Send { route, payload } => {
                let route = route.resolve(&self.vars)?;
                let body = match payload {
                    Some(payload) => Some(payload.resolve(&self.vars)?.to_string()),
                    None => None,
                };
                let message = message::route_tagged(&route, body.as_deref(), &self.options.fields);
                let echo = message::expected_echo(&message, self.echo, &self.options.fields);
                let frame = Outgoing::Text(message.to_string());
                let done = self.send(statement, target, frame, echo).await?;
                // Only once it went out (a cancelled send expects no echo).
                self.conn(statement, target)?.last_sent = Some(message);
                Ok(done)
            }
            Command::Text(text) => {
                let frame = Outgoing::Text(text.resolve(&self.vars)?);
                self.send(statement, target, frame, None).await
            }
            Command::Binary(data) => {
                self.send(statement, target, Outgoing::Binary(data.clone()), None)
                    .await
            }
            Command::Ping(data) | Command::Pong(data) => {
                let data = match data {
                    Some(data) => data.resolve(&self.vars)?.into_bytes(),
                    None => Vec::new(),
                };
                let frame = if matches!(statement.command, Command::Ping(_)) {
                    Outgoing::Ping(data)
                } else {
                    Outgoing::Pong(data)
                };
                self.send(statement, target, frame, None).await
            }
            Command::Close { code, reason } => {
                let code = code.as_ref().map_or(1000, |code| code.value);
                let reason = match reason {
                    Some(reason) => reason.resolve(&self.vars)?,
                    None => String::new(),
                };
                let frame = Outgoing::Close(Some((code, reason)));
                // Set first: the server's answer can arrive before the send returns.
                if let Ok(conn) = self.conn(statement, target) {
                    conn.we_closed = true;
                }
                self.send(statement, target, frame, None).await
            }
            Command::Expect(expect) => self.expect(statement, target, expect).await,
            Command::Capture(capture) => self.capture(statement, target, capture).await,
            Command::Sleep(duration) => {
                // A connection to be reconnected is reconnected as soon as it ends, not
                // after the sleep: its --on-connect lines and keepalive go on meanwhile.
                // A reconnect still under way at the end of the sleep is left to the next
                // statement: the sleep does not last longer than it says.
                let deadline = Instant::now() + duration.value;
                while let Some(key) = self.until_one_ends(deadline).await {
                    if self.wants_reconnect(key)
                        && !self
                            .reconnect_before(statement, Some(key), deadline)
                            .await?
                    {
                        break;
                    }
                }
                Ok(Done::Slept)
            }
            Command::Post {
                connection_id,
                payload,
            } => {
                // As in a send, but text is posted as written, JSON as JSON.
                let body = match payload {
                    Some(Payload::Text(text)) => text.resolve(&self.vars)?,
                    Some(Payload::Json(json)) => json.resolve(&self.vars)?.to_string(),
                    None => String::new(),
                };
                self.manage(keyword, target, Method::Post, connection_id, Some(body))
                    .await
            }
            Command::Get { connection_id } => {
                self.manage(keyword, target, Method::Get, connection_id, None)
                    .await
            }
            Command::Delete { connection_id } => {
                self.manage(keyword, target, Method::Delete, connection_id, None)
                    .await
            }
            Command::Echo(policy) => {
                self.echo = policy.value;
                Ok(Done::Echo(policy.value))
            }
            Command::KeepAlive(setting) => {
                let keepalive = match setting {
                    KeepAliveCommand::Show => None,
                    KeepAliveCommand::Off => Some(None),
                    KeepAliveCommand::Every { every, text } => {
                        let message = match text {
                            Some(text) => Some(text.resolve(&self.vars)?),
                            None => None,
                        };
                        Some(Some(KeepAlive {
                            every: every.value,
                            message,
                        }))
                    }
                };
                let conn = self.conn(statement, target)?;
                if let Some(keepalive) = keepalive {
                    conn.session.keep_alive(keepalive.clone());
                    conn.keepalive = keepalive;
                }
                let now = conn.session.keepalive_stats();
                Ok(Done::KeepAlive {
                    keepalive: conn.keepalive.clone(),
                    stats: KeepAliveStats {
                        sent: conn.keepalive_before.sent + now.sent,
                        answered: conn.keepalive_before.answered + now.answered,
                    },
                })
            }
            Command::Connect(_) | Command::Pretty(_) | Command::Help(_) | Command::Quit => {
                Ok(Done::NotMine)
            }
        }
    }

    /// The open session a statement acts on.
    fn conn(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
    ) -> Result<&mut Conn, Failed> {
        let command = statement.command.keyword();
        let span = statement
            .target
            .as_ref()
            .map_or(statement.keyword, |t| t.span);
        match target.and_then(|target| self.sessions.get_mut(&target)) {
            Some(conn) => Ok(conn),
            None => Err(Failed::new(
                FailedKind::Error,
                "no open connection to act on",
                command,
                span,
            )),
        }
    }

    async fn send(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
        frame: Outgoing,
        echo: Option<Value>,
    ) -> Result<Done, Fault> {
        let limit = self.options.timeout;
        let command = statement.command.keyword();
        let conn = self.conn(statement, target)?;
        let at = Instant::now();
        // A server that stopped reading would block the write forever once the socket's
        // buffers fill; like every wait, a send gives up after the default timeout.
        let Ok(sent) = tokio::time::timeout(limit, conn.session.send(frame.clone())).await else {
            let mut failed = Failed::new(
                FailedKind::Error,
                format!(
                    "could not {command} within {}: the server is not reading",
                    humantime::format_duration(limit)
                ),
                command,
                statement.keyword,
            )
            .hint("raise the timeout if the server is just slow");
            failed.stalled = true;
            return Err(failed.into());
        };
        match sent {
            Ok(()) => Ok(Done::Sent { frame, at, echo }),
            Err(error) => {
                let failed = Failed::new(
                    FailedKind::Error,
                    format!("could not {command}: {error}"),
                    command,
                    statement.keyword,
                );
                Err(match conn.session.ending() {
                    Some(ending) => failed.hint(format!("the connection {ending}")),
                    None => failed,
                }
                .into())
            }
        }
    }

    async fn expect(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
        expect: &Expect,
    ) -> Result<Done, Fault> {
        let within = expect.timeout(self.options.timeout);
        match &expect.expectation {
            Expectation::Message(matcher) => {
                self.expect_message(statement, target, expect.next, matcher, within)
                    .await
            }
            Expectation::Nothing => {
                let conn = self.conn(statement, target)?;
                match conn.session.expect_silence(within).await {
                    Ok(()) => Ok(Done::Silence { within }),
                    Err(arrived) => {
                        let mut seen = conn.session.received_so_far();
                        seen.retain(|m| m.frame.is_data());
                        Err(Failed::new(
                            FailedKind::Expectation,
                            "expectation failed: nothing",
                            "expect nothing",
                            statement.keyword,
                        )
                        .label(format!("a message arrived: {}", describe(&arrived.frame)))
                        .received(&seen)
                        .into())
                    }
                }
            }
            Expectation::Status(status) => {
                let what = format!("expect status {}", status.value);
                let Some(response) = &self.last_response else {
                    return Err(no_response(statement, &what).into());
                };
                if response.status == status.value {
                    Ok(Done::Checked { what })
                } else {
                    let mut failed = Failed::new(
                        FailedKind::Expectation,
                        format!("expectation failed: status {}", status.value),
                        &what,
                        status.span,
                    )
                    .label(format!("the status is {}", response.status));
                    failed.response = Some(response_text(response));
                    Err(failed.into())
                }
            }
            Expectation::Response(matcher) => {
                let resolved = matcher.resolve(&self.vars, None)?;
                let what = format!("expect response {}", resolved.describe());
                let Some(response) = &self.last_response else {
                    return Err(no_response(statement, &what).into());
                };
                match resolved.check(&FrameView::Text(&response.body)) {
                    Ok(()) => Ok(Done::Checked { what }),
                    Err(why) => {
                        let mut failed = Failed::new(
                            FailedKind::Expectation,
                            format!("expectation failed: response {}", resolved.describe()),
                            &what,
                            matcher.span,
                        )
                        .label(why);
                        failed.response = Some(response_text(response));
                        Err(failed.into())
                    }
                }
            }
        }
    }

    async fn expect_message(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
        next: bool,
        matcher: &Spanned<Matcher>,
        within: Duration,
    ) -> Result<Done, Fault> {
        let echo_policy = self.echo;
        let fields = self.options.fields.clone();
        let expected_echo = self
            .conn(statement, target)?
            .last_sent
            .as_ref()
            .and_then(|sent| message::expected_echo(sent, echo_policy, &fields));
        // `expect echo` is the language's own matcher too: it decides with the one echo
        // verdict, `message::echo_matches`.
        let resolved = matcher.resolve(&self.vars, expected_echo.as_ref())?;
        let description = resolved.describe().to_owned();
        let what = format!("expect {description}");
        let started = Instant::now();
        let deadline = started + within;
        let outcome = loop {
            let conn = self.conn(statement, target)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = if next {
                match conn.session.next(left).await {
                    Ok(incoming) => match resolved.check(&(&incoming.frame).into()) {
                        Ok(()) => Ok(incoming),
                        Err(why) => Err((why, vec![incoming], 0)),
                    },
                    Err(error) => Err((
                        wait_label(&whole_wait(&error, within), true),
                        error.seen().to_vec(),
                        error.dropped(),
                    )),
                }
            } else {
                match conn
                    .session
                    .wait_for(left, |m| resolved.matches(&(&m.frame).into()))
                    .await
                {
                    Ok(incoming) => Ok(incoming),
                    Err(error) => Err((
                        wait_label(&whole_wait(&error, within), false),
                        error.seen().to_vec(),
                        error.dropped(),
                    )),
                }
            };
            if outcome.is_err()
                && conn.session.is_closed()
                && self.reconnect_before(statement, target, deadline).await?
            {
                continue;
            }
            break outcome;
        };
        match outcome {
            Ok(frame) => Ok(Done::Matched {
                what,
                frame,
                started,
            }),
            Err((why, seen, dropped)) => {
                let prefix = if next { "next " } else { "" };
                let mut failed = Failed::new(
                    FailedKind::Expectation,
                    format!("expectation failed: {prefix}{description}"),
                    &format!("expect {prefix}{description}"),
                    statement.keyword,
                )
                .label(why)
                .received(&seen)
                .dropped(dropped);
                failed.expected = Some(description);
                Err(failed.into())
            }
        }
    }

    async fn capture(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
        capture: &Capture,
    ) -> Result<Done, Fault> {
        let within = capture.timeout(self.options.timeout);
        let source = &capture.source.value;
        let name = &capture.name.value;
        let started = Instant::now();
        let deadline = started + within;
        let outcome = loop {
            let conn = self.conn(statement, target)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = if capture.next {
                match conn.session.next(left).await {
                    Ok(incoming) => match source.extract(&(&incoming.frame).into()) {
                        Some(value) => Ok((value, incoming)),
                        None => Err((
                            format!("the next message has no {source}"),
                            vec![incoming],
                            0,
                        )),
                    },
                    Err(error) => Err((
                        wait_label(&whole_wait(&error, within), true),
                        error.seen().to_vec(),
                        error.dropped(),
                    )),
                }
            } else {
                match conn
                    .session
                    .wait_for(left, |m| source.extract(&(&m.frame).into()).is_some())
                    .await
                {
                    Ok(incoming) => match source.extract(&(&incoming.frame).into()) {
                        Some(value) => Ok((value, incoming)),
                        None => Err(("the value vanished".to_owned(), vec![incoming], 0)),
                    },
                    Err(error) => Err((
                        wait_label(&whole_wait(&error, within), false),
                        error.seen().to_vec(),
                        error.dropped(),
                    )),
                }
            };
            if outcome.is_err()
                && conn.session.is_closed()
                && self.reconnect_before(statement, target, deadline).await?
            {
                continue;
            }
            break outcome;
        };
        match outcome {
            Ok((value, frame)) => {
                self.vars.capture(name, value.clone());
                Ok(Done::Captured {
                    name: name.clone(),
                    value,
                    frame,
                    started,
                })
            }
            Err((why, seen, dropped)) => Err(Failed::new(
                FailedKind::Expectation,
                format!("capture failed: {name} = {source}"),
                &format!("capture {name} = {source}"),
                statement.keyword,
            )
            .label(why)
            .received(&seen)
            .dropped(dropped)
            .into()),
        }
    }

    /// Waits until `deadline`, or until one of the open sessions that may be reconnected
    /// ends: its key, or `None` at the deadline.
    async fn until_one_ends(&mut self, deadline: Instant) -> Option<SessionKey> {
        let left = deadline.saturating_duration_since(Instant::now());
        let waits: Vec<_> = self
            .sessions
            .iter_mut()
            .filter(|(_, conn)| {
                let reconnects = conn
                    .life
                    .as_ref()
                    .is_some_and(|life| life.lifeline.reconnect.is_some());
                reconnects && !conn.we_closed && !conn.session.is_closed()
            })
            .map(|(key, conn)| {
                let key = *key;
                Box::pin(async move { conn.session.inbox().wait_ended(left).await.then_some(key) })
            })
            .collect();
        if waits.is_empty() {
            tokio::time::sleep(left).await;
            return None;
        }
        futures_util::future::select_all(waits).await.0
    }

    /// A wait on `target` failed because its connection ended: if the connection is to
    /// be reconnected, reconnects it within what is left until `deadline`, so the wait
    /// can go on on the new connection. `Ok(false)` when it is not to be, or the time ran
    /// out first (the reconnect is then left to the next statement).
    async fn reconnect_before(
        &mut self,
        statement: &Statement,
        target: Option<SessionKey>,
        deadline: Instant,
    ) -> Result<bool, Fault> {
        let Some(key) = target.filter(|key| self.wants_reconnect(*key)) else {
            return Ok(false);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.reconnect(key)).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(Fault::Failed(mut failed))) => {
                failed.span = statement.keyword;
                Err(Fault::Failed(failed))
            }
            Ok(Err(fault)) => Err(fault),
            Err(_elapsed) => Ok(false),
        }
    }

    async fn manage(
        &mut self,
        keyword: Span,
        target: Option<SessionKey>,
        method: Method,
        connection_id: &Template,
        body: Option<String>,
    ) -> Result<Done, Fault> {
        let command = method.as_str().to_ascii_lowercase();
        let id = connection_id.resolve(&self.vars)?;
        let Some(url) = self.connection_url(target, &id) else {
            return Err(Failed::new(
                FailedKind::Error,
                "no @connections URL for this call",
                &command,
                keyword,
            )
            .hint("its `connect` did not run; pass --management-url URL")
            .into());
        };
        // A failed call leaves no answer behind for `expect status`.
        self.last_response = None;
        match management::call(method, &url, body, &self.options.client).await {
            Ok(response) => {
                self.last_response = Some(response.clone());
                Ok(Done::Answered { response })
            }
            Err(error) => {
                let mut failed = Failed::new(
                    FailedKind::Error,
                    format!("the @connections call failed: {error}"),
                    &format!("{} {url}", method.as_str()),
                    keyword,
                );
                failed.hint = error.hint();
                Err(failed.into())
            }
        }
    }
}

fn no_response(statement: &Statement, what: &str) -> Failed {
    Failed::new(
        FailedKind::Error,
        "no `post`, `get` or `delete` before this line to check",
        what,
        statement.keyword,
    )
}

/// A received frame in a failure's list.
pub fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Dropped { reason } => format!(
            "dropped without a close frame: {}",
            crate::text::one_line(reason)
        ),
        other => FrameView::from(other).to_string(),
    }
}

/// A management answer in one line: `status 410 {"message":"Gone"}`.
fn response_text(response: &Response) -> String {
    if response.body.is_empty() {
        format!("status {}", response.status)
    } else {
        format!(
            "status {} {}",
            response.status,
            crate::text::one_line(&response.body)
        )
    }
}

/// A wait that may have been split by a reconnect, reported with its whole length.
fn whole_wait(error: &WaitError, within: Duration) -> WaitError {
    match error {
        WaitError::Timeout { seen, dropped, .. } => WaitError::Timeout {
            after: within,
            seen: seen.clone(),
            dropped: *dropped,
        },
        other => other.clone(),
    }
}

fn wait_label(error: &WaitError, next: bool) -> String {
    match error {
        WaitError::Timeout { after, .. } if next => {
            format!(
                "nothing arrived within {}",
                humantime::format_duration(*after)
            )
        }
        WaitError::Timeout { after, .. } => {
            format!(
                "nothing matched within {}",
                humantime::format_duration(*after)
            )
        }
        WaitError::Closed { ending, .. } => {
            format!("the connection {ending} before anything matched")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_described_on_one_line() {
        let close = Frame::Close {
            code: 1005,
            reason: String::new(),
        };
        assert_eq!(describe(&close), "close (no status code)");
        let close = Frame::Close {
            code: 4000,
            reason: "bye".into(),
        };
        assert_eq!(describe(&close), "close 4000 bye");
        let dropped = Frame::Dropped {
            reason: "reset".into(),
        };
        assert_eq!(describe(&dropped), "dropped without a close frame: reset");
        assert_eq!(describe(&Frame::Text("{\"a\":1}".into())), "text {\"a\":1}");
    }

    #[test]
    fn wait_failures_say_why() {
        let timeout = WaitError::Timeout {
            after: Duration::from_millis(300),
            seen: vec![],
            dropped: 0,
        };
        assert_eq!(wait_label(&timeout, false), "nothing matched within 300ms");
        assert_eq!(wait_label(&timeout, true), "nothing arrived within 300ms");
        let closed = WaitError::Closed {
            ending: Ending::Closed {
                code: 1001,
                reason: String::new(),
            },
            seen: vec![],
            dropped: 0,
        };
        assert_eq!(
            wait_label(&closed, false),
            "the connection closed with code 1001 before anything matched"
        );
    }

    #[test]
    fn answers_in_one_line() {
        let response = |status, body: &str| Response {
            status,
            body: body.to_owned(),
            error_type: None,
        };
        assert_eq!(response_text(&response(204, "")), "status 204");
        assert_eq!(
            response_text(&response(410, r#"{"message":"Gone"}"#)),
            r#"status 410 {"message":"Gone"}"#
        );
    }
}
