//! `/post`, `/get` and `/delete` at the prompt: calls to the stage's `@connections` API
//! (the URL derived from the connect URL, the same client settings), made through the
//! script runner's own [`management::call`], and `/expect status|response`, checked
//! against the last answer with the command language's matchers, as in a script.
//!
//! A call runs on its own task: the session stays *busy* (lines queue up, frames keep
//! being shown, Ctrl-C cancels) until the answer is shown as `← 200 OK` or
//! `← 410 Gone GoneException`, with the body below it.

use std::time::Instant;

use crate::run::management::{self, Method};
use wsprobe_core::command::{FrameView, Matcher, Spanned, Template};

use super::display::{self, Tone};
use super::driver::{Busy, Call, Driver};

impl Driver {
    /// Starts `method` on the connection `connection_id` (a template: `${me}`), with
    /// `body` for a POST. The answer arrives through [`Driver::on_answer`].
    pub(super) fn start_call(
        &mut self,
        method: Method,
        connection_id: &Template,
        body: Option<String>,
        line: &str,
    ) {
        let id = match connection_id.resolve(&self.vars) {
            Ok(id) => id,
            Err(error) => return self.resolve_failed(&error, line),
        };
        let target = self.settings.management.clone();
        let Some(url) = management::connection_url(&target.base, &id) else {
            self.failed_checks += usize::from(!self.settings.interactive);
            let base = target.base;
            return self.note(Tone::Bad, &format!("`{base}` cannot take a connection id"));
        };
        let verb = match method {
            Method::Post => "POST",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        };
        let what = format!("{verb} {url}");
        let shown = match &body {
            Some(body) if !body.is_empty() => format!("{what} {body}"),
            _ => what.clone(),
        };
        let stamp = self.stamp(Instant::now());
        self.note(Tone::Sent, &format!("{stamp}> {shown}"));
        let task =
            tokio::spawn(async move { management::call(method, &url, body, &target.client).await });
        self.busy = Some(Busy::Call(Call { task, what }));
    }

    /// Shows the answer of the call in flight (or why there is none) and keeps it for
    /// `/expect status|response`.
    pub(super) fn on_answer(&mut self, answer: Result<management::Response, String>) {
        let Some(Busy::Call(call)) = self.busy.take() else {
            return;
        };
        match answer {
            Ok(response) => {
                let tone = if (200..300).contains(&response.status) {
                    Tone::Good
                } else {
                    Tone::Bad
                };
                let stamp = self.stamp(Instant::now());
                let mut text = format!("{stamp}{}", status_line(&response));
                if !response.body.is_empty() {
                    text.push('\n');
                    text.push_str(&display::message_text(
                        &response.body,
                        self.settings.display.pretty,
                    ));
                }
                self.note(tone, &text);
                self.last_response = Some(response);
            }
            Err(error) => {
                self.failed_checks += 1;
                self.last_response = None;
                let why = format!("✗ {}: {error}", call.what);
                self.note(Tone::Bad, &why);
            }
        }
    }

    /// `/expect status CODE`: the status of the last answer.
    pub(super) fn expect_status(&mut self, expected: u16) {
        let Some(response) = &self.last_response else {
            return self.no_answer(&format!("status {expected}"));
        };
        if response.status == expected {
            self.note(Tone::Good, &format!("✓ expect status {expected}"));
        } else {
            let text = format!(
                "✗ expect status {expected}: the status is {}\n    answer: {}",
                response.status,
                answer_text(response)
            );
            self.failed_checks += 1;
            self.note(Tone::Bad, &text);
        }
    }

    /// `/expect response MATCHER`: the body of the last answer, matched as a text message.
    pub(super) fn expect_response(&mut self, matcher: &Spanned<Matcher>, line: &str) {
        let resolved = match matcher.resolve(&self.vars, None) {
            Ok(resolved) => resolved,
            Err(error) => return self.resolve_failed(&error, line),
        };
        let Some(response) = &self.last_response else {
            return self.no_answer(&format!("response {}", resolved.describe()));
        };
        match resolved.check(&FrameView::Text(&response.body)) {
            Ok(()) => {
                let text = format!("✓ expect response {}", resolved.describe());
                self.note(Tone::Good, &text);
            }
            Err(why) => {
                let text = format!(
                    "✗ expect response {}: {why}\n    answer: {}",
                    resolved.describe(),
                    answer_text(response)
                );
                self.failed_checks += 1;
                self.note(Tone::Bad, &text);
            }
        }
    }

    fn no_answer(&mut self, what: &str) {
        self.failed_checks += 1;
        self.note(
            Tone::Bad,
            &format!("✗ expect {what}: no /post, /get or /delete answered before this line"),
        );
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

/// `← 410 Gone GoneException`: the status, its reason phrase and AWS's error type.
pub fn status_line(response: &management::Response) -> String {
    let mut line = format!("← {}", response.status);
    let reason = hyper::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|status| status.canonical_reason());
    if let Some(reason) = reason {
        line.push(' ');
        line.push_str(reason);
    }
    if let Some(kind) = &response.error_type {
        line.push(' ');
        line.push_str(kind);
    }
    line
}

/// An answer in one line, for failures: `410 {"message":"Gone"}`.
fn answer_text(response: &management::Response) -> String {
    if response.body.is_empty() {
        response.status.to_string()
    } else {
        format!("{} {}", response.status, response.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str, error_type: Option<&str>) -> management::Response {
        management::Response {
            status,
            body: body.to_owned(),
            error_type: error_type.map(str::to_owned),
        }
    }

    #[test]
    fn status_lines_name_the_reason_and_the_aws_error() {
        assert_eq!(status_line(&response(200, "", None)), "← 200 OK");
        assert_eq!(
            status_line(&response(410, "{}", Some("GoneException"))),
            "← 410 Gone GoneException"
        );
        assert_eq!(status_line(&response(599, "", None)), "← 599");
    }

    #[test]
    fn answers_in_one_line() {
        assert_eq!(answer_text(&response(204, "", None)), "204");
        assert_eq!(
            answer_text(&response(410, r#"{"message":"Gone"}"#, None)),
            r#"410 {"message":"Gone"}"#
        );
    }
}
