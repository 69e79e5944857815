//! Running one line: it is parsed by the command language ([`crate::command::parse_repl_line`],
//! the same parser `wsprobe run` uses) and the resulting command is carried out on the
//! session. Commands that only make sense in a script file get a clear message here;
//! `/echo`, `/pretty`, `/help` and `/quit` act on the REPL itself.

use std::time::Instant;

use crate::command::{Command, Expectation, Payload, ReplInput, Statement, parse_repl_line};
use crate::session::Outgoing;

use super::display::Tone;
use super::driver::{Busy, Driver, Waiting};

/// `${NAME}` at the prompt comes from the environment.
fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Driver {
    /// Runs or sends one line (see the module doc).
    pub(super) async fn execute(&mut self, line: String) {
        match parse_repl_line(&line) {
            Err(error) => {
                self.failed_checks += usize::from(!self.settings.interactive);
                let rendered = error.render_line(&line, self.painter_enabled());
                self.output.note(rendered.trim_end().to_owned());
            }
            Ok(ReplInput::Empty) => {}
            Ok(ReplInput::Text(text)) => {
                self.backlog.clear();
                // The typed line is already on screen (or in the user's input): not repeated.
                self.send(Outgoing::Text(text)).await;
            }
            Ok(ReplInput::Command(statement)) => self.run_command(statement, &line).await,
        }
    }

    fn painter_enabled(&self) -> bool {
        colored::control::SHOULD_COLORIZE.should_colorize()
    }

    async fn run_command(&mut self, statement: Statement, line: &str) {
        if let Some(target) = &statement.target {
            self.note(
                Tone::Bad,
                &format!(
                    "`@{}`: the prompt has one connection; named connections are for scripts (`wsprobe run`)",
                    target.value
                ),
            );
            return;
        }
        let keyword = statement.command.keyword();
        match statement.command {
            Command::Send { route, payload } => {
                let route = match route.resolve(&environment) {
                    Ok(route) => route,
                    Err(error) => return self.resolve_failed(&error, line),
                };
                let payload_json = match payload {
                    None => None,
                    Some(Payload::Json(json)) => match json.resolve(&environment) {
                        Ok(value) => Some(value.to_string()),
                        Err(error) => return self.resolve_failed(&error, line),
                    },
                    // Text is a string body as written, even if it looks like a number.
                    Some(Payload::Text(text)) => match text.resolve(&environment) {
                        Ok(text) => Some(serde_json::Value::String(text).to_string()),
                        Err(error) => return self.resolve_failed(&error, line),
                    },
                };
                let message = crate::message::route_tagged(
                    &route,
                    payload_json.as_deref(),
                    &self.settings.fields,
                );
                self.backlog.clear();
                self.send_tagged(message.to_string(), &message).await;
            }
            Command::Text(text) => match text.resolve(&environment) {
                Ok(text) => self.send_shown(Outgoing::Text(text)).await,
                Err(error) => self.resolve_failed(&error, line),
            },
            Command::Binary(data) => self.send_shown(Outgoing::Binary(data)).await,
            Command::Ping(data) => {
                let data = match data.map(|d| d.resolve(&environment)).transpose() {
                    Ok(data) => data.unwrap_or_default(),
                    Err(error) => return self.resolve_failed(&error, line),
                };
                self.send_shown(Outgoing::Ping(data.into_bytes())).await;
            }
            Command::Close { code, reason } => {
                let reason = match reason.map(|r| r.resolve(&environment)).transpose() {
                    Ok(reason) => reason.unwrap_or_default(),
                    Err(error) => return self.resolve_failed(&error, line),
                };
                let code = code.map_or(1000, |c| c.value);
                self.we_closed = true;
                self.send_shown(Outgoing::Close(Some((code, reason)))).await;
            }
            Command::Expect(expect) => {
                let within = expect
                    .within
                    .map_or(self.settings.expect_timeout, |w| w.value);
                let started = Instant::now();
                let matcher = match expect.expectation {
                    Expectation::Nothing => None,
                    Expectation::Message(matcher) => {
                        match matcher.resolve(&environment, self.last_echo.as_ref()) {
                            Ok(resolved) => Some(resolved),
                            Err(error) => return self.resolve_failed(&error, line),
                        }
                    }
                    Expectation::Status(_) | Expectation::Response(_) => {
                        return self.script_only(
                            "expect status/response",
                            "they check an @connections call (`/post`, `/get`, `/delete`)",
                        );
                    }
                };
                self.start_expect(Waiting {
                    matcher,
                    next: expect.next,
                    started,
                    deadline: started + within,
                    within,
                });
            }
            Command::Sleep(duration) => {
                self.busy = Some(Busy::Sleep {
                    until: Instant::now() + duration.value,
                });
            }
            Command::Echo(policy) => {
                self.settings.echo = policy.value;
                let name = match policy.value {
                    crate::cli::EchoPolicy::Body => "body: the echo of /send is its body field",
                    crate::cli::EchoPolicy::Full => "full: the echo of /send is the whole message",
                    crate::cli::EchoPolicy::Off => "off: /send expects no echo",
                };
                self.note(Tone::Info, &format!("echo {name}"));
            }
            Command::Pretty(on) => {
                self.settings.display.pretty = on;
                let state = if on { "on" } else { "off" };
                self.note(Tone::Info, &format!("pretty JSON {state}"));
            }
            Command::Help(topic) => {
                let text = match topic {
                    None => crate::command::help_text().to_owned(),
                    Some(name) => crate::command::help_for(&name.value).unwrap_or_else(|| {
                        format!("no command `{}`; /help lists them", name.value)
                    }),
                };
                self.output.note(text.trim_end().to_owned());
            }
            Command::Quit => self.quit(),
            Command::Connect(_) => self.script_only(
                keyword,
                "this prompt has its connection; start `wsprobe connect URL` for another",
            ),
            Command::Capture(_) => self.script_only(
                keyword,
                "captured variables are used by the lines of a script",
            ),
            Command::Post { .. } | Command::Get { .. } | Command::Delete { .. } => self
                .script_only(
                    keyword,
                    "it calls the @connections API, and `expect status` checks the answer",
                ),
        }
    }

    /// Sends a frame a command built, and shows it.
    async fn send_shown(&mut self, frame: Outgoing) {
        self.backlog.clear();
        self.show_sent(&frame, Instant::now());
        self.send(frame).await;
    }

    fn script_only(&mut self, keyword: &str, why: &str) {
        self.note(
            Tone::Bad,
            &format!("`/{keyword}` works in scripts only (`wsprobe run`): {why}"),
        );
    }

    fn resolve_failed(&mut self, error: &crate::command::ResolveError, line: &str) {
        self.failed_checks += usize::from(!self.settings.interactive);
        let rendered = error.render(line, "<prompt>", self.painter_enabled());
        self.output.note(rendered.trim_end().to_owned());
    }
}
