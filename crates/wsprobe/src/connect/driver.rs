//! The session loop shared by every mode of `wsprobe connect`: lines come in (typed at
//! the prompt, from `-x`, or piped on stdin), frames arrive, timers fire, and one task
//! reacts to each in turn.
//!
//! - Every command runs on the command engine ([`wsprobe_core::command::engine`]), the one
//!   `wsprobe run` uses: the engine future is driven from the loop's `select!` beside the
//!   input, Ctrl-C, SIGTERM and the timers, and is simply dropped to cancel it (it is
//!   cancel-safe). While it runs the loop is *busy*: frames go on being shown, lines queue
//!   up behind it.
//! - Frames are shown from the session's watch (a copy of each frame as it is read): the
//!   prompt only *looks* at them. They stay in the session's inbox until an `/expect` or
//!   `/capture` consumes them, as in a script.
//! - Echo ticks ([`super::echo`]) observe the same frames with the same echo verdict.
//! - The connection is opened concurrently: lines given before the handshake completes
//!   are queued and run once it has.
//! - Sessions that last: the engine keeps the connection alive (`--keepalive`) and runs
//!   the `--on-connect` lines after the handshake, as the first command. With
//!   `--reconnect`, a connection the server ends with 1001 or 1006 (`always`: any close,
//!   never our own `/close`) is reopened at once — by the engine, when a `/wait` or an
//!   `/expect` is in flight, else as a command of its own: each attempt is shown, lines
//!   typed meanwhile queue behind it, Ctrl-C cancels it and ends the session. A reconnect
//!   that is refused (401, 403) or gives up ends the session with exit 3.
//! - Every wait has a deadline, and the loop only sleeps until a deadline still to come;
//!   it ends when the user quits, when the input has ended and everything has settled,
//!   when the connection ends, or on Ctrl-C or SIGTERM.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tokio::sync::{Mutex, mpsc};
use url::Url;

use super::display::{self, DisplayOptions, Painter, Tone};
use super::echo::{EchoOutcome, EchoTicks};
use super::prompt::Printer;
use super::record::Recorder;
use wsprobe_core::client::{ClientConfig, ConnectError, Connection};
use wsprobe_core::command::engine::{
    Done, Engine, EngineOptions, FailedKind, Fault, Lifeline, OnConnect, SessionEvent,
};
use wsprobe_core::command::vars::Vars;
use wsprobe_core::command::{EchoPolicy, Statement};
use wsprobe_core::message::RouteFields;
use wsprobe_core::reconnect::ReconnectPolicy;
use wsprobe_core::session::{
    Ending, Frame, InboxLimits, Incoming, KeepAlive, Outgoing, Session, Watch,
};

/// The key of the prompt's one connection in the engine.
pub(super) const SESSION: usize = 0;

/// A second Ctrl-C at an empty prompt within this long quits, as in Node's REPL.
const QUIT_WINDOW: Duration = Duration::from_secs(2);

/// How long a handshake may take at the prompt before a status line says it is under way.
const SLOW_HANDSHAKE: Duration = Duration::from_millis(500);

/// Something from the line source.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line to run (a `/command`) or to send (anything else).
    Line(String),
    /// Ctrl-C at the prompt: the editor has cleared the line, which was empty or not.
    Interrupted {
        /// Whether the line was empty when Ctrl-C was pressed.
        empty: bool,
    },
    /// A message for the user from the line source (e.g. a history problem).
    Note(String),
    /// No more lines: Ctrl-D at the prompt, or the end of `-x` or of stdin.
    End,
}

/// The settings of one session.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Route and body fields of route-tagged sends.
    pub(crate) fields: RouteFields,
    /// What an echo looks like at the start; `/echo` changes it.
    pub(crate) echo: EchoPolicy,
    /// How long each echo tick waits.
    pub(crate) echo_timeout: Duration,
    /// The default `within` of `/expect` and `/capture`, and the longest a send may block.
    pub(crate) expect_timeout: Duration,
    /// How things are shown; `/pretty` changes it.
    pub(crate) display: DisplayOptions,
    /// `-w`: after the input ends, how long to wait for late messages (`None`: until the
    /// server closes, or Ctrl-C).
    pub(crate) linger: Option<Duration>,
    /// At the prompt (Ctrl-D quits) rather than `-x` or a pipe (the end of input drains).
    pub(crate) interactive: bool,
    /// `--show-secrets`: show captured values even when their names look secret.
    pub(crate) show_secrets: bool,
    /// The URL connected to: `/post`, `/get` and `/delete` go to its stage.
    pub url: Url,
    /// The connection options (TLS, proxies, timeout, signer) of `@connections` calls.
    pub(crate) client: ClientConfig,
    /// `--inbox-frames`, `--inbox-bytes`: the bound of the session's inbox.
    pub(crate) inbox: InboxLimits,
    /// `--keepalive`, `--keepalive-message`.
    pub(crate) keepalive: Option<KeepAlive>,
    /// `--reconnect`, `--reconnect-max`.
    pub(crate) reconnect: Option<ReconnectPolicy>,
    /// `--on-connect`: run after every open.
    pub(crate) on_connect: Vec<OnConnect>,
}

/// Where the session's output goes.
#[derive(Debug)]
pub(crate) enum Output {
    /// Above the prompt, every line decorated.
    Prompt(Printer),
    /// Received messages to stdout, one a line and undecorated; everything else to stderr.
    /// Messages go out raw only when stdout is not a terminal: there they are data.
    Plain {
        /// Set when stdout was closed by its reader (`| head -1`): nothing more to do.
        stdout_closed: bool,
    },
}

impl Output {
    /// A plain output with stdout open.
    pub(crate) fn plain() -> Self {
        Output::Plain {
            stdout_closed: false,
        }
    }

    /// A line for the user (not a received message).
    pub(crate) fn note(&mut self, text: String) {
        match self {
            Output::Prompt(printer) => printer.print(text),
            Output::Plain { .. } => {
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "{text}");
            }
        }
    }

    /// A received message; `decorated` is the line shown at the prompt.
    fn message(&mut self, incoming: &Incoming, options: &DisplayOptions, decorated: String) {
        match self {
            Output::Prompt(printer) => printer.print(decorated),
            Output::Plain { stdout_closed } => {
                let body = match &incoming.frame {
                    Frame::Text(text) if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
                        let text = display::message_text(text, options.pretty);
                        wsprobe_core::text::escape(&text, wsprobe_core::text::Newlines::Keep)
                            .into_owned()
                    }
                    Frame::Text(text) => display::message_text(text, options.pretty),
                    Frame::Binary(data) => display::binary_line(data),
                    _ => {
                        // Control frames are not messages: they go with the diagnostics.
                        let mut stderr = std::io::stderr().lock();
                        let _ = writeln!(stderr, "{decorated}");
                        return;
                    }
                };
                let stamp = if options.timestamps {
                    let wall = std::time::SystemTime::now()
                        .checked_sub(incoming.at.elapsed())
                        .unwrap_or_else(std::time::SystemTime::now);
                    format!("{} ", display::time_of_day(wall))
                } else {
                    String::new()
                };
                let mut stdout = std::io::stdout().lock();
                if writeln!(stdout, "{stamp}{body}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    *stdout_closed = true;
                }
            }
        }
    }

    fn stdout_closed(&self) -> bool {
        matches!(
            self,
            Output::Plain {
                stdout_closed: true
            }
        )
    }
}

/// Why the session loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// `/quit` or Ctrl-D at the prompt.
    Quit,
    /// The input ended and everything settled (or stdout was closed).
    Drained,
    /// The connection ended.
    Closed {
        /// How.
        ending: Ending,
        /// Whether it was our `/close`.
        we_closed: bool,
    },
    /// Ctrl-C outside the prompt, or SIGTERM anywhere.
    Interrupted,
}

/// How the session went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// Why it ended.
    pub(crate) finish: Finish,
    /// Echo ticks, expectations and commands that failed.
    pub(crate) failed_checks: usize,
}

/// The engine future of the command in flight.
type EngineFuture = Pin<Box<dyn Future<Output = Result<Done, Fault>> + Send>>;

/// A command running on the engine.
pub(super) struct Running {
    /// The engine working on it; dropping it cancels the command.
    pub(crate) future: EngineFuture,
    /// What runs, for "… cancelled": `wait`, `expect`, `POST http://…`.
    pub(crate) what: String,
    /// The line as typed, to point at in error messages.
    pub(crate) line: String,
    /// Whether the frame it sends is shown (a plain typed line is already on screen).
    pub(crate) show_sent: bool,
    /// An `@connections` call, whose answer is still shown when the session ends.
    pub(crate) is_call: bool,
    /// A command that waits (`/wait`, `/expect`, `/capture`): lines typed meanwhile are
    /// shown as queued.
    pub(crate) waits: bool,
}

/// The state of one session.
pub(crate) struct Driver {
    pub(super) settings: Settings,
    pub(super) painter: Painter,
    pub(super) output: Output,
    /// Runs every command; shared with the future of the command in flight.
    pub(super) engine: Arc<Mutex<Engine>>,
    pub(super) running: Option<Running>,
    /// Copies of the frames as they arrive, for display; set once connected.
    watch: Option<Watch>,
    pub(super) ticks: EchoTicks,
    /// Lines waiting for the handshake or for a busy command to finish.
    pub(super) queue: VecDeque<String>,
    pub(super) failed_checks: usize,
    /// Whether the close handshake was started by us (`/close`).
    pub(super) we_closed: bool,
    /// Set once the handshake has completed.
    connected: bool,
    /// How the connection ended, once it has.
    ended: Option<Ending>,
    /// When the input ended (`-x` or a pipe), if it has.
    input_ended: bool,
    /// When the last line had run after the input ended: `-w` counts from here.
    drain_started: Option<Instant>,
    /// `/quit` (or Ctrl-D at the prompt).
    pub(super) quit: bool,
    /// Whether lines from the input are still taken (`/quit` in `-x` or a pipe stops it).
    accepting: bool,
    /// Frames the display fell too far behind to show, as last reported.
    skipped_shown: u64,
    /// When Ctrl-C was last pressed at an empty prompt with nothing running.
    last_empty_interrupt: Option<Instant>,
    /// Whether a bare `help`, `quit` or `exit` has already been answered with a note.
    pub(super) noted_bare_word: bool,
    /// `--record`: hears about each line run and each frame.
    pub(super) recorder: Option<Recorder>,
    /// Reconnects, reopened sessions and `--on-connect` lines, from the engine.
    events: mpsc::UnboundedReceiver<SessionEvent>,
    /// How the connection ended, while it is to be (or being) reconnected.
    reconnecting: Option<Ending>,
    /// Why reconnecting failed: the session is over, with exit 3.
    reconnect_failed: Option<ConnectError>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>> + Send>>;

impl Driver {
    /// A session that has not connected yet, with an engine for its commands.
    pub(crate) fn new(settings: Settings, output: Output) -> Self {
        let options = EngineOptions {
            timeout: settings.expect_timeout,
            fields: settings.fields.clone(),
            echo: settings.echo,
            management_url: None,
            stage_url: None,
            client: settings.client.clone(),
        };
        // `${NAME}`: captures, then the environment.
        let mut engine = Engine::new(options, Vars::new(HashMap::new()));
        engine.set_url(SESSION, settings.url.clone());
        let (events_to, events) = mpsc::unbounded_channel();
        engine.set_events(events_to);
        Self {
            settings,
            painter: Painter::from_environment(),
            output,
            engine: Arc::new(Mutex::new(engine)),
            running: None,
            watch: None,
            ticks: EchoTicks::new(),
            queue: VecDeque::new(),
            failed_checks: 0,
            we_closed: false,
            connected: false,
            ended: None,
            input_ended: false,
            drain_started: None,
            quit: false,
            accepting: true,
            skipped_shown: 0,
            last_empty_interrupt: None,
            noted_bare_word: false,
            recorder: None,
            events,
            reconnecting: None,
            reconnect_failed: None,
        }
    }

    /// Records the session (`--record`).
    pub(crate) fn recording(mut self, recorder: Option<Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// Runs the session: connects (the future), then runs the lines `input` delivers
    /// until the session is over. A failed handshake is the error.
    pub(crate) async fn run(
        mut self,
        connecting: Connecting,
        mut input: mpsc::UnboundedReceiver<Input>,
    ) -> Result<Report, ConnectError> {
        let mut connecting = Some(connecting);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        // SIGTERM ends the session like Ctrl-C: close with 1001, give the terminal back
        // (the caller does), exit 130. Without a handler the process would die at once,
        // leaving the terminal in raw mode.
        let mut sigterm = terminate_signal();
        // At the prompt, a handshake that takes a while gets a status line.
        let mut slow_handshake =
            (self.settings.interactive).then(|| Instant::now() + SLOW_HANDSHAKE);

        let finish = loop {
            // Take every line already given (all of `-x`, what a pipe has delivered), so
            // that lines given before the connection ended still run after it.
            while self.accepting
                && let Ok(line) = input.try_recv()
            {
                self.on_input(Some(line));
            }
            // What the engine did meanwhile is shown before the loop can end.
            while let Ok(event) = self.events.try_recv() {
                self.on_event(event);
            }
            if self.connected {
                self.start_reconnect();
                self.start_queued();
            }
            if self.quit {
                break Finish::Quit;
            }
            if self.output.stdout_closed() {
                break Finish::Drained;
            }
            if let Some(finish) = self.finished(Instant::now()) {
                break finish;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = &mut ctrl_c => break Finish::Interrupted,
                () = terminated(&mut sigterm) => break Finish::Interrupted,
                result = engine_done(&mut self.running) => {
                    if let Some(running) = self.running.take() {
                        self.on_done(result, &running);
                    }
                }
                incoming = next_frame(&mut self.watch) => match incoming {
                    Some(incoming) => {
                        self.note_skipped();
                        self.on_frame(incoming);
                    }
                    None => {
                        // The reader always delivers the ending first; if it stopped
                        // without one, the connection is as good as dropped.
                        self.watch = None;
                        if self.ended.is_none() && self.reconnecting.is_none() {
                            self.on_ending(Ending::Dropped {
                                reason: "the reader stopped".into(),
                            });
                        }
                    }
                },
                result = connected(&mut connecting) => {
                    connecting = None;
                    let connection = result?;
                    self.note(Tone::Good, &connected_text(&connection));
                    let (session, watch) =
                        Session::start_watched(connection, self.settings.inbox);
                    // Nothing runs before the handshake: the engine is free.
                    let lifeline = self.lifeline();
                    {
                        let mut engine = self.engine.lock().await;
                        engine.open(SESSION, session);
                        engine.keep_going(SESSION, self.settings.keepalive.clone(), lifeline);
                    }
                    self.watch = Some(watch);
                    self.connected = true;
                    // The --on-connect lines run first, before any line given meanwhile.
                    if !self.settings.on_connect.is_empty() {
                        self.start_on_connect();
                    }
                }
                Some(event) = self.events.recv() => self.on_event(event),
                line = input.recv(), if self.accepting => self.on_input(line),
                () = sleep_until(slow_handshake), if connecting.is_some() && slow_handshake.is_some() => {
                    slow_handshake = None;
                    let url = wsprobe_core::client::redacted_url(&self.settings.url);
                    self.note(Tone::Info, &format!("connecting to {url}… (lines typed now are sent once connected)"));
                }
                () = sleep_until(deadline) => self.on_timer(Instant::now()),
            }
        };

        self.settle(&finish).await;
        // Our closing is not part of the recording: a replay closes at the end of its file.
        if let Some(recorder) = &self.recorder {
            recorder.stop();
        }
        if matches!(finish, Finish::Quit | Finish::Drained | Finish::Interrupted) {
            self.close_politely(&finish).await;
        }
        if let Some(error) = self.reconnect_failed.take() {
            return Err(error);
        }
        Ok(Report {
            finish,
            failed_checks: self.failed_checks,
        })
    }

    fn on_input(&mut self, input: Option<Input>) {
        match input {
            Some(Input::Line(line)) => {
                if self.settings.interactive
                    && let Some(running) = self.running.as_ref().filter(|r| r.waits)
                {
                    let note = match running.what.as_str() {
                        // The driver's own, not a command the user typed.
                        "reconnect" => "queued: runs once reconnected".to_owned(),
                        what => format!("queued: runs after /{what}"),
                    };
                    self.note(Tone::Info, &note);
                }
                self.queue.push_back(line);
                // Started at once, so that a Ctrl-C read after it cancels it.
                if self.connected {
                    self.start_queued();
                }
            }
            Some(Input::Interrupted { empty }) => self.interrupt(empty, Instant::now()),
            Some(Input::Note(text)) => self.output.note(text),
            Some(Input::End) | None => {
                self.accepting = false;
                self.end_of_input();
            }
        }
    }

    /// Starts queued lines while connected and not busy.
    fn start_queued(&mut self) {
        while self.running.is_none() && !self.quit {
            let Some(line) = self.queue.pop_front() else {
                break;
            };
            self.execute(line);
        }
    }

    /// Starts `statement` on the engine (see [`Running`]).
    pub(super) fn start(&mut self, statement: Statement, what: String, line: String) {
        let engine = self.engine.clone();
        let is_call = matches!(
            statement.command,
            wsprobe_core::command::Command::Post { .. }
                | wsprobe_core::command::Command::Get { .. }
                | wsprobe_core::command::Command::Delete { .. }
        );
        let waits = matches!(
            statement.command,
            wsprobe_core::command::Command::Sleep(_)
                | wsprobe_core::command::Command::Expect(_)
                | wsprobe_core::command::Command::Capture(_)
        );
        if let Some(recorder) = &self.recorder {
            recorder.start(&line);
        }
        let future = Box::pin(async move {
            let mut engine = engine.lock_owned().await;
            engine.execute(&statement, Some(SESSION)).await
        });
        self.running = Some(Running {
            future,
            what,
            line,
            show_sent: true,
            is_call,
            waits,
        });
    }

    /// Whether the loop is over (other than by an event): the connection ended and what
    /// was running has settled, or the input ended and everything settled.
    fn finished(&mut self, now: Instant) -> Option<Finish> {
        if let Some(ending) = &self.ended {
            // With `-x` or a pipe the lines already given still run (and fail, or check
            // the close), as they would in a script; at the prompt the session is over.
            let pending = self.running.is_some() || !self.queue.is_empty();
            if self.settings.interactive || !pending {
                return Some(Finish::Closed {
                    ending: ending.clone(),
                    we_closed: self.we_closed,
                });
            }
            return None;
        }
        if !self.input_ended || !self.connected || !self.queue.is_empty() || self.running.is_some()
        {
            return None;
        }
        let started = *self.drain_started.get_or_insert(now);
        let lingered = self
            .settings
            .linger
            .is_some_and(|linger| now >= started + linger);
        (self.ticks.is_empty() && lingered).then_some(Finish::Drained)
    }

    /// The next moment something is due: an echo tick's deadline, or the end of `-w` once
    /// every tick has settled. Never a moment already handled, so the loop cannot spin.
    fn next_deadline(&self) -> Option<Instant> {
        let drain = self
            .drain_started
            .filter(|_| self.input_ended && self.ticks.is_empty())
            .zip(self.settings.linger)
            .map(|(started, linger)| started + linger);
        self.ticks.next_deadline().into_iter().chain(drain).min()
    }

    /// `/quit`: at the prompt, close and leave; with `-x` or a pipe, stop taking lines
    /// and leave as soon as the echo ticks have settled (no `-w` wait).
    pub(super) fn quit(&mut self) {
        if self.settings.interactive {
            self.quit = true;
        } else {
            self.accepting = false;
            self.queue.clear();
            self.input_ended = true;
            self.settings.linger = Some(Duration::ZERO);
        }
    }

    fn end_of_input(&mut self) {
        if self.settings.interactive {
            self.quit = true;
        } else {
            self.input_ended = true;
        }
    }

    /// Ctrl-C at the prompt: cancels the command in flight (the editor has already
    /// cleared the line). Dropping the engine future is safe: nothing it read is lost.
    /// At an empty prompt with nothing running it says how to quit, and a second one
    /// within [`QUIT_WINDOW`] quits.
    fn interrupt(&mut self, empty: bool, now: Instant) {
        if let Some(running) = self.running.take() {
            self.last_empty_interrupt = None;
            self.note(Tone::Info, &format!("{} cancelled", running.what));
            if running.what == "reconnect" {
                // The connection stays ended: the session is over.
                self.ended = self.reconnecting.take();
            }
            return;
        }
        if !empty {
            self.last_empty_interrupt = None;
            return;
        }
        match self.last_empty_interrupt {
            Some(last) if now.duration_since(last) <= QUIT_WINDOW => self.quit = true,
            _ => {
                self.last_empty_interrupt = Some(now);
                self.note(
                    Tone::Info,
                    "(to quit, press Ctrl-C again, Ctrl-D, or type /quit)",
                );
            }
        }
    }

    /// What runs when the loop ends: an `@connections` call still shows its answer (e.g.
    /// `/delete` of this very connection, whose close can arrive first), unless the
    /// session was interrupted; a command the connection's end has settled shows how;
    /// anything else is cancelled.
    async fn settle(&mut self, finish: &Finish) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        if running.is_call && *finish != Finish::Interrupted {
            let result = (&mut running.future).await;
            self.on_done(result, &running);
        } else if matches!(finish, Finish::Closed { .. })
            && let Some(result) = (&mut running.future).now_or_never()
        {
            // An `/expect` that the end of the connection settled says so.
            self.on_done(result, &running);
        }
    }

    /// Shows a frame, lets the echo ticks look at it, and notes the connection's end.
    fn on_frame(&mut self, incoming: Incoming) {
        if let Some(recorder) = &self.recorder {
            recorder.arrived(&incoming.frame);
        }
        if let Some(line) = display::received_line(
            &incoming.frame,
            incoming.at,
            &self.settings.display,
            &self.painter,
        ) {
            self.output.message(&incoming, &self.settings.display, line);
        }
        if let Some(outcome) = self.ticks.observe(&incoming) {
            self.report_echo(outcome);
        }
        // The inbox itself is bounded (`--inbox-frames`, `--inbox-bytes`): a long session
        // that never `/expect`s keeps only the newest frames.
        if let Some(ending) = incoming.frame.ending() {
            self.on_ending(ending);
        }
    }

    fn on_ending(&mut self, ending: Ending) {
        let line = display::ending_line(&ending, self.we_closed, &self.painter);
        self.output.note(line);
        for outcome in self.ticks.close(&ending) {
            self.report_echo(outcome);
        }
        let reconnect = self
            .settings
            .reconnect
            .is_some_and(|policy| policy.applies_to(&ending));
        if reconnect && !self.we_closed && !self.quit {
            self.reconnecting = Some(ending);
        } else {
            self.ended = Some(ending);
        }
    }

    /// What the engine needs to keep the session going.
    fn lifeline(&self) -> Lifeline {
        Lifeline {
            url: self.settings.url.clone(),
            client: self.settings.client.clone(),
            inbox: self.settings.inbox,
            reconnect: self.settings.reconnect,
            on_connect: self.settings.on_connect.clone(),
            watched: true,
        }
    }

    /// Runs the `--on-connect` lines of the first connection on the engine.
    fn start_on_connect(&mut self) {
        let engine = self.engine.clone();
        let future = Box::pin(async move {
            let mut engine = engine.lock_owned().await;
            engine.run_on_connect(SESSION).await
        });
        self.running = Some(Running {
            future,
            what: "on-connect".into(),
            line: String::new(),
            show_sent: true,
            is_call: false,
            waits: true,
        });
    }

    /// Starts reopening the connection once nothing else runs.
    fn start_reconnect(&mut self) {
        if self.reconnecting.is_none() || self.running.is_some() || self.quit {
            return;
        }
        let engine = self.engine.clone();
        let future = Box::pin(async move {
            let mut engine = engine.lock_owned().await;
            if engine.is_ended(SESSION) {
                engine.reconnect(SESSION).await
            } else {
                // An `/expect` in flight already reconnected it.
                Ok(Done::Reconnected)
            }
        });
        self.running = Some(Running {
            future,
            what: "reconnect".into(),
            line: String::new(),
            show_sent: true,
            is_call: false,
            waits: true,
        });
    }

    /// A reconnect ended: the session goes on (the engine said how), or it is over.
    pub(super) fn on_reconnect_done(&mut self, result: &Result<Done, Fault>) -> bool {
        let Some(cause) = self.reconnecting.take() else {
            return false;
        };
        match result {
            Err(Fault::Failed(failed)) if failed.kind == FailedKind::Connect => {
                let error = failed.connect_error.clone().map(|error| {
                    std::sync::Arc::try_unwrap(error).unwrap_or_else(|shared| ConnectError::Other {
                        url: String::new(),
                        reason: shared.to_string(),
                    })
                });
                self.reconnect_failed = error;
                self.ended = Some(cause);
                true
            }
            // `Done::NotMine`: nothing to reconnect after all.
            Ok(Done::NotMine) => {
                self.ended = Some(cause);
                false
            }
            _ => false,
        }
    }

    /// Shows what the engine did besides the command in flight.
    fn on_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Reconnect { event, .. } => {
                let (tone, text) = display::reconnect_line(&event);
                self.note(tone, &text);
            }
            SessionEvent::Reopened { watch, .. } => {
                self.watch = watch;
                self.skipped_shown = 0;
            }
            SessionEvent::OnConnect { done, .. } => self.show_done(done, true),
        }
    }

    /// Fails the echo ticks whose time is up.
    fn on_timer(&mut self, now: Instant) {
        for outcome in self.ticks.expire(now) {
            self.report_echo(outcome);
        }
    }

    /// Prints the result of an echo tick, and counts a failure.
    pub(super) fn report_echo(&mut self, outcome: EchoOutcome) {
        let text = match outcome {
            EchoOutcome::Matched { latency } => {
                self.note(
                    Tone::Good,
                    &format!("✓ echo {}", display::short_duration(latency)),
                );
                return;
            }
            EchoOutcome::Mismatch { expected, actual } => {
                format!("✗ echo mismatch\n    expected: {expected}\n    actual:   {actual}")
            }
            EchoOutcome::Timeout { expected, after } => format!(
                "✗ no echo within {} (expected {expected})",
                display::human_duration(after)
            ),
            EchoOutcome::Closed { expected, ending } => {
                format!("✗ no echo: the connection {ending} first (expected {expected})")
            }
        };
        self.failed_checks += 1;
        self.note(Tone::Bad, &text);
    }

    /// A line for the user in `tone`.
    pub(super) fn note(&mut self, tone: Tone, text: &str) {
        let painted = self.painter.paint(tone, text);
        self.output.note(painted);
    }

    /// Shows a frame we sent.
    pub(super) fn show_sent(&mut self, frame: &Outgoing, at: Instant) {
        let line = display::sent_line(frame, at, &self.settings.display, &self.painter);
        self.output.note(line);
    }

    /// Closes with 1000 (1001 on Ctrl-C) and waits briefly for the server's answer, then
    /// shows what arrived meanwhile (the answer says how it ended).
    async fn close_politely(&mut self, finish: &Finish) {
        if !self.connected || self.ended.is_some() {
            return;
        }
        let code = if *finish == Finish::Interrupted {
            1001
        } else {
            1000
        };
        self.we_closed = true;
        self.engine.lock().await.close(SESSION, code).await;
        while let Some(incoming) = self.watch.as_mut().and_then(Watch::try_recv) {
            self.on_frame(incoming);
        }
    }
}

impl Driver {
    /// Says how many frames the display skipped since it last said so: the watch is
    /// bounded (`--inbox-frames`, `--inbox-bytes`), so a flood faster than the terminal
    /// loses the oldest frames not shown yet rather than growing without bound.
    fn note_skipped(&mut self) {
        let skipped = self.watch.as_ref().map_or(0, Watch::dropped);
        if skipped > self.skipped_shown {
            let new = skipped - self.skipped_shown;
            self.skipped_shown = skipped;
            self.note(
                Tone::Info,
                &format!("… {new} frames arrived faster than they could be shown and were skipped"),
            );
        }
    }
}

fn connected_text(connection: &Connection) -> String {
    let mut text = format!(
        "connected to {} ({})",
        wsprobe_core::client::redacted_url(&connection.url),
        display::short_duration(connection.connect_time)
    );
    if let Some(protocol) = &connection.subprotocol {
        // The server's choice, from a header.
        text.push_str(&format!(
            ", subprotocol {}",
            wsprobe_core::text::one_line(protocol)
        ));
    }
    text
}

/// The outcome of the command in flight; never resolves when there is none. Cancel-safe:
/// the future stays in `running` until it completes.
async fn engine_done(running: &mut Option<Running>) -> Result<Done, Fault> {
    match running {
        Some(running) => (&mut running.future).await,
        None => std::future::pending().await,
    }
}

async fn next_frame(watch: &mut Option<Watch>) -> Option<Incoming> {
    match watch {
        Some(watch) => watch.recv().await,
        None => std::future::pending().await,
    }
}

async fn connected(connecting: &mut Option<Connecting>) -> Result<Connection, ConnectError> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type TerminateSignal = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type TerminateSignal = ();

/// A listener for SIGTERM, if one can be installed.
fn terminate_signal() -> Option<TerminateSignal> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Resolves when SIGTERM arrives; never without a listener.
async fn terminated(signal: &mut Option<TerminateSignal>) {
    #[cfg(unix)]
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    #[cfg(not(unix))]
    let _ = signal;
    std::future::pending().await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
