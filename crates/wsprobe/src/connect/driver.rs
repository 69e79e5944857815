//! The session loop shared by every mode of `wsprobe connect`: lines come in (typed at
//! the prompt, from `-x`, or piped on stdin), frames arrive, timers fire, and one task
//! reacts to each in turn.
//!
//! - The connection is opened concurrently: lines given before the handshake completes
//!   are queued and run once it has.
//! - A `/wait`, `/expect`, `/capture` or `@connections` call (`/post`, `/get`, `/delete`)
//!   keeps the loop *busy*: messages go on being shown, and lines given meanwhile queue up
//!   behind it. Ctrl-C at the prompt cancels it.
//! - Echo checks run in the background ([`super::echo`]); results are printed as they
//!   settle.
//! - Every wait has a deadline; the loop ends when the user quits, when the input has
//!   ended and everything has settled, when the connection ends, or on Ctrl-C or SIGTERM.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;

use super::display::{self, DisplayOptions, Painter, Tone};
use super::echo::{EchoOutcome, EchoResult, EchoTracker};
use super::prompt::Printer;
use crate::run::management;
use crate::run::vars::Vars;
use wsprobe_core::client::{ClientConfig, ConnectError, Connection};
use wsprobe_core::command::{CaptureSource, ResolvedMatcher};
use wsprobe_core::message::RouteFields;
use wsprobe_core::options::EchoPolicy;
use wsprobe_core::session::{Ending, Frame, Inbox, Incoming, Outgoing, Session, SessionSender};

/// How many received frames are kept for `/expect` to look back at.
const BACKLOG: usize = 1000;

/// How long a send may wait for the socket to take the frame (a server that stops
/// reading must not hang the session).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a polite close waits for the server's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Something from the line source.
#[derive(Debug)]
pub enum Input {
    /// A line to run (a `/command`) or to send (anything else).
    Line(String),
    /// Ctrl-C at the prompt: the editor has cleared the line.
    Interrupted,
    /// A message for the user from the line source (e.g. a history problem).
    Note(String),
    /// No more lines: Ctrl-D at the prompt, or the end of `-x` or of stdin.
    End,
}

/// The settings of one session.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Route and body fields of route-tagged sends.
    pub fields: RouteFields,
    /// What an echo looks like; `/echo` changes it.
    pub echo: EchoPolicy,
    /// How long each echo check waits.
    pub echo_timeout: Duration,
    /// The default `within` of `/expect`.
    pub expect_timeout: Duration,
    /// How things are shown; `/pretty` changes it.
    pub display: DisplayOptions,
    /// `-w`: after the input ends, how long to wait for late messages.
    pub linger: Duration,
    /// At the prompt (Ctrl-D quits) rather than `-x` or a pipe (the end of input drains).
    pub interactive: bool,
    /// `--show-secrets`: show captured values even when their names look secret.
    pub show_secrets: bool,
    /// Where `/post`, `/get` and `/delete` go, and with which client settings.
    pub management: ManagementTarget,
}

/// The stage's `@connections` API as the session reaches it.
#[derive(Clone, Debug)]
pub struct ManagementTarget {
    /// The base URL (`http://host/dev/@connections`), derived from the connect URL.
    pub base: Url,
    /// The connection options (TLS, proxies, timeout) the calls are made with.
    pub client: ClientConfig,
}

/// Where the session's output goes.
#[derive(Debug)]
pub enum Output {
    /// Above the prompt, every line decorated.
    Prompt(Printer),
    /// Received messages to stdout, one a line and undecorated; everything else to stderr.
    Plain {
        /// Set when stdout was closed by its reader (`| head -1`): nothing more to do.
        stdout_closed: bool,
    },
}

impl Output {
    /// A plain output with stdout open.
    pub fn plain() -> Self {
        Output::Plain {
            stdout_closed: false,
        }
    }

    /// A line for the user (not a received message).
    pub fn note(&mut self, text: String) {
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
pub enum Finish {
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
pub struct Report {
    /// Why it ended.
    pub finish: Finish,
    /// Echo checks and expectations that failed.
    pub failed_checks: usize,
}

/// What the loop is waiting for before it runs the next line.
#[derive(Debug)]
pub(super) enum Busy {
    /// `/wait DUR`.
    Sleep { until: Instant },
    /// `/expect …` or `/capture …`.
    Expect(Waiting),
    /// `/post`, `/get` or `/delete` (bounded by the client's connect timeout).
    Call(Call),
}

/// An `@connections` call in flight.
#[derive(Debug)]
pub(super) struct Call {
    /// The request, running on its own task so frames keep being shown meanwhile.
    pub task: JoinHandle<Result<management::Response, ConnectError>>,
    /// What was called, e.g. `POST …/@connections/abc=`, for messages.
    pub what: String,
}

/// What a running `/expect` or `/capture` waits for.
#[derive(Debug)]
pub(super) enum Want {
    /// `expect MATCHER`: a message the matcher accepts.
    Message(ResolvedMatcher),
    /// `expect nothing`: no text or binary message.
    Nothing,
    /// `capture NAME = SOURCE`: a message the source takes a value from.
    Capture {
        /// The variable to set.
        name: String,
        /// Where the value comes from.
        source: CaptureSource,
    },
}

impl Want {
    /// The command as shown in results: `expect json $.a == 1`, `capture me = json $.id`.
    fn label(&self) -> String {
        match self {
            Want::Message(matcher) => format!("expect {}", matcher.describe()),
            Want::Nothing => "expect nothing".to_owned(),
            Want::Capture { name, source } => format!("capture {name} = {source}"),
        }
    }
}

/// How the frames kept so far settle a running `/expect` or `/capture`.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// The frame at `index` satisfies it (and provides `value`, for a capture).
    Found { index: usize, value: Option<String> },
    /// It failed because of the frame at `index` (consumed when `consume`).
    Failed {
        index: usize,
        why: String,
        consume: bool,
    },
}

/// A running `/expect` or `/capture`.
#[derive(Debug)]
pub(super) struct Waiting {
    /// What is waited for.
    pub want: Want,
    /// `next`: only the first message counts.
    pub next: bool,
    /// When it started, for the time it took.
    pub started: Instant,
    /// When it gives up.
    pub deadline: Instant,
    /// Its `within`, for the failure message.
    pub within: Duration,
}

impl Busy {
    /// When it gives up by itself (a call has its own timeout).
    fn deadline(&self) -> Option<Instant> {
        match self {
            Busy::Sleep { until } => Some(*until),
            Busy::Expect(waiting) => Some(waiting.deadline),
            Busy::Call(_) => None,
        }
    }
}

impl Waiting {
    /// Whether the frames kept so far (oldest first) settle the wait, and how. Mirrors the
    /// script runner: a scan takes the first frame that satisfies it, `next` only the next
    /// message (a text, binary or pong frame, or the connection's end).
    fn decide(&self, backlog: &VecDeque<Incoming>) -> Option<Verdict> {
        let next_message = || {
            backlog.iter().position(|m| {
                m.frame.is_data() || m.frame.is_ending() || matches!(m.frame, Frame::Pong(_))
            })
        };
        match &self.want {
            Want::Nothing => {
                backlog
                    .iter()
                    .position(|m| m.frame.is_data())
                    .map(|index| Verdict::Failed {
                        index,
                        why: format!("a message arrived: {}", view(&backlog[index].frame)),
                        consume: false,
                    })
            }
            Want::Message(matcher) if self.next => {
                let index = next_message()?;
                let frame = view(&backlog[index].frame);
                Some(match matcher.check(&frame) {
                    Ok(()) => Verdict::Found { index, value: None },
                    Err(why) => Verdict::Failed {
                        index,
                        why: format!("the next message did not match: {why}"),
                        consume: true,
                    },
                })
            }
            Want::Message(matcher) => backlog
                .iter()
                .position(|m| matcher.matches(&view(&m.frame)))
                .map(|index| Verdict::Found { index, value: None }),
            Want::Capture { source, .. } if self.next => {
                let index = next_message()?;
                Some(match source.extract(&view(&backlog[index].frame)) {
                    Some(value) => Verdict::Found {
                        index,
                        value: Some(value),
                    },
                    None => Verdict::Failed {
                        index,
                        why: format!("the next message has no {source}"),
                        consume: true,
                    },
                })
            }
            Want::Capture { source, .. } => backlog.iter().enumerate().find_map(|(index, m)| {
                source.extract(&view(&m.frame)).map(|value| Verdict::Found {
                    index,
                    value: Some(value),
                })
            }),
        }
    }
}

/// The state of one session.
pub struct Driver {
    pub(super) settings: Settings,
    pub(super) painter: Painter,
    pub(super) output: Output,
    /// Set once the handshake has completed.
    pub(super) sender: Option<SessionSender>,
    pub(super) tracker: EchoTracker,
    /// The echo the last route-tagged send should produce, for `/expect echo`.
    pub(super) last_echo: Option<Value>,
    /// `${NAME}`: captured values, then the environment.
    pub(super) vars: Vars,
    /// The answer of the last `/post`, `/get` or `/delete`, for `/expect status|response`.
    pub(super) last_response: Option<management::Response>,
    /// Frames not yet consumed by an `/expect`, oldest first (at most [`BACKLOG`]).
    pub(super) backlog: VecDeque<Incoming>,
    pub(super) busy: Option<Busy>,
    /// Lines waiting for the handshake or for a busy command to finish.
    pub(super) queue: VecDeque<String>,
    pub(super) failed_checks: usize,
    /// Whether the close handshake was started by us (`/close`).
    pub(super) we_closed: bool,
    /// When the input ended (`-x` or a pipe), if it has.
    input_ended: bool,
    /// When the last line had run after the input ended: `-w` counts from here.
    drain_started: Option<Instant>,
    /// `/quit` (or Ctrl-D at the prompt).
    pub(super) quit: bool,
    /// Whether lines from the input are still taken (`/quit` in `-x` or a pipe stops it).
    accepting: bool,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>> + Send>>;

impl Driver {
    /// A session that has not connected yet.
    pub fn new(settings: Settings, output: Output) -> Self {
        Self {
            settings,
            painter: Painter::from_environment(),
            output,
            sender: None,
            tracker: EchoTracker::new(),
            last_echo: None,
            vars: Vars::new(std::collections::HashMap::new()),
            last_response: None,
            backlog: VecDeque::new(),
            busy: None,
            queue: VecDeque::new(),
            failed_checks: 0,
            we_closed: false,
            input_ended: false,
            drain_started: None,
            quit: false,
            accepting: true,
        }
    }

    /// Runs the session: connects (the future), then runs the lines `input` delivers
    /// until the session is over. A failed handshake is the error.
    pub async fn run(
        mut self,
        connecting: Connecting,
        mut input: mpsc::UnboundedReceiver<Input>,
    ) -> Result<Report, ConnectError> {
        let mut connecting = Some(connecting);
        let mut inbox: Option<Inbox> = None;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        // SIGTERM ends the session like Ctrl-C: close with 1001, give the terminal back
        // (the caller does), exit 130. Without a handler the process would die at once,
        // leaving the terminal in raw mode.
        let mut sigterm = terminate_signal();

        let finish = loop {
            if inbox.is_some() {
                self.run_queue().await;
            }
            if self.quit {
                break Finish::Quit;
            }
            if self.output.stdout_closed() {
                break Finish::Drained;
            }
            if let Some(finish) = self.drained(Instant::now(), inbox.is_some()) {
                break finish;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = &mut ctrl_c => break Finish::Interrupted,
                () = terminated(&mut sigterm) => break Finish::Interrupted,
                answer = call_answer(&mut self.busy) => self.on_answer(answer),
                incoming = next_frame(&mut inbox) => match incoming {
                    Some(incoming) => {
                        if let Some(ending) = self.on_frame(incoming) {
                            break self.closed(ending);
                        }
                    }
                    None => {
                        let ending = inbox
                            .as_ref()
                            .and_then(|i| i.ending().cloned())
                            .unwrap_or(Ending::Dropped { reason: "the reader stopped".into() });
                        break self.closed(ending);
                    }
                },
                result = connected(&mut connecting) => {
                    connecting = None;
                    let connection = result?;
                    self.note(Tone::Good, &connected_text(&connection));
                    let session = Session::start(connection);
                    let (sender, session_inbox) = session.split();
                    self.sender = Some(sender);
                    inbox = Some(session_inbox);
                }
                line = input.recv(), if self.accepting => match line {
                    Some(Input::Line(line)) => self.queue.push_back(line),
                    Some(Input::Interrupted) => self.interrupt(),
                    Some(Input::Note(text)) => self.output.note(text),
                    Some(Input::End) | None => {
                        self.accepting = false;
                        self.end_of_input();
                    }
                },
                _ = sleep_until(deadline) => self.on_timer(Instant::now()),
            }
        };

        self.settle_call(&finish).await;
        if matches!(finish, Finish::Quit | Finish::Drained | Finish::Interrupted)
            && let Some(inbox) = inbox.as_mut()
        {
            self.close_politely(inbox, &finish).await;
        }
        Ok(Report {
            finish,
            failed_checks: self.failed_checks,
        })
    }

    /// Runs queued lines while connected and not busy.
    async fn run_queue(&mut self) {
        while self.busy.is_none() && !self.quit {
            let Some(line) = self.queue.pop_front() else {
                break;
            };
            self.execute(line).await;
        }
    }

    /// The end of the loop when the input has ended and everything has settled: the last
    /// line has run, every echo check is settled, and `-w` has passed since.
    fn drained(&mut self, now: Instant, connected: bool) -> Option<Finish> {
        if !self.input_ended || !connected || !self.queue.is_empty() || self.busy.is_some() {
            return None;
        }
        let started = *self.drain_started.get_or_insert(now);
        (self.tracker.is_empty() && now >= started + self.settings.linger)
            .then_some(Finish::Drained)
    }

    /// `/quit`: at the prompt, close and leave; with `-x` or a pipe, stop taking lines
    /// and leave as soon as the echo checks have settled (no `-w` wait).
    pub(super) fn quit(&mut self) {
        if self.settings.interactive {
            self.quit = true;
        } else {
            self.accepting = false;
            self.queue.clear();
            self.input_ended = true;
            self.settings.linger = Duration::ZERO;
        }
    }

    fn end_of_input(&mut self) {
        if self.settings.interactive {
            self.quit = true;
        } else {
            self.input_ended = true;
        }
    }

    /// Ctrl-C at the prompt: cancels a running `/wait` or `/expect` (the editor has
    /// already cleared the line).
    fn interrupt(&mut self) {
        if let Some(busy) = self.busy.take() {
            let what = match busy {
                Busy::Sleep { .. } => "wait".to_owned(),
                Busy::Expect(Waiting {
                    want: Want::Capture { .. },
                    ..
                }) => "capture".to_owned(),
                Busy::Expect(_) => "expect".to_owned(),
                Busy::Call(call) => {
                    call.task.abort();
                    call.what
                }
            };
            self.note(Tone::Info, &format!("{what} cancelled"));
        }
    }

    /// A call still in flight when the loop ends (e.g. `/delete` of this very connection,
    /// whose close can arrive before the answer): its answer is still shown, unless the
    /// session was interrupted.
    async fn settle_call(&mut self, finish: &Finish) {
        if !matches!(self.busy, Some(Busy::Call(_))) {
            return;
        }
        if *finish == Finish::Interrupted {
            self.interrupt();
            return;
        }
        let answer = call_answer(&mut self.busy).await;
        self.on_answer(answer);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let drain = self
            .drain_started
            .filter(|_| self.input_ended)
            .map(|started| started + self.settings.linger);
        [
            self.tracker.next_deadline(),
            self.busy.as_ref().and_then(Busy::deadline),
            drain,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Shows a frame, offers it to the echo checks and a running `/expect`, and keeps it
    /// for later `/expect`s. Returns how the connection ended if this frame ended it.
    fn on_frame(&mut self, incoming: Incoming) -> Option<Ending> {
        if let Some(line) = display::received_line(
            &incoming.frame,
            incoming.at,
            &self.settings.display,
            &self.painter,
        ) {
            self.output.message(&incoming, &self.settings.display, line);
        }
        let verdict = self.tracker.on_frame(&incoming);
        if let Some(result) = verdict.matched {
            self.report_echo(result);
        }
        self.backlog.push_back(incoming.clone());
        if self.backlog.len() > BACKLOG {
            self.backlog.pop_front();
        }
        self.check_waiting();
        let ending = incoming.frame.ending()?;
        let line = display::ending_line(&ending, self.we_closed, &self.painter);
        self.output.note(line);
        for result in self.tracker.close(&ending) {
            self.report_echo(result);
        }
        if matches!(self.busy, Some(Busy::Expect(_)))
            && let Some(Busy::Expect(waiting)) = self.busy.take()
        {
            self.fail_expect(&waiting, "the connection ended first");
        }
        Some(ending)
    }

    fn closed(&self, ending: Ending) -> Finish {
        Finish::Closed {
            ending,
            we_closed: self.we_closed,
        }
    }

    /// Fails the echo checks and the `/expect` whose time is up; ends a `/wait`.
    fn on_timer(&mut self, now: Instant) {
        for result in self.tracker.expire(now) {
            self.report_echo(result);
        }
        let due = self
            .busy
            .as_ref()
            .and_then(Busy::deadline)
            .is_some_and(|deadline| deadline <= now);
        if due {
            match self.busy.take() {
                Some(Busy::Expect(waiting)) if matches!(waiting.want, Want::Nothing) => {
                    let took = display::human_duration(waiting.within);
                    self.note(Tone::Good, &format!("✓ expect nothing: silence for {took}"));
                }
                Some(Busy::Expect(waiting)) => {
                    let why = format!(
                        "nothing matched within {}",
                        display::human_duration(waiting.within)
                    );
                    self.fail_expect(&waiting, &why);
                }
                Some(Busy::Sleep { .. } | Busy::Call(_)) | None => {}
            }
        }
    }

    /// Prints the result of an echo check, and counts a failure.
    fn report_echo(&mut self, result: EchoResult) {
        let outcome = result.outcome;
        if !outcome.passed() {
            self.failed_checks += 1;
        }
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

    /// Sends a frame; a failure is shown, not fatal (the connection's end arrives as a
    /// frame and ends the session).
    pub(super) async fn send(&mut self, frame: Outgoing) -> bool {
        let Some(sender) = self.sender.clone() else {
            return false;
        };
        match tokio::time::timeout(SEND_TIMEOUT, sender.send(frame)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                self.note(Tone::Bad, &format!("✗ not sent: {error}"));
                false
            }
            Err(_elapsed) => {
                let after = display::human_duration(SEND_TIMEOUT);
                self.note(
                    Tone::Bad,
                    &format!("✗ not sent: the server took nothing for {after}"),
                );
                false
            }
        }
    }

    /// Sends a text frame and, when `sent` is a route-tagged message, starts its echo
    /// check under the current policy.
    pub(super) async fn send_tagged(&mut self, text: String, sent: &Value) {
        let expected =
            wsprobe_core::message::expected_echo(sent, self.settings.echo, &self.settings.fields);
        self.last_echo = expected.clone();
        let at = Instant::now();
        let check = expected.map(|expected| {
            self.tracker
                .expect(expected, at, self.settings.echo_timeout)
        });
        let frame = Outgoing::Text(text);
        self.show_sent(&frame, at);
        if !self.send(frame).await
            && let Some(id) = check
        {
            self.tracker.cancel(id);
        }
    }

    /// Starts an `/expect`: looks at the frames already here, then waits.
    pub(super) fn start_expect(&mut self, waiting: Waiting) {
        self.busy = Some(Busy::Expect(waiting));
        self.check_waiting();
    }

    /// Settles a running `/expect` or `/capture` if the frames kept so far decide it.
    fn check_waiting(&mut self) {
        let Some(Busy::Expect(waiting)) = &self.busy else {
            return;
        };
        let Some(verdict) = waiting.decide(&self.backlog) else {
            return;
        };
        let Some(Busy::Expect(waiting)) = self.busy.take() else {
            return;
        };
        match verdict {
            Verdict::Found { index, value } => {
                let found = self.backlog.remove(index);
                let when = match found {
                    Some(m) if m.at >= waiting.started => {
                        display::short_duration(m.at.duration_since(waiting.started))
                    }
                    _ => "already received".to_owned(),
                };
                match (&waiting.want, value) {
                    (Want::Capture { name, .. }, Some(value)) => {
                        let shown = if !self.settings.show_secrets
                            && crate::run::vars::looks_secret(name)
                        {
                            wsprobe_core::secret::REDACTED.to_owned()
                        } else {
                            value.clone()
                        };
                        self.vars.capture(name, value);
                        self.note(
                            Tone::Good,
                            &format!("✓ capture ${{{name}}} = {shown} ({when})"),
                        );
                    }
                    (want, _) => {
                        self.note(Tone::Good, &format!("✓ {} ({when})", want.label()));
                    }
                }
            }
            Verdict::Failed {
                index,
                why,
                consume,
            } => {
                if consume {
                    self.backlog.remove(index);
                }
                self.fail_expect(&waiting, &why);
            }
        }
    }

    fn fail_expect(&mut self, waiting: &Waiting, why: &str) {
        self.failed_checks += 1;
        let mut text = format!("✗ {}: {why}", waiting.want.label());
        if !matches!(waiting.want, Want::Nothing) {
            // The backlog holds what arrived since the last send: what the user saw.
            let seen = self
                .backlog
                .iter()
                .filter(|m| m.frame.is_data())
                .take(5)
                .map(|m| format!("\n    received: {}", view(&m.frame)));
            text.extend(seen);
        }
        self.note(Tone::Bad, &text);
    }

    /// Closes with 1000 (1001 on Ctrl-C) and waits briefly for the server's answer,
    /// showing what arrives meanwhile.
    async fn close_politely(&mut self, inbox: &mut Inbox, finish: &Finish) {
        if inbox.is_closed() {
            return;
        }
        let code = if *finish == Finish::Interrupted {
            1001
        } else {
            1000
        };
        self.we_closed = true;
        if !self
            .send(Outgoing::Close(Some((code, String::new()))))
            .await
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        while let Ok(Some(incoming)) = tokio::time::timeout_at(deadline, inbox.recv()).await {
            // Late messages are still shown, and the server's answer says how it ended.
            if self.on_frame(incoming).is_some() {
                break;
            }
        }
    }
}

/// The frame as the command language's matchers see it.
pub(super) fn view(frame: &Frame) -> wsprobe_core::command::FrameView<'_> {
    frame.into()
}

fn connected_text(connection: &Connection) -> String {
    let mut text = format!(
        "connected to {} ({})",
        connection.url,
        display::short_duration(connection.connect_time)
    );
    if let Some(protocol) = &connection.subprotocol {
        text.push_str(&format!(", subprotocol {protocol}"));
    }
    text
}

async fn next_frame(inbox: &mut Option<Inbox>) -> Option<Incoming> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

async fn connected(connecting: &mut Option<Connecting>) -> Result<Connection, ConnectError> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The answer of the call in flight; never resolves when there is none. The task is
/// finished when this returns: the caller takes the call out of `busy`.
async fn call_answer(busy: &mut Option<Busy>) -> Result<management::Response, String> {
    match busy {
        Some(Busy::Call(call)) => match (&mut call.task).await {
            Ok(answer) => answer.map_err(|error| error.to_string()),
            Err(join_error) => Err(format!("the call did not finish: {join_error}")),
        },
        _ => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use wsprobe_core::command::{Command, Expectation, NoVariables, ReplInput, parse_repl_line};

    fn backlog(frames: &[Frame]) -> VecDeque<Incoming> {
        frames
            .iter()
            .map(|frame| Incoming {
                at: Instant::now(),
                frame: frame.clone(),
            })
            .collect()
    }

    fn text(text: &str) -> Frame {
        Frame::Text(text.to_owned())
    }

    /// The wait a typed `/expect …` or `/capture …` line starts.
    fn waiting(line: &str) -> Waiting {
        let Ok(ReplInput::Command(statement)) = parse_repl_line(line) else {
            panic!("not a command: {line}");
        };
        let (want, next) = match statement.command {
            Command::Capture(capture) => (
                Want::Capture {
                    name: capture.name.value,
                    source: capture.source.value,
                },
                capture.next,
            ),
            Command::Expect(expect) => match expect.expectation {
                Expectation::Nothing => (Want::Nothing, expect.next),
                Expectation::Message(matcher) => (
                    Want::Message(matcher.resolve(&NoVariables, None).expect("resolves")),
                    expect.next,
                ),
                other => panic!("not a message expectation: {other:?}"),
            },
            other => panic!("not a wait: {other:?}"),
        };
        let now = Instant::now();
        Waiting {
            want,
            next,
            started: now,
            deadline: now + Duration::from_secs(1),
            within: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_capture_takes_the_first_message_that_has_the_value() {
        let frames = backlog(&[text("hello"), text(r#"{"id":"c-1"}"#), text(r#"{"id":2}"#)]);
        let capture = waiting("/capture id = json $.id");
        assert_eq!(
            capture.decide(&frames),
            Some(Verdict::Found {
                index: 1,
                value: Some("c-1".into())
            })
        );
        assert_eq!(capture.decide(&backlog(&[text("hello")])), None);
        assert_eq!(capture.want.label(), "capture id = json $.id");
    }

    #[test]
    fn capture_next_looks_at_the_next_message_only() {
        let capture = waiting("/capture next id = json $.id");
        let frames = backlog(&[Frame::Ping(vec![]), text("hello"), text(r#"{"id":1}"#)]);
        assert_eq!(
            capture.decide(&frames),
            Some(Verdict::Failed {
                index: 1,
                why: "the next message has no json $.id".into(),
                consume: true
            })
        );
        let frames = backlog(&[text(r#"{"id":1}"#)]);
        assert_eq!(
            capture.decide(&frames),
            Some(Verdict::Found {
                index: 0,
                value: Some("1".into())
            })
        );
    }

    #[test]
    fn expectations_scan_or_take_the_next_message() {
        let frames = backlog(&[text("a"), text("b")]);
        assert_eq!(
            waiting("/expect text b").decide(&frames),
            Some(Verdict::Found {
                index: 1,
                value: None
            })
        );
        assert!(matches!(
            waiting("/expect next text b").decide(&frames),
            Some(Verdict::Failed {
                index: 0,
                consume: true,
                ..
            })
        ));
        assert!(matches!(
            waiting("/expect nothing").decide(&frames),
            Some(Verdict::Failed {
                index: 0,
                consume: false,
                ..
            })
        ));
        assert_eq!(
            waiting("/expect nothing").decide(&backlog(&[Frame::Pong(vec![])])),
            None
        );
    }
}
