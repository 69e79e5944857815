//! `wsprobe run`: files of commands, test blocks, and reports.
//!
//! Every file is parsed (by `command::parse_script`, the REPL's parser) and checked — syntax,
//! undefined variables, URLs, which connection each command acts on — before anything
//! connects; all the errors of all the files are reported together (exit 2). Then the
//! [`runner`] runs the files one after the other, printing a line per test as it
//! finishes, and the reports are written from the [`ScriptResult`]. Ctrl-C stops the run,
//! prints the totals and writes the reports of the tests that finished, and exits 130.

pub mod report;
pub(crate) mod result;
pub(crate) mod runner;

/// Variables and secrets live with the command language, which the engine runs.
pub use wsprobe_core::command::vars;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::cli::{ReportTarget, RunArgs};
use crate::os::Interrupts;
use crate::{Context, Error, Outcome};
use wsprobe_core::client::redacted_url_text;
use wsprobe_core::command::{Script, Variables, parse_script};
use wsprobe_core::options::ConnectOptions;
use wsprobe_core::transcript::Transcript;

pub(crate) use result::{FileResult, ScriptResult, TestResult};
pub(crate) use runner::{Progress, RunOptions};

use vars::{Secrets, Vars, looks_secret};

/// Runs `wsprobe run`.
pub(crate) async fn run(
    args: RunArgs,
    connect_options: ConnectOptions,
    context: Context,
) -> Result<Outcome, Error> {
    let color = colored::control::SHOULD_COLORIZE.should_colorize();
    let mut cli_vars: HashMap<String, String> = args.vars.iter().cloned().collect();
    if let Some(url) = &args.url {
        cli_vars
            .entry("WS_URL".to_owned())
            .or_insert_with(|| url.clone());
    }
    let vars = Vars::new(cli_vars);

    // Checked here, as a script's own URLs are: a bad --url is a usage error before
    // anything runs, not a failure of the first test that connects.
    if let Some(url) = &args.url
        && let Err(wsprobe_core::client::ConnectError::InvalidUrl { reason, .. }) =
            wsprobe_core::client::parse_url(url)
    {
        return Err(Error::usage(format!("invalid --url: {reason}")));
    }
    let management_url = match &args.management_url {
        Some(text) => Some(parse_management_url(text)?),
        None => None,
    };
    let options = RunOptions {
        url: args.url.clone(),
        management_url,
        timeout: args.timeout,
        client: crate::cli::lower::client_config(&connect_options)?,
        fields: connect_options.fields.clone(),
        echo: connect_options.echo,
        fail_fast: args.fail_fast,
        inbox: connect_options.inbox,
        transcript: None,
        keepalive: connect_options.session.keepalive.clone(),
        reconnect: connect_options.session.reconnect,
        // Checked when the command line was lowered.
        on_connect: connect_options
            .session
            .on_connect
            .iter()
            .filter_map(|line| wsprobe_core::command::engine::OnConnect::parse(line).ok())
            .collect(),
    };
    if args.timeout.is_zero() {
        return Err(Error::usage("--timeout must be longer than 0s"));
    }

    let scripts = load(&args.files, &vars, &options, color)?;
    let report_files = create_reports(&args.reports)?;
    // Created after the scripts parsed: a syntax error leaves no empty transcript behind.
    let transcript = match &args.log {
        Some(path) => Some(Transcript::create(path).map_err(|e| Error::Other(e.into()))?),
        None => None,
    };
    let options = RunOptions {
        transcript,
        ..options
    };

    let mut secrets = Secrets::new(!context.show_secrets);
    if let Some(auth) = &connect_options.auth {
        secrets.add_authorization(auth.expose());
    }
    if let Some(key) = &connect_options.api_key {
        secrets.add(key.expose());
    }
    for header in &connect_options.headers {
        secrets.add_header(&header.name, &header.value);
    }
    for (name, value) in &args.vars {
        if looks_secret(name) {
            secrets.add(value);
            if let Some(transcript) = &options.transcript {
                transcript.add_secret(value);
            }
        }
    }
    // A secret-looking variable that comes from the environment is as secret.
    for (script, _) in &scripts {
        for statement in script.statements() {
            for (name, _) in statement.variables() {
                if looks_secret(name)
                    && let Some(value) = vars.get(name)
                {
                    secrets.add(&value);
                    if let Some(transcript) = &options.transcript {
                        transcript.add_secret(&value);
                    }
                }
            }
        }
    }

    let started = Instant::now();
    let mut printer = Printer {
        color,
        current_file: None,
        ended_blank: false,
        finished: Vec::new(),
    };
    let mut result = ScriptResult::default();
    let mut first_connect_error = None;
    // Ctrl-C, and SIGTERM/SIGHUP (CI cancellation, `timeout(1)`, Kubernetes) alike.
    let mut interrupts = Interrupts::register();
    for (script, plan) in &scripts {
        let file_started = Instant::now();
        printer.finished.clear();
        let run = runner::run_file(
            script,
            plan,
            &options,
            vars.for_next_file(),
            &mut secrets,
            &mut printer,
        );
        let (file, connect_error) = tokio::select! {
            outcome = run => outcome,
            Some(signal) = interrupts.next() => {
                // Keep the tests that finished, report them, exit 130.
                result.interrupted_by = Some(signal);
                result.files.push(FileResult {
                    file: script.file_name.clone(),
                    tests: std::mem::take(&mut printer.finished),
                    duration: file_started.elapsed(),
                });
                break;
            }
        };
        let failed = file.tests.iter().any(|test| !test.passed());
        result.files.push(file);
        if first_connect_error.is_none() {
            first_connect_error = connect_error;
        }
        if failed && options.fail_fast {
            break;
        }
    }
    result.duration = started.elapsed();
    result.redact(&secrets);

    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not a failure of the run.
    if printer.current_file.is_some() && !printer.ended_blank {
        let _ = writeln!(stdout);
    }
    let _ = writeln!(stdout, "{}", report::text::totals(&result, color));
    let _ = stdout.flush();
    drop(stdout);

    write_reports(report_files, &result)?;
    if let Some(transcript) = &options.transcript
        && let Err(error) = transcript.finish()
    {
        let path = args.log.as_deref().unwrap_or(Path::new("")).display();
        let _ = writeln!(
            std::io::stderr(),
            "warning: the transcript {path} may be incomplete: {error}"
        );
    }

    if result.interrupted_by.is_some() {
        return Ok(Outcome::Interrupted);
    }
    if result.failed() == 0 {
        return Ok(Outcome::Success);
    }
    let failures = result.tests().filter_map(|test| test.failure.as_ref());
    match first_connect_error {
        Some((error, given)) if runner::only_connect_failures(failures) => {
            Err(Error::ConnectWith { error, given })
        }
        _ => Ok(Outcome::ChecksFailed),
    }
}

/// Reads, parses and plans every file; every error of every file is returned as one
/// [`Error::Syntax`], so nothing connects unless the whole run can start.
fn load(
    files: &[std::path::PathBuf],
    vars: &Vars,
    options: &RunOptions,
    color: bool,
) -> Result<Vec<(Script, runner::Plan)>, Error> {
    let mut scripts = Vec::new();
    let mut rendered: Vec<String> = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let source = read_script(path)?;
        let script = match parse_script(&source, &name) {
            Ok(script) => script,
            Err(errors) => {
                rendered.push(errors.render(color));
                continue;
            }
        };
        let mut diagnostics: Vec<_> = script
            .undefined_variables(vars)
            .iter()
            .map(|error| error.diagnostic())
            .collect();
        let plan = match runner::plan(&script, options) {
            Ok(plan) => Some(plan),
            Err(errors) => {
                diagnostics.extend(errors);
                None
            }
        };
        diagnostics.sort_by_key(|d| (d.span.line, d.span.column));
        if !diagnostics.is_empty() {
            let text: Vec<String> = diagnostics
                .iter()
                .map(|d| script.render(d, color))
                .collect();
            rendered.push(text.join("\n"));
            continue;
        }
        if let Some(plan) = plan {
            scripts.push((script, plan));
        }
    }
    if rendered.is_empty() {
        Ok(scripts)
    } else {
        Err(Error::Syntax {
            rendered: rendered.join("\n"),
        })
    }
}

fn read_script(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::usage(format!("{} is not UTF-8 text", path.display())))?;
    // Editors on Windows start UTF-8 files with a byte order mark; it is not part of the
    // first command.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

fn parse_management_url(text: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(text).map_err(|e| {
        Error::usage(format!(
            "--management-url `{}`: {e}",
            redacted_url_text(text)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::usage(format!(
            "--management-url `{}` must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/dev/@connections",
            redacted_url_text(text)
        )));
    }
    Ok(url)
}

/// A report file, created before anything connects (so a bad path is a usage error then,
/// not a failure after the whole run), and the target it is for.
struct ReportFile {
    target: ReportTarget,
    file: wsprobe_core::report_file::ReportFile,
}

fn create_reports(targets: &[ReportTarget]) -> Result<Vec<ReportFile>, Error> {
    targets
        .iter()
        .map(|target| {
            let (ReportTarget::Junit(path) | ReportTarget::Json(path)) = target;
            let file = wsprobe_core::report_file::ReportFile::create(path).map_err(|e| {
                Error::usage(format!("cannot write the report {}: {e}", path.display()))
            })?;
            Ok(ReportFile {
                target: target.clone(),
                file,
            })
        })
        .collect()
}

fn write_reports(files: Vec<ReportFile>, result: &ScriptResult) -> Result<(), Error> {
    for ReportFile { target, file } in files {
        let (path, text) = match &target {
            ReportTarget::Junit(path) => {
                let xml = report::junit::render(result).map_err(|e| {
                    Error::Other(anyhow::anyhow!("cannot write the JUnit report: {e}"))
                })?;
                (path, xml)
            }
            ReportTarget::Json(path) => {
                let mut text = serde_json::to_string_pretty(&report::json::render(result))
                    .map_err(|e| {
                        Error::Other(anyhow::anyhow!("cannot write the JSON report: {e}"))
                    })?;
                text.push('\n');
                (path, text)
            }
        };
        file.write(text.as_bytes())
            .map_err(|e| Error::Other(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Prints each test's line (and failure) on stdout as it finishes, under its file's name.
struct Printer {
    color: bool,
    current_file: Option<String>,
    /// Whether the last thing printed was a blank line (a failure block ends with one).
    ended_blank: bool,
    /// The tests of the current file that finished, for a summary after Ctrl-C.
    finished: Vec<TestResult>,
}

impl Progress for Printer {
    fn test_finished(&mut self, file: &str, test: &TestResult) {
        let mut stdout = std::io::stdout().lock();
        if self.current_file.as_deref() != Some(file) {
            if self.current_file.is_some() && !self.ended_blank {
                let _ = writeln!(stdout);
            }
            let _ = writeln!(stdout, "{}", report::text::file_heading(file, self.color));
            self.current_file = Some(file.to_owned());
        }
        let block = report::text::test_block(test, self.color);
        self.ended_blank = block.ends_with("\n\n");
        let _ = write!(stdout, "{block}");
        let _ = stdout.flush();
        self.finished.push(test.clone());
    }
}
