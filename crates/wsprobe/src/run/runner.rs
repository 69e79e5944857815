//! Executes parsed scripts on live sessions and returns plain result data.
//!
//! Before anything connects, [`plan`] resolves which `connect` every command acts on and
//! checks what the parser cannot know (a `connect` without a URL and no `--url`, a literal
//! URL that is not one, a connection used outside the test that opened it). Then each
//! test runs command by command; the first failing command ends the test, and the next
//! test runs.
//!
//! Connections: those opened before the first `test` line (the implicit test) are shared
//! by every test of the file and closed at its end; those opened inside a `test` block are
//! closed when that test ends, so a failed test leaves nothing behind for the next one.

// A command's `Result<(), Failure>` is built once per command, next to a network round
// trip: the size of the error variant costs nothing measurable, boxing would cost noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use wsprobe_core::client::{self, ClientConfig, ConnectError};
use wsprobe_core::command::{
    Capture, Command, Connect, ConnectOption, Diagnostic, Expect, Expectation, FrameView, Matcher,
    Payload, ResolveError, Script, Span, Spanned, Statement,
};
use wsprobe_core::message::{self, RouteFields};
use wsprobe_core::options::EchoPolicy;
use wsprobe_core::session::{Frame, Incoming, Outgoing, Session, WaitError};
use wsprobe_core::values::Header;

use super::management::{self, Method};
use super::result::Failure;
use super::result::{FailureKind, FileResult, TestResult};
use super::vars::{Secrets, Vars};

/// How long closing a connection at the end of a test may wait for the server's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Everything the runner needs from the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `--url`: the URL of a `connect` that names none.
    pub url: Option<String>,
    /// `--management-url`: the `@connections` base URL (else derived from the connection).
    pub management_url: Option<Url>,
    /// `--timeout`: the wait of an expectation without `within`.
    pub timeout: Duration,
    /// The connection options every `connect` starts from (-H, --auth, --api-key, …).
    pub client: ClientConfig,
    /// `--route-field` and `--body-field`.
    pub fields: RouteFields,
    /// `--echo`: the echo policy at the start of each file.
    pub echo: EchoPolicy,
    /// `--fail-fast`: stop after the first failing test.
    pub fail_fast: bool,
}

/// Hears about each test as it finishes, so the summary can be printed as the run goes.
pub trait Progress {
    /// A test finished (its failure already redacted).
    fn test_finished(&mut self, file: &str, test: &TestResult);
}

/// What the runner knows about a file before it connects: for every command, the
/// `connect` it acts on (an index into `connects`).
#[derive(Debug)]
pub struct Plan {
    connects: Vec<PlannedConnect>,
    /// Per test, per statement: the connect the statement acts on (for commands that use a
    /// connection), or the most recent connect above it (for post/get/delete).
    targets: Vec<Vec<Option<usize>>>,
}

#[derive(Debug)]
struct PlannedConnect {
    /// The test whose statements include the `connect`.
    test: usize,
    /// The connect's line, for naming an unnamed connection.
    line: usize,
    /// The name after `connect`, if any.
    name: Option<String>,
}

impl PlannedConnect {
    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("`{name}`"),
            None => format!("the connection of line {}", self.line),
        }
    }
}

/// Resolves the connection of every command and checks, before anything connects, what
/// only the runner can: every error found, as diagnostics for [`Script::render`].
pub fn plan(script: &Script, options: &RunOptions) -> Result<Plan, Vec<Diagnostic>> {
    let mut connects: Vec<PlannedConnect> = Vec::new();
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for (test_index, test) in script.tests.iter().enumerate() {
        let mut test_targets = Vec::new();
        for statement in &test.statements {
            let mut target = None;
            if let Command::Connect(connect) = &statement.command {
                check_connect_url(connect, statement, options, &mut errors);
                connects.push(PlannedConnect {
                    test: test_index,
                    line: statement.span.line,
                    name: connect.name.as_ref().map(|name| name.value.clone()),
                });
            } else if statement.command.uses_connection() {
                let found = match &statement.target {
                    Some(name) => connects
                        .iter()
                        .rposition(|c| c.name.as_deref() == Some(name.value.as_str())),
                    None => connects.len().checked_sub(1),
                };
                if let Some(index) = found {
                    let opened = &connects[index];
                    let opened_in = &script.tests[opened.test];
                    if opened.test != test_index && !opened_in.implicit {
                        let span = statement
                            .target
                            .as_ref()
                            .map_or(statement.keyword, |t| t.span);
                        errors.push(Diagnostic {
                            message: format!(
                                "{} was opened in test \"{}\" and is closed when that test ends",
                                opened.label(),
                                opened_in.name
                            ),
                            span,
                            label: None,
                            hint: Some(
                                "open it in this test, or above the first `test` line to share it between tests"
                                    .into(),
                            ),
                        });
                    }
                }
                // The parser already reported a command with no connection above it.
                target = found;
            } else if matches!(
                statement.command,
                Command::Post { .. } | Command::Get { .. } | Command::Delete { .. }
            ) {
                target = connects.len().checked_sub(1);
                if target.is_none() && options.management_url.is_none() && options.url.is_none() {
                    errors.push(Diagnostic {
                        message: "no @connections URL for this call".into(),
                        span: statement.keyword,
                        label: None,
                        hint: Some(
                            "pass --management-url URL or --url URL, or `connect` above this line"
                                .into(),
                        ),
                    });
                }
            }
            test_targets.push(target);
        }
        targets.push(test_targets);
    }
    if errors.is_empty() {
        Ok(Plan { connects, targets })
    } else {
        Err(errors)
    }
}

fn check_connect_url(
    connect: &Connect,
    statement: &Statement,
    options: &RunOptions,
    errors: &mut Vec<Diagnostic>,
) {
    match &connect.url {
        None if options.url.is_none() => errors.push(Diagnostic {
            message: "this `connect` names no URL, and there is no --url".into(),
            span: statement.keyword,
            label: None,
            hint: Some("pass --url ws://HOST/STAGE, or write the URL after `connect`".into()),
        }),
        Some(url) => {
            if let Some(Err(ConnectError::InvalidUrl { reason, .. })) =
                url.as_literal().map(client::parse_url)
            {
                errors.push(Diagnostic {
                    message: format!("invalid URL: {reason}"),
                    span: url.span,
                    label: None,
                    hint: None,
                });
            }
        }
        None => {}
    }
}

/// One open (or ended) connection of the run.
struct Conn {
    session: Session,
    /// The last route-tagged message sent on it, for `expect echo`.
    last_sent: Option<Value>,
}

/// The state of one file's run.
struct FileRun<'a> {
    script: &'a Script,
    plan: &'a Plan,
    options: &'a RunOptions,
    vars: Vars,
    secrets: &'a mut Secrets,
    /// Open connections, by index into the plan's connects.
    sessions: HashMap<usize, Conn>,
    /// The URL each connect used (kept after it closes), for post/get/delete.
    urls: HashMap<usize, Url>,
    echo: EchoPolicy,
    last_response: Option<management::Response>,
    /// The first connect that failed where a connection was expected (for exit code 3).
    connect_error: Option<ConnectError>,
    /// The connects (plan indexes) that failed: commands on them fail as connect failures.
    failed_connects: Vec<usize>,
}

/// Runs every test of `script`, telling `progress` as each one finishes. Stops after the
/// first failing test when `options.fail_fast`. Also returns the first error of a
/// `connect` that should have succeeded, for the exit code.
pub async fn run_file(
    script: &Script,
    plan: &Plan,
    options: &RunOptions,
    vars: Vars,
    secrets: &mut Secrets,
    progress: &mut dyn Progress,
) -> (FileResult, Option<ConnectError>) {
    let started = Instant::now();
    let mut run = FileRun {
        script,
        plan,
        options,
        vars,
        secrets,
        sessions: HashMap::new(),
        urls: HashMap::new(),
        echo: options.echo,
        last_response: None,
        connect_error: None,
        failed_connects: Vec::new(),
    };
    let mut tests = Vec::new();
    for (index, test) in script.tests.iter().enumerate() {
        let test_started = Instant::now();
        let mut failure = None;
        for (position, statement) in test.statements.iter().enumerate() {
            let target = plan.targets[index][position];
            if let Err(failed) = run.statement(statement, target).await {
                failure = Some(failed);
                break;
            }
        }
        if !test.implicit {
            run.close_test_connections(index).await;
        }
        if let Some(failure) = &mut failure {
            failure.redact(run.secrets);
        }
        let result = TestResult {
            name: run.secrets.redact(&test.name),
            line: test.span.line,
            duration: test_started.elapsed(),
            failure,
        };
        progress.test_finished(&script.file_name, &result);
        let failed = !result.passed();
        tests.push(result);
        if failed && options.fail_fast {
            break;
        }
    }
    run.close_all().await;
    let result = FileResult {
        file: script.file_name.clone(),
        tests,
        duration: started.elapsed(),
    };
    (result, run.connect_error)
}

impl FileRun<'_> {
    async fn statement(
        &mut self,
        statement: &Statement,
        target: Option<usize>,
    ) -> Result<(), Failure> {
        match &statement.command {
            Command::Connect(connect) => self.connect(statement, connect).await,
            Command::Send { route, payload } => {
                let route = self.resolve(route)?;
                let body = match payload {
                    Some(payload) => Some(
                        payload
                            .resolve(&self.vars)
                            .map_err(|e| self.resolve_failure(&e))?,
                    ),
                    None => None,
                };
                let body_text = body.as_ref().map(Value::to_string);
                let message =
                    message::route_tagged(&route, body_text.as_deref(), &self.options.fields);
                let text = message.to_string();
                let conn = self.conn(statement, target)?;
                conn.last_sent = Some(message);
                self.send(statement, target, Outgoing::Text(text)).await
            }
            Command::Text(text) => {
                let text = self.resolve(text)?;
                self.send(statement, target, Outgoing::Text(text)).await
            }
            Command::Binary(data) => {
                self.send(statement, target, Outgoing::Binary(data.clone()))
                    .await
            }
            Command::Ping(data) => {
                let data = match data {
                    Some(data) => self.resolve(data)?.into_bytes(),
                    None => Vec::new(),
                };
                self.send(statement, target, Outgoing::Ping(data)).await
            }
            Command::Close { code, reason } => {
                let code = code.as_ref().map_or(1000, |code| code.value);
                let reason = match reason {
                    Some(reason) => self.resolve(reason)?,
                    None => String::new(),
                };
                self.send(statement, target, Outgoing::Close(Some((code, reason))))
                    .await
            }
            Command::Expect(expect) => self.expect(statement, target, expect).await,
            Command::Capture(capture) => self.capture(statement, target, capture).await,
            Command::Sleep(duration) => {
                tokio::time::sleep(duration.value).await;
                Ok(())
            }
            Command::Post {
                connection_id,
                payload,
            } => {
                let body = match payload {
                    Some(Payload::Text(text)) => self.resolve(text)?,
                    Some(Payload::Json(json)) => json
                        .resolve(&self.vars)
                        .map_err(|e| self.resolve_failure(&e))?
                        .to_string(),
                    None => String::new(),
                };
                self.manage(statement, target, Method::Post, connection_id, Some(body))
                    .await
            }
            Command::Get { connection_id } => {
                self.manage(statement, target, Method::Get, connection_id, None)
                    .await
            }
            Command::Delete { connection_id } => {
                self.manage(statement, target, Method::Delete, connection_id, None)
                    .await
            }
            Command::Echo(policy) => {
                self.echo = policy.value;
                Ok(())
            }
            // Prompt-only commands are syntax errors in a script; nothing to do.
            Command::Pretty(_) | Command::Help(_) | Command::Quit => Ok(()),
        }
    }

    fn failure(&self, kind: FailureKind, message: impl Into<String>, span: Span) -> Failure {
        Failure::new(
            kind,
            message,
            &self.script.file_name,
            span,
            self.script.source_line(span.line),
        )
    }

    fn resolve_failure(&self, error: &ResolveError) -> Failure {
        let mut failure = self.failure(FailureKind::Error, error.to_string(), error.span());
        failure.hint = error.hint();
        failure
    }

    fn resolve(&self, template: &wsprobe_core::command::Template) -> Result<String, Failure> {
        template
            .resolve(&self.vars)
            .map_err(|e| self.resolve_failure(&e))
    }

    fn label_of(&self, target: Option<usize>) -> String {
        target
            .and_then(|target| self.plan.connects.get(target))
            .map_or_else(|| "no connection".to_owned(), PlannedConnect::label)
    }

    /// The open connection a command acts on.
    fn conn(&mut self, statement: &Statement, target: Option<usize>) -> Result<&mut Conn, Failure> {
        let Some(target) = target else {
            return Err(self.failure(
                FailureKind::Error,
                "no connection to act on",
                statement.keyword,
            ));
        };
        if !self.sessions.contains_key(&target) {
            let label = self.label_of(Some(target));
            let line = self.plan.connects[target].line;
            // A command on a connection whose connect failed fails for the same reason.
            let kind = if self.failed_connects.contains(&target) {
                FailureKind::Connect
            } else {
                FailureKind::Error
            };
            return Err(self
                .failure(
                    kind,
                    format!("{label} is not open"),
                    statement
                        .target
                        .as_ref()
                        .map_or(statement.keyword, |t| t.span),
                )
                .hint(format!("its `connect` (line {line}) did not succeed")));
        }
        Ok(self
            .sessions
            .get_mut(&target)
            .expect("checked just above that the session is there"))
    }

    async fn send(
        &mut self,
        statement: &Statement,
        target: Option<usize>,
        frame: Outgoing,
    ) -> Result<(), Failure> {
        let limit = self.options.timeout;
        let conn = self.conn(statement, target)?;
        // A server that stopped reading would block the write forever once the socket's
        // buffers fill; like every wait, a send gives up after the default timeout.
        let Ok(sent) = tokio::time::timeout(limit, conn.session.send(frame)).await else {
            return Err(self
                .failure(
                    FailureKind::Error,
                    format!(
                        "could not {} within {}: the server is not reading",
                        statement.command.keyword(),
                        humantime::format_duration(limit)
                    ),
                    statement.keyword,
                )
                .hint("raise --timeout if the server is just slow"));
        };
        let ending = conn.session.ending().map(ToString::to_string);
        sent.map_err(|error| {
            let failure = self.failure(
                FailureKind::Error,
                format!("could not {}: {error}", statement.command.keyword()),
                statement.keyword,
            );
            match ending {
                Some(ending) => failure.hint(format!("the connection {ending}")),
                None => failure,
            }
        })
    }

    async fn connect(&mut self, statement: &Statement, connect: &Connect) -> Result<(), Failure> {
        let index = self
            .plan
            .connects
            .iter()
            .position(|c| c.line == statement.span.line)
            .expect("the plan has an entry for every connect");
        let url_text = match &connect.url {
            Some(url) => self.resolve(url)?,
            None => self.options.url.clone().unwrap_or_default(),
        };
        let url_span = connect
            .url
            .as_ref()
            .map_or(statement.keyword, |url| url.span);
        let url = client::parse_url(&url_text)
            .map_err(|error| self.failure(FailureKind::Error, error.to_string(), url_span))?;
        let mut config = self.options.client.clone();
        for option in &connect.options {
            match &option.value {
                ConnectOption::Auth(secret) => {
                    let value = self.resolve(&secret.0)?;
                    self.secrets.add_authorization(&value);
                    config.auth = Some(value.into());
                }
                ConnectOption::ApiKey(secret) => {
                    let value = self.resolve(&secret.0)?;
                    self.secrets.add(&value);
                    config.api_key = Some(value.into());
                }
                ConnectOption::Header { name, value } => {
                    let value = self.resolve(value)?;
                    self.secrets.add_header(name, &value);
                    config.headers.push(Header {
                        name: name.clone(),
                        value,
                    });
                }
                ConnectOption::Subprotocol(value) => {
                    let value = self.resolve(value)?;
                    config.subprotocols.push(value);
                }
                ConnectOption::Origin(value) => config.origin = Some(self.resolve(value)?),
            }
        }
        self.urls.insert(index, url.clone());
        let outcome = client::connect(&url, &config).await;
        match (&connect.expect_refused, outcome) {
            (None, Ok(connection)) => {
                self.sessions.insert(
                    index,
                    Conn {
                        session: Session::start(connection),
                        last_sent: None,
                    },
                );
                Ok(())
            }
            (None, Err(error)) => {
                let kind = match error {
                    ConnectError::InvalidUrl { .. } => FailureKind::Error,
                    _ => FailureKind::Connect,
                };
                let mut failure = self
                    .failure(
                        kind,
                        format!("could not connect: {error}"),
                        statement.keyword,
                    )
                    .label(format!("connecting to {}", client::redacted_url(&url)));
                failure.hint = error.hint();
                self.failed_connects.push(index);
                if kind == FailureKind::Connect && self.connect_error.is_none() {
                    self.connect_error = Some(error);
                }
                Err(failure)
            }
            (Some(refused), Ok(connection)) => {
                // The handshake succeeded: close the connection we did not want.
                let session = Session::start(connection);
                let _ = session.close(1000, "", CLOSE_WAIT).await;
                let expected = match &refused.status {
                    Some(status) => format!("connect-refused {}", status.value),
                    None => "connect-refused".to_owned(),
                };
                Err(self
                    .failure(
                        FailureKind::Expectation,
                        format!("expectation failed: {expected}"),
                        refused.span,
                    )
                    .label("the handshake succeeded (101 Switching Protocols)"))
            }
            (Some(refused), Err(error)) => {
                let (status, span) = match &refused.status {
                    Some(status) => (Some(status.value), status.span),
                    None => (None, refused.span),
                };
                match (&error, status) {
                    (ConnectError::Rejected { .. }, None) => Ok(()),
                    (ConnectError::Rejected { status: got, .. }, Some(want)) if *got == want => {
                        Ok(())
                    }
                    _ => {
                        let expected = match status {
                            Some(status) => format!("connect-refused {status}"),
                            None => "connect-refused".to_owned(),
                        };
                        Err(self
                            .failure(
                                FailureKind::Expectation,
                                format!("expectation failed: {expected}"),
                                span,
                            )
                            .label(error.to_string()))
                    }
                }
            }
        }
    }

    async fn expect(
        &mut self,
        statement: &Statement,
        target: Option<usize>,
        expect: &Expect,
    ) -> Result<(), Failure> {
        let within = expect.timeout(self.options.timeout);
        match &expect.expectation {
            Expectation::Message(matcher) => {
                self.expect_message(statement, target, expect.next, matcher, within)
                    .await
            }
            Expectation::Nothing => {
                let label = self.label_of(target);
                let conn = self.conn(statement, target)?;
                match conn.session.expect_silence(within).await {
                    Ok(()) => Ok(()),
                    Err(arrived) => {
                        let mut seen = conn.session.received_so_far();
                        seen.retain(|m| m.frame.is_data());
                        Err(self
                            .failure(
                                FailureKind::Expectation,
                                "expectation failed: nothing",
                                statement.keyword,
                            )
                            .label(format!("a message arrived: {}", describe(&arrived.frame)))
                            .received(&label, seen.iter().map(|m| describe(&m.frame)).collect()))
                    }
                }
            }
            Expectation::Status(status) => {
                let Some(response) = &self.last_response else {
                    return Err(self.no_response(statement));
                };
                if response.status == status.value {
                    Ok(())
                } else {
                    Err(self
                        .failure(
                            FailureKind::Expectation,
                            format!("expectation failed: status {}", status.value),
                            status.span,
                        )
                        .label(format!("the status is {}", response.status))
                        .response(response_text(response)))
                }
            }
            Expectation::Response(matcher) => {
                let Some(response) = self.last_response.clone() else {
                    return Err(self.no_response(statement));
                };
                let resolved = matcher
                    .resolve(&self.vars, None)
                    .map_err(|e| self.resolve_failure(&e))?;
                match resolved.check(&FrameView::Text(&response.body)) {
                    Ok(()) => Ok(()),
                    Err(why) => Err(self
                        .failure(
                            FailureKind::Expectation,
                            format!("expectation failed: response {}", resolved.describe()),
                            matcher.span,
                        )
                        .label(why)
                        .response(response_text(&response))),
                }
            }
        }
    }

    fn no_response(&self, statement: &Statement) -> Failure {
        self.failure(
            FailureKind::Error,
            "no `post`, `get` or `delete` before this line to check",
            statement.keyword,
        )
    }

    async fn expect_message(
        &mut self,
        statement: &Statement,
        target: Option<usize>,
        next: bool,
        matcher: &Spanned<Matcher>,
        within: Duration,
    ) -> Result<(), Failure> {
        let label = self.label_of(target);
        let echo_policy = self.echo;
        let fields = self.options.fields.clone();
        let expected_echo = {
            let conn = self.conn(statement, target)?;
            conn.last_sent
                .as_ref()
                .and_then(|sent| message::expected_echo(sent, echo_policy, &fields))
        };
        // `expect echo` compares as the echo policy says (`echo_matches`: JSON equality, or
        // the raw text of an unquoted echo); every other matcher is the language's own.
        let resolved = match &matcher.value {
            Matcher::Echo => None,
            _ => Some(
                matcher
                    .resolve(&self.vars, expected_echo.as_ref())
                    .map_err(|e| self.resolve_failure(&e))?,
            ),
        };
        let description = match (&resolved, &expected_echo) {
            (Some(resolved), _) => resolved.describe().to_owned(),
            (None, Some(echo)) => format!("echo {echo}"),
            (None, None) => {
                return Err(self.resolve_failure(&ResolveError::NoEcho { span: matcher.span }));
            }
        };
        let check = |incoming: &Incoming| -> Result<(), String> {
            match (&resolved, &expected_echo) {
                (Some(resolved), _) => resolved.check(&view(&incoming.frame)),
                (None, Some(echo)) => match incoming.text() {
                    Some(text) if message::echo_matches(echo, text) => Ok(()),
                    Some(text) => Err(format!("the message is {text}, not the echo {echo}")),
                    None => Err(format!("a {} frame, not the echo", incoming.frame.kind())),
                },
                (None, None) => Err("no echo to expect".into()),
            }
        };
        let conn = self.conn(statement, target)?;
        let outcome = if next {
            match conn.session.next(within).await {
                Ok(incoming) => check(&incoming).map_err(|why| (why, vec![incoming])),
                Err(error) => Err((wait_label(&error, true), error.seen().to_vec())),
            }
        } else {
            match conn.session.wait_for(within, |m| check(m).is_ok()).await {
                Ok(_) => Ok(()),
                Err(error) => Err((wait_label(&error, false), error.seen().to_vec())),
            }
        };
        outcome.map_err(|(why, seen)| {
            let prefix = if next { "next " } else { "" };
            self.failure(
                FailureKind::Expectation,
                format!("expectation failed: {prefix}{description}"),
                statement.keyword,
            )
            .label(why)
            .expected(description.clone())
            .received(&label, seen.iter().map(|m| describe(&m.frame)).collect())
        })
    }

    async fn capture(
        &mut self,
        statement: &Statement,
        target: Option<usize>,
        capture: &Capture,
    ) -> Result<(), Failure> {
        let within = capture.timeout(self.options.timeout);
        let label = self.label_of(target);
        let source = &capture.source.value;
        let conn = self.conn(statement, target)?;
        let outcome = if capture.next {
            match conn.session.next(within).await {
                Ok(incoming) => match source.extract(&view(&incoming.frame)) {
                    Some(value) => Ok(value),
                    None => Err((format!("the next message has no {source}"), vec![incoming])),
                },
                Err(error) => Err((wait_label(&error, true), error.seen().to_vec())),
            }
        } else {
            match conn
                .session
                .wait_for(within, |m| source.extract(&view(&m.frame)).is_some())
                .await
            {
                Ok(incoming) => source
                    .extract(&view(&incoming.frame))
                    .ok_or_else(|| ("the value vanished".to_owned(), vec![incoming])),
                Err(error) => Err((wait_label(&error, false), error.seen().to_vec())),
            }
        };
        match outcome {
            Ok(value) => {
                self.vars.capture(&capture.name.value, value);
                Ok(())
            }
            Err((why, seen)) => Err(self
                .failure(
                    FailureKind::Expectation,
                    format!("capture failed: {} = {source}", capture.name.value),
                    statement.keyword,
                )
                .label(why)
                .received(&label, seen.iter().map(|m| describe(&m.frame)).collect())),
        }
    }

    async fn manage(
        &mut self,
        statement: &Statement,
        target: Option<usize>,
        method: Method,
        connection_id: &wsprobe_core::command::Template,
        body: Option<String>,
    ) -> Result<(), Failure> {
        let id = self.resolve(connection_id)?;
        let base = match (
            &self.options.management_url,
            target.and_then(|t| self.urls.get(&t)),
        ) {
            (Some(base), _) => base.clone(),
            (None, Some(ws_url)) => message::management_url(ws_url),
            (None, None) => {
                let from_flag = self.options.url.as_deref().map(client::parse_url);
                match from_flag {
                    Some(Ok(url)) => message::management_url(&url),
                    _ => {
                        return Err(self
                            .failure(
                                FailureKind::Error,
                                "no @connections URL for this call",
                                statement.keyword,
                            )
                            .hint("its `connect` did not run; pass --management-url URL"));
                    }
                }
            }
        };
        let Some(url) = management::connection_url(&base, &id) else {
            return Err(self.failure(
                FailureKind::Error,
                format!("`{base}` cannot take a connection id"),
                statement.keyword,
            ));
        };
        let response = management::call(method, &url, body, &self.options.client)
            .await
            .map_err(|error| {
                let mut failure = self.failure(
                    FailureKind::Error,
                    format!("the @connections call failed: {error}"),
                    statement.keyword,
                );
                failure.hint = error.hint();
                failure
            })?;
        self.last_response = Some(response);
        Ok(())
    }

    async fn close_test_connections(&mut self, test: usize) {
        let opened_here: Vec<usize> = self
            .sessions
            .keys()
            .copied()
            .filter(|index| self.plan.connects[*index].test == test)
            .collect();
        for index in opened_here {
            if let Some(conn) = self.sessions.remove(&index) {
                let _ = conn.session.close(1000, "", CLOSE_WAIT).await;
            }
        }
    }

    async fn close_all(&mut self) {
        for (_, conn) in self.sessions.drain() {
            let _ = conn.session.close(1000, "", CLOSE_WAIT).await;
        }
    }
}

/// A received frame as the matchers see it.
fn view(frame: &Frame) -> FrameView<'_> {
    frame.into()
}

/// A received frame in a failure's list.
fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Dropped { reason } => format!("dropped without a close frame: {reason}"),
        other => view(other).to_string(),
    }
}

fn response_text(response: &management::Response) -> String {
    if response.body.is_empty() {
        format!("status {}", response.status)
    } else {
        format!("status {} {}", response.status, response.body)
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

/// Whether every failure of the run was a connect failure (exit 3).
pub fn only_connect_failures<'a>(failures: impl IntoIterator<Item = &'a Failure>) -> bool {
    let mut any = false;
    for failure in failures {
        if failure.kind != FailureKind::Connect {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_map_to_what_matchers_see() {
        let close = Frame::Close {
            code: 1005,
            reason: String::new(),
        };
        assert_eq!(
            view(&close),
            FrameView::Close {
                code: None,
                reason: ""
            }
        );
        let close = Frame::Close {
            code: 4000,
            reason: "bye".into(),
        };
        assert_eq!(
            view(&close),
            FrameView::Close {
                code: Some(4000),
                reason: "bye"
            }
        );
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
        };
        assert_eq!(wait_label(&timeout, false), "nothing matched within 300ms");
        assert_eq!(wait_label(&timeout, true), "nothing arrived within 300ms");
        let closed = WaitError::Closed {
            ending: wsprobe_core::session::Ending::Closed {
                code: 1001,
                reason: String::new(),
            },
            seen: vec![],
        };
        assert_eq!(
            wait_label(&closed, false),
            "the connection closed with code 1001 before anything matched"
        );
    }

    #[test]
    fn exit_three_only_when_every_failure_is_a_connect() {
        let failure = |kind| Failure::new(kind, "x", "f", Span::new(1, 1, 1), "");
        let connect = failure(FailureKind::Connect);
        let expectation = failure(FailureKind::Expectation);
        assert!(only_connect_failures([&connect, &connect]));
        assert!(!only_connect_failures([&connect, &expectation]));
        assert!(!only_connect_failures([]));
    }
}
