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

use std::time::{Duration, Instant};

use url::Url;

use wsprobe_core::client::{self, ClientConfig, ConnectError};
use wsprobe_core::command::engine::{
    Done, Engine, EngineOptions, Failed, FailedKind, Fault, Lifeline, OnConnect, SessionEvent,
};
use wsprobe_core::command::{
    Command, Connect, ConnectOption, Diagnostic, EchoPolicy, ResolveError, Script, Span, Statement,
};
use wsprobe_core::message::RouteFields;
use wsprobe_core::reconnect::{ReconnectPolicy, ReconnectWhen};
use wsprobe_core::session::{CLOSE_WAIT, InboxLimits, KeepAlive, Session};
use wsprobe_core::transcript::{ConnectionLabel, SharedObserver, Transcript};
use wsprobe_core::values::Header;

use super::result::Failure;
use super::result::{FailureKind, FileResult, TestResult};
use super::vars::{Secrets, Vars, looks_secret};
use crate::error::Credentials;

/// Everything the runner needs from the command line.
#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    /// `--url`: the URL of a `connect` that names none.
    pub url: Option<String>,
    /// `--management-url`: the `@connections` base URL (else derived from the connection).
    pub(crate) management_url: Option<Url>,
    /// `--timeout`: the wait of an expectation without `within`.
    pub(crate) timeout: Duration,
    /// The connection options every `connect` starts from (-H, --auth, --api-key, …).
    pub(crate) client: ClientConfig,
    /// `--route-field` and `--body-field`.
    pub(crate) fields: RouteFields,
    /// `--echo`: the echo policy at the start of each file.
    pub(crate) echo: EchoPolicy,
    /// `--fail-fast`: stop after the first failing test.
    pub(crate) fail_fast: bool,
    /// `--inbox-frames`, `--inbox-bytes`: the bound of each connection's inbox.
    pub(crate) inbox: InboxLimits,
    /// `--log`: the transcript every connection reports to.
    pub(crate) transcript: Option<Transcript>,
    /// `--keepalive`, `--keepalive-message`: every connection's keepalive at the start.
    pub(crate) keepalive: Option<KeepAlive>,
    /// `--reconnect`, `--reconnect-max`: every connection's policy unless its `connect`
    /// has a `reconnect` line.
    pub(crate) reconnect: Option<ReconnectPolicy>,
    /// `--on-connect`: lines run on every connection after every open.
    pub(crate) on_connect: Vec<OnConnect>,
}

/// Hears about each test as it finishes, so the summary can be printed as the run goes.
pub(crate) trait Progress {
    /// A test finished (its failure already redacted).
    fn test_finished(&mut self, file: &str, test: &TestResult);
}

/// What the runner knows about a file before it connects: for every command, the
/// `connect` it acts on (an index into `connects`).
#[derive(Debug)]
pub(crate) struct Plan {
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
pub(crate) fn plan(script: &Script, options: &RunOptions) -> Result<Plan, Vec<Diagnostic>> {
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

/// The state of one file's run.
struct FileRun<'a> {
    script: &'a Script,
    plan: &'a Plan,
    options: &'a RunOptions,
    secrets: &'a mut Secrets,
    /// Runs every statement but `connect`: sessions are keyed by plan index.
    engine: Engine,
    /// The first connect that failed where a connection was expected (for exit code 3).
    connect_error: Option<(ConnectError, Credentials)>,
    /// The connects (plan indexes) that failed: commands on them fail as connect failures.
    failed_connects: Vec<usize>,
    /// The secrets as they grow, for what is shown while statements run (reconnects).
    known_secrets: tokio::sync::watch::Sender<Secrets>,
}

/// Runs every test of `script`, telling `progress` as each one finishes. Stops after the
/// first failing test when `options.fail_fast`. Also returns the first error of a
/// `connect` that should have succeeded, for the exit code.
pub(crate) async fn run_file(
    script: &Script,
    plan: &Plan,
    options: &RunOptions,
    vars: Vars,
    secrets: &mut Secrets,
    progress: &mut dyn Progress,
) -> (FileResult, Option<(ConnectError, Credentials)>) {
    let started = Instant::now();
    let engine_options = EngineOptions {
        timeout: options.timeout,
        fields: options.fields.clone(),
        echo: options.echo,
        management_url: options.management_url.clone(),
        // Without a connect above it, a call goes to the stage of --url.
        stage_url: options
            .url
            .as_deref()
            .and_then(|url| client::parse_url(url).ok()),
        client: options.client.clone(),
    };
    let mut engine = Engine::new(engine_options, vars);
    let (events, shown) = tokio::sync::mpsc::unbounded_channel();
    engine.set_events(events);
    let labels: Vec<String> = plan.connects.iter().map(PlannedConnect::label).collect();
    let (known_secrets, secrets_now) = tokio::sync::watch::channel(secrets.clone());
    let reporter = tokio::spawn(show_reconnects(shown, labels, secrets_now));
    let mut run = FileRun {
        script,
        plan,
        options,
        secrets,
        engine,
        connect_error: None,
        failed_connects: Vec::new(),
        known_secrets,
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
    drop(run.engine);
    let _ = reporter.await;
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
        if let Command::Connect(connect) = &statement.command {
            let result = self.connect(statement, connect).await;
            // Its `auth`, `api-key` and headers are secrets from now on.
            self.known_secrets.send_replace(self.secrets.clone());
            return result;
        }
        if statement.command.uses_connection() {
            self.check_open(statement, target)?;
        }
        match self.engine.execute(statement, target).await {
            Ok(Done::Captured { name, value, .. }) => {
                // A captured token is as secret as one given on the command line: every
                // output and report of the run redacts it from here on.
                if looks_secret(&name) {
                    self.secrets.add(&value);
                    if let Some(transcript) = &self.options.transcript {
                        transcript.add_secret(&value);
                    }
                    self.known_secrets.send_replace(self.secrets.clone());
                }
                Ok(())
            }
            Ok(_done) => Ok(()),
            Err(Fault::Resolve(error)) => Err(self.resolve_failure(&error)),
            Err(Fault::Failed(failed)) => {
                self.note_connect_failure(&failed, None);
                Err(self.failed(failed, target))
            }
        }
    }

    /// Records the error of a reconnect that failed (for exit code 3, as a `connect`'s).
    fn note_connect_failure(&mut self, failed: &Failed, config: Option<&ClientConfig>) {
        if self.connect_error.is_some() {
            return;
        }
        if let Some(error) = failed.connect_error.clone() {
            let given = Credentials::of_client(config.unwrap_or(&self.options.client));
            let error =
                std::sync::Arc::try_unwrap(error).unwrap_or_else(|shared| ConnectError::Other {
                    url: String::new(),
                    reason: shared.to_string(),
                });
            self.connect_error = Some((error, given));
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

    /// A failure the engine reported, placed in the script.
    fn failed(&self, failed: Failed, target: Option<usize>) -> Failure {
        let kind = match failed.kind {
            FailedKind::Expectation => FailureKind::Expectation,
            FailedKind::Error => FailureKind::Error,
            FailedKind::Connect => FailureKind::Connect,
        };
        let mut failure = self.failure(kind, failed.message, failed.span);
        failure.label = failed.label;
        failure.hint = failed.hint;
        if let Some(expected) = failed.expected {
            failure = failure.expected(expected);
        }
        if let Some(received) = failed.received {
            failure = failure.received(&self.label_of(target), received);
        }
        if let Some(response) = failed.response {
            failure = failure.response(response);
        }
        failure
    }

    fn resolve_failure(&self, error: &ResolveError) -> Failure {
        let mut failure = self.failure(FailureKind::Error, error.to_string(), error.span());
        failure.hint = error.hint();
        failure
    }

    fn resolve(&self, template: &wsprobe_core::command::Template) -> Result<String, Failure> {
        template
            .resolve(&self.engine.vars)
            .map_err(|e| self.resolve_failure(&e))
    }

    fn label_of(&self, target: Option<usize>) -> String {
        target
            .and_then(|target| self.plan.connects.get(target))
            .map_or_else(|| "no connection".to_owned(), PlannedConnect::label)
    }

    /// Fails a command whose connection is not open, saying why (a failed `connect` makes
    /// it a connect failure, for exit code 3).
    fn check_open(&self, statement: &Statement, target: Option<usize>) -> Result<(), Failure> {
        let Some(target) = target else {
            return Err(self.failure(
                FailureKind::Error,
                "no connection to act on",
                statement.keyword,
            ));
        };
        if self.engine.is_open(target) {
            return Ok(());
        }
        let label = self.label_of(Some(target));
        let line = self.plan.connects[target].line;
        let kind = if self.failed_connects.contains(&target) {
            FailureKind::Connect
        } else {
            FailureKind::Error
        };
        Err(self
            .failure(
                kind,
                format!("{label} is not open"),
                statement
                    .target
                    .as_ref()
                    .map_or(statement.keyword, |t| t.span),
            )
            .hint(format!("its `connect` (line {line}) did not succeed")))
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
        let mut reconnect = self.options.reconnect;
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
                ConnectOption::Reconnect { always, max } => {
                    let default = self.options.reconnect.unwrap_or_default();
                    reconnect = Some(ReconnectPolicy {
                        when: if *always {
                            ReconnectWhen::Always
                        } else {
                            ReconnectWhen::GoingAway
                        },
                        max_attempts: max.as_ref().map_or(default.max_attempts, |m| m.value),
                    });
                }
            }
        }
        self.engine.set_url(index, url.clone());
        let observer = self.options.transcript.as_ref().map(|transcript| {
            let label = ConnectionLabel {
                name: connect.name.as_ref().map(|name| name.value.clone()),
                script: Some(self.script.file_name.clone()),
            };
            transcript.connection(label, &config) as SharedObserver
        });
        let outcome = client::connect_observed(&url, &config, observer).await;
        match (&connect.expect_refused, outcome) {
            (None, Ok(connection)) => {
                let session = Session::start_bounded(connection, self.options.inbox);
                let lifeline = Lifeline {
                    url,
                    client: config.clone(),
                    inbox: self.options.inbox,
                    reconnect,
                    on_connect: self.options.on_connect.clone(),
                    watched: false,
                };
                let keepalive = self.options.keepalive.clone();
                match self
                    .engine
                    .open_with(index, session, keepalive, lifeline)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(Fault::Failed(mut failed)) => {
                        // An --on-connect line failed: this `connect` is what it stopped.
                        failed.span = statement.keyword;
                        Err(self.failed(failed, Some(index)))
                    }
                    Err(Fault::Resolve(error)) => Err(self.resolve_failure(&error)),
                }
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
                let given = Credentials::of_client(&config);
                failure.hint = crate::error_reporting::connect_hint(&error, given);
                self.failed_connects.push(index);
                if kind == FailureKind::Connect && self.connect_error.is_none() {
                    self.connect_error = Some((error, given));
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

    async fn close_test_connections(&mut self, test: usize) {
        let opened_here: Vec<usize> = (0..self.plan.connects.len())
            .filter(|index| self.plan.connects[*index].test == test)
            .collect();
        for index in opened_here {
            self.engine.close(index, 1000).await;
        }
    }

    async fn close_all(&mut self) {
        self.engine.close_all(1000).await;
    }
}

/// Shows each reconnect on stderr as it happens, naming the connection, with the secrets
/// known so far redacted.
async fn show_reconnects(
    mut events: tokio::sync::mpsc::UnboundedReceiver<SessionEvent>,
    labels: Vec<String>,
    secrets: tokio::sync::watch::Receiver<Secrets>,
) {
    use std::io::Write as _;
    while let Some(event) = events.recv().await {
        if let SessionEvent::Reconnect { key, event } = event {
            let (_, line) = crate::connect::reconnect_line(&event);
            let label = labels.get(key).map_or("a connection", String::as_str);
            let line = secrets.borrow().redact(&format!("{label}: {line}"));
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// Whether every failure of the run was a connect failure (exit 3).
pub(crate) fn only_connect_failures<'a>(failures: impl IntoIterator<Item = &'a Failure>) -> bool {
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
    fn exit_three_only_when_every_failure_is_a_connect() {
        let failure = |kind| Failure::new(kind, "x", "f", Span::new(1, 1, 1), "");
        let connect = failure(FailureKind::Connect);
        let expectation = failure(FailureKind::Expectation);
        assert!(only_connect_failures([&connect, &connect]));
        assert!(!only_connect_failures([&connect, &expectation]));
        assert!(!only_connect_failures([]));
    }
}
