//! Running one line: it is parsed by the command language ([`wsprobe_core::command::parse_repl_line`],
//! the same parser `wsprobe run` uses) and the statement goes to the command engine, the
//! one scripts run on; what it did comes back as data and is shown here. Only what belongs
//! to the prompt is handled here: `/pretty`, `/help`, `/quit`, and a clear message for
//! `/connect` and `@name` (one connection per prompt).

use std::time::Instant;

use wsprobe_core::command::engine::{Done, Failed, Fault};
use wsprobe_core::command::{
    Command, EchoPolicy, Payload, ReplInput, Statement, Template, parse_repl_line,
};
use wsprobe_core::session::Outgoing;

use super::calls::status_line;
use super::display::{self, Tone};
use super::driver::{Driver, Running, SESSION};

/// At most this many received messages are listed under a failure.
const SHOWN_RECEIVED: usize = 5;

impl Driver {
    /// Runs or sends one line (see the module doc).
    pub(super) fn execute(&mut self, line: String) {
        match parse_repl_line(&line) {
            Err(error) => {
                self.failed_checks += 1;
                let rendered = error.render_line(&line, self.painter_enabled());
                self.output.note(rendered.trim_end().to_owned());
            }
            Ok(ReplInput::Empty) => {}
            Ok(ReplInput::Text(text)) => {
                self.note_bare_word(&text);
                // Sent as typed: no `${…}`, and not shown again (it is on screen already).
                let statement = Statement::text_as_typed(text);
                self.start(statement, "send".into(), line);
                if let Some(running) = &mut self.running {
                    running.show_sent = false;
                }
            }
            Ok(ReplInput::Command(statement)) => self.run_command(statement, line),
        }
    }

    /// A bare `help`, `quit` or `exit` at the prompt is sent as typed, like any line
    /// without a slash; the first time, a note asks whether the command was meant.
    fn note_bare_word(&mut self, text: &str) {
        if !self.settings.interactive || self.noted_bare_word {
            return;
        }
        let meant = match text.trim() {
            "help" => "/help",
            "quit" | "exit" => "/quit",
            _ => return,
        };
        self.noted_bare_word = true;
        let word = text.trim();
        self.note(
            Tone::Info,
            &format!(
                "`{word}` was sent as a text frame, as typed; did you mean {meant}? \
                 (commands start with /)"
            ),
        );
    }

    fn painter_enabled(&self) -> bool {
        colored::control::SHOULD_COLORIZE.should_colorize()
    }

    fn run_command(&mut self, statement: Statement, line: String) {
        if let Some(target) = &statement.target {
            self.failed_checks += 1;
            self.note(
                Tone::Bad,
                &format!(
                    "`@{}`: the prompt has one connection; named connections are for scripts (`wsprobe run`)",
                    target.value
                ),
            );
            return;
        }
        match &statement.command {
            Command::Pretty(on) => {
                self.settings.display.pretty = *on;
                let state = if *on { "on" } else { "off" };
                self.note(Tone::Info, &format!("pretty JSON {state}"));
            }
            Command::Help(topic) => {
                let text = match topic {
                    None => wsprobe_core::command::help_text().to_owned(),
                    Some(name) => {
                        wsprobe_core::command::help_for(&name.value).unwrap_or_else(|| {
                            format!("no command `{}`; /help lists them", name.value)
                        })
                    }
                };
                self.output.note(text.trim_end().to_owned());
            }
            Command::Quit => self.quit(),
            Command::Connect(_) => {
                self.failed_checks += 1;
                self.note(
                    Tone::Bad,
                    "`/connect` works in scripts only (`wsprobe run`): the prompt has one connection; run another `wsprobe connect URL` beside this one",
                );
            }
            Command::Close { .. } => {
                // Set first: the server's answer can arrive before the send returns.
                self.we_closed = true;
                self.start(statement, "close".into(), line);
            }
            Command::Sleep(_) => self.start(statement, "wait".into(), line),
            Command::Post {
                connection_id,
                payload,
            } => {
                let what = self.show_call("POST", connection_id, payload.as_ref());
                self.start(statement, what, line);
            }
            Command::Get { connection_id } => {
                let what = self.show_call("GET", connection_id, None);
                self.start(statement, what, line);
            }
            Command::Delete { connection_id } => {
                let what = self.show_call("DELETE", connection_id, None);
                self.start(statement, what, line);
            }
            command => {
                let what = command.keyword().to_owned();
                self.start(statement, what, line);
            }
        }
    }

    /// Shows the `@connections` call about to be made (`> POST http://…/@connections/id
    /// body`) and returns what it is, for "… cancelled". When its variables cannot be
    /// filled in, nothing is shown: the engine reports why.
    fn show_call(
        &mut self,
        verb: &str,
        connection_id: &Template,
        payload: Option<&Payload>,
    ) -> String {
        let described = match self.engine.try_lock() {
            Ok(engine) => {
                let url = connection_id
                    .resolve(&engine.vars)
                    .ok()
                    .and_then(|id| engine.connection_url(Some(SESSION), &id));
                let body = match payload {
                    Some(Payload::Text(text)) => text.resolve(&engine.vars).ok(),
                    Some(Payload::Json(json)) => {
                        json.resolve(&engine.vars).ok().map(|v| v.to_string())
                    }
                    None => None,
                };
                url.map(|url| {
                    let url = wsprobe_core::client::redacted_url(&url);
                    (format!("{verb} {url}"), body)
                })
            }
            Err(_) => None,
        };
        let Some((what, body)) = described else {
            return verb.to_owned();
        };
        let shown = match body {
            Some(body) if !body.is_empty() => format!("{what} {body}"),
            _ => what.clone(),
        };
        let stamp = self.stamp(Instant::now());
        self.note(Tone::Sent, &format!("{stamp}> {shown}"));
        what
    }

    /// Shows what a command did (or why it failed).
    pub(super) fn on_done(&mut self, result: Result<Done, Fault>, running: &Running) {
        // The recorder hears about typed lines only, not the driver's own reconnects.
        if let Some(recorder) = &self.recorder
            && running.what != "reconnect"
        {
            recorder.done(&result);
        }
        // A reconnect (its own, or one an `/expect` or `/wait` in flight made) that gave
        // up: each attempt was shown, and the error ends the session (exit 3).
        let gave_up = matches!(
            &result,
            Err(Fault::Failed(failed)) if failed.kind == wsprobe_core::command::engine::FailedKind::Connect
        );
        if (running.what == "reconnect" || gave_up) && self.on_reconnect_done(&result) {
            return;
        }
        match result {
            Ok(done) => self.show_done(done, running.show_sent),
            Err(Fault::Resolve(error)) => {
                self.failed_checks += 1;
                let rendered = error.render(&running.line, "<prompt>", self.painter_enabled());
                self.output.note(rendered.trim_end().to_owned());
            }
            Err(Fault::Failed(failed)) => {
                self.failed_checks += 1;
                let text = failed_text(&failed);
                self.note(Tone::Bad, &text);
                if failed.stalled && !self.settings.interactive {
                    // Every later line would wait out the same limit on a server that
                    // does not read: stop taking lines and leave (exit 1).
                    self.note(
                        Tone::Bad,
                        "the server stopped reading; the remaining input is not sent",
                    );
                    self.quit();
                }
            }
        }
    }

    pub(super) fn show_done(&mut self, done: Done, show_sent: bool) {
        match done {
            Done::Sent { frame, at, echo } => {
                if show_sent {
                    self.show_sent(&frame, at);
                }
                if let Some(expected) = echo
                    && let Some(outcome) =
                        self.ticks.expect(expected, at, self.settings.echo_timeout)
                {
                    self.report_echo(outcome);
                }
                if matches!(frame, Outgoing::Close(_)) {
                    self.we_closed = true;
                }
            }
            Done::Matched {
                what,
                frame,
                started,
            } => {
                let when = when(frame.at, started);
                self.note(Tone::Good, &format!("✓ {what} ({when})"));
            }
            Done::Captured {
                name,
                value,
                frame,
                started,
            } => {
                let shown = if !self.settings.show_secrets
                    && wsprobe_core::command::vars::looks_secret(&name)
                {
                    wsprobe_core::secret::REDACTED.to_owned()
                } else {
                    // Taken from a frame: the server's text.
                    wsprobe_core::text::one_line(&value)
                };
                let when = when(frame.at, started);
                self.note(
                    Tone::Good,
                    &format!("✓ capture ${{{name}}} = {shown} ({when})"),
                );
            }
            Done::Silence { within } => {
                let took = display::human_duration(within);
                self.note(Tone::Good, &format!("✓ expect nothing: silence for {took}"));
            }
            Done::Checked { what } => self.note(Tone::Good, &format!("✓ {what}")),
            Done::Answered { response } => {
                let tone = if (200..300).contains(&response.status) {
                    Tone::Good
                } else {
                    Tone::Bad
                };
                let stamp = self.stamp(Instant::now());
                let mut text = format!("{stamp}{}", status_line(&response));
                if !response.body.is_empty() {
                    text.push('\n');
                    let body = display::message_text(&response.body, self.settings.display.pretty);
                    text.push_str(&wsprobe_core::text::escape(
                        &body,
                        wsprobe_core::text::Newlines::Keep,
                    ));
                }
                self.note(tone, &text);
            }
            Done::Echo(policy) => {
                let name = match policy {
                    EchoPolicy::Body => "body: the echo of /send is its body field",
                    EchoPolicy::Full => "full: the echo of /send is the whole message",
                    EchoPolicy::Off => "off: /send expects no echo",
                };
                self.note(Tone::Info, &format!("echo {name}"));
            }
            Done::KeepAlive { keepalive, stats } => {
                let setting = match keepalive {
                    Some(keepalive) => {
                        let what = match &keepalive.message {
                            Some(text) => {
                                format!("the text {}", wsprobe_core::text::one_line(text))
                            }
                            None => "a ping".to_owned(),
                        };
                        format!(
                            "keepalive: {what} after every {} without sending",
                            display::human_duration(keepalive.every)
                        )
                    }
                    None => "keepalive off".to_owned(),
                };
                self.note(
                    Tone::Info,
                    &format!(
                        "{setting}; {} sent, {} answered",
                        stats.sent, stats.answered
                    ),
                );
            }
            Done::Slept | Done::NotMine | Done::Reconnected | Done::Opened => {}
        }
    }

    /// The `-t` time-of-day prefix, or nothing.
    fn stamp(&self, at: Instant) -> String {
        if !self.settings.display.timestamps {
            return String::new();
        }
        let wall = std::time::SystemTime::now()
            .checked_sub(at.elapsed())
            .unwrap_or_else(std::time::SystemTime::now);
        format!("{} ", display::time_of_day(wall))
    }
}

/// `0.4 ms` after the wait started, or `already received` for a frame that was waiting
/// in the inbox.
fn when(arrived: Instant, started: Instant) -> String {
    if arrived >= started {
        display::short_duration(arrived.duration_since(started))
    } else {
        "already received".to_owned()
    }
}

/// A failure as the prompt shows it: `✗ expect json "two": nothing matched within 2s`,
/// then what was received, the answer checked, and a hint.
fn failed_text(failed: &Failed) -> String {
    let mut text = format!("✗ {}", failed.command);
    match &failed.label {
        Some(label) => text.push_str(&format!(": {label}")),
        None => {
            // The headline says what went wrong when there is no short reason.
            let why = failed
                .message
                .split_once(": ")
                .map_or(failed.message.as_str(), |(_, why)| why);
            text.push_str(&format!(": {why}"));
        }
    }
    if let Some(received) = &failed.received {
        for message in received.iter().take(SHOWN_RECEIVED) {
            text.push_str(&format!("\n    received: {message}"));
        }
    }
    if let Some(response) = &failed.response {
        text.push_str(&format!("\n    answer: {response}"));
    }
    if let Some(hint) = &failed.hint {
        text.push_str(&format!("\n    hint: {hint}"));
    }
    text
}
