//! Running one line: it is parsed by the command language ([`wsprobe_core::command::parse_repl_line`],
//! the same parser `wsprobe run` uses) and the resulting command is carried out on the
//! session with the semantics it has in a script (`/capture` waits like `/expect` and sets
//! `${NAME}`; `/post`, `/get`, `/delete` call the `@connections` API, see [`super::calls`]).
//! `/connect` and `@name` get a clear message (one connection per prompt); `/echo`,
//! `/pretty`, `/help` and `/quit` act on the REPL itself.

use std::time::Instant;

use crate::run::management::Method;
use wsprobe_core::command::{Command, Expectation, Payload, ReplInput, Statement, parse_repl_line};
use wsprobe_core::session::Outgoing;

use super::display::Tone;
use super::driver::{Busy, Driver, Waiting, Want};

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
                let route = match route.resolve(&self.vars) {
                    Ok(route) => route,
                    Err(error) => return self.resolve_failed(&error, line),
                };
                let payload_json = match payload {
                    None => None,
                    Some(Payload::Json(json)) => match json.resolve(&self.vars) {
                        Ok(value) => Some(value.to_string()),
                        Err(error) => return self.resolve_failed(&error, line),
                    },
                    // Text is a string body as written, even if it looks like a number.
                    Some(Payload::Text(text)) => match text.resolve(&self.vars) {
                        Ok(text) => Some(serde_json::Value::String(text).to_string()),
                        Err(error) => return self.resolve_failed(&error, line),
                    },
                };
                let message = wsprobe_core::message::route_tagged(
                    &route,
                    payload_json.as_deref(),
                    &self.settings.fields,
                );
                self.backlog.clear();
                self.send_tagged(message.to_string(), &message).await;
            }
            Command::Text(text) => match text.resolve(&self.vars) {
                Ok(text) => self.send_shown(Outgoing::Text(text)).await,
                Err(error) => self.resolve_failed(&error, line),
            },
            Command::Binary(data) => self.send_shown(Outgoing::Binary(data)).await,
            Command::Ping(data) => {
                let data = match data.map(|d| d.resolve(&self.vars)).transpose() {
                    Ok(data) => data.unwrap_or_default(),
                    Err(error) => return self.resolve_failed(&error, line),
                };
                self.send_shown(Outgoing::Ping(data.into_bytes())).await;
            }
            Command::Close { code, reason } => {
                let reason = match reason.map(|r| r.resolve(&self.vars)).transpose() {
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
                let want = match expect.expectation {
                    Expectation::Nothing => Want::Nothing,
                    Expectation::Message(matcher) => {
                        match matcher.resolve(&self.vars, self.last_echo.as_ref()) {
                            Ok(resolved) => Want::Message(resolved),
                            Err(error) => return self.resolve_failed(&error, line),
                        }
                    }
                    Expectation::Status(status) => return self.expect_status(status.value),
                    Expectation::Response(matcher) => {
                        return self.expect_response(&matcher, line);
                    }
                };
                self.start_expect(Waiting {
                    want,
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
                    wsprobe_core::options::EchoPolicy::Body => {
                        "body: the echo of /send is its body field"
                    }
                    wsprobe_core::options::EchoPolicy::Full => {
                        "full: the echo of /send is the whole message"
                    }
                    wsprobe_core::options::EchoPolicy::Off => "off: /send expects no echo",
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
            Command::Connect(_) => self.script_only(
                keyword,
                "the prompt has one connection; run another `wsprobe connect URL` beside this one",
            ),
            Command::Capture(capture) => {
                let within = capture.timeout(self.settings.expect_timeout);
                let started = Instant::now();
                self.start_expect(Waiting {
                    want: Want::Capture {
                        name: capture.name.value,
                        source: capture.source.value,
                    },
                    next: capture.next,
                    started,
                    deadline: started + within,
                    within,
                });
            }
            Command::Post {
                connection_id,
                payload,
            } => {
                // As in a script: text is posted as written, JSON as JSON.
                let body = match payload {
                    None => Ok(String::new()),
                    Some(Payload::Text(text)) => text.resolve(&self.vars),
                    Some(Payload::Json(json)) => json.resolve(&self.vars).map(|v| v.to_string()),
                };
                match body {
                    Ok(body) => self.start_call(Method::Post, &connection_id, Some(body), line),
                    Err(error) => self.resolve_failed(&error, line),
                }
            }
            Command::Get { connection_id } => {
                self.start_call(Method::Get, &connection_id, None, line);
            }
            Command::Delete { connection_id } => {
                self.start_call(Method::Delete, &connection_id, None, line);
            }
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

    pub(super) fn resolve_failed(
        &mut self,
        error: &wsprobe_core::command::ResolveError,
        line: &str,
    ) {
        self.failed_checks += usize::from(!self.settings.interactive);
        let rendered = error.render(line, "<prompt>", self.painter_enabled());
        self.output.note(rendered.trim_end().to_owned());
    }
}
