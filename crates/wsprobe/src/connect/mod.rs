//! `wsprobe connect`: the interactive front-end over the command language, wscat-like.
//!
//! Three ways in, one session loop ([`driver`]):
//! - at a terminal, a rustyline prompt ([`prompt`]) with history and completion, messages
//!   printed above the line being typed;
//! - `-x CMD` (repeatable): the commands run in order, then `-w` for late messages;
//! - a stdin that is not a terminal ([`pipe`]): each line is sent (or run if it is a
//!   `/command`), each received message goes to stdout, one a line, undecorated.
//!
//! Lines are parsed by the shared command language ([`wsprobe_core::command`]) and run on the
//! command engine ([`wsprobe_core::command::engine`]), the one `wsprobe run` uses, so a line does
//! what it does in a script; [`exec`] shows what it did. Echo ticks ([`echo`]) and what is
//! shown ([`display`], [`calls`]) are the prompt's own.
//!
//! Exit codes: 0; 1 when an echo check, `/expect`, `/capture` or another command failed in
//! `-x` or pipe mode, or the server closed abnormally (anything but 1000, 1001 or 1005, or
//! a dropped connection); 2 for a malformed `-x` command or URL; 3 when the connection could not be opened
//! (or reopened: `--reconnect` refused with 401/403, or out of attempts);
//! 130 on Ctrl-C outside the prompt, and on SIGTERM in every mode (the connection is
//! closed with 1001 and the terminal given back first). At the prompt, quitting (`/quit`,
//! Ctrl-D) exits 0: the results were shown as they came.

mod calls;
mod display;
mod driver;
mod echo;
mod exec;
mod pipe;
mod prompt;
mod record;

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

pub(crate) use display::{DisplayOptions, is_normal_close, reconnect_line};
pub(crate) use driver::{Finish, Report};
pub(crate) use prompt::default_history_file;

use crate::cli::ConnectArgs;
use crate::{Context, Error, Outcome};
use wsprobe_core::client::{self};
use wsprobe_core::command::engine::OnConnect;
use wsprobe_core::command::{ReplInput, parse_repl_line};
use wsprobe_core::options::ConnectOptions;
use wsprobe_core::transcript::{ConnectionLabel, SharedObserver, Transcript};
use wsprobe_serve::{RouteBehaviour, RunningServer, ServeConfig};

use driver::{Driver, Output, Settings};

/// The default `within` of an `/expect` typed at the prompt.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `wsprobe connect`.
pub(crate) async fn run(
    args: ConnectArgs,
    options: ConnectOptions,
    context: Context,
) -> Result<Outcome, Error> {
    let interactive = args.execute.is_empty()
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    check_commands(&args.execute)?;
    let config = crate::cli::lower::client_config(&options)?;
    let (url, bundled) = match &args.url {
        Some(text) => (client::parse_url(text)?, None),
        None => {
            let (url, server) = start_bundled_backend().await?;
            let line = format!("started the bundled backend at {url}");
            if interactive {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
            } else {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            (url, Some(server))
        }
    };

    // A terminal the line editor cannot drive (e.g. TERM=dumb) falls back to reading
    // lines plainly, as from a pipe.
    let prompt = if interactive {
        let history = args.history_file.clone().or_else(default_history_file);
        match prompt::Prompt::start(history) {
            Ok(started) => Some(started),
            Err(error) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: {error}; reading lines without the line editor"
                );
                None
            }
        }
    } else {
        None
    };
    let interactive = prompt.is_some();
    if let Some((_, _, printer)) = &prompt {
        use colored::Colorize as _;
        printer.print("/help for commands, Ctrl-D to quit".dimmed().to_string());
    }
    let settings = Settings {
        fields: options.fields.clone(),
        echo: options.echo,
        echo_timeout: args.echo_timeout,
        expect_timeout: EXPECT_TIMEOUT,
        display: DisplayOptions {
            show_control: args.show_control,
            timestamps: args.timestamps,
            pretty: args.pretty,
        },
        linger: args.wait.duration(),
        interactive,
        show_secrets: context.show_secrets,
        url: url.clone(),
        client: config.clone(),
        inbox: options.inbox,
        keepalive: options.session.keepalive.clone(),
        reconnect: options.session.reconnect,
        // Checked when the command line was lowered.
        on_connect: options
            .session
            .on_connect
            .iter()
            .filter_map(|line| OnConnect::parse(line).ok())
            .collect(),
    };
    // Claimed before connecting: a path that cannot be written is an error now.
    let recorder = match &args.record {
        Some(path) => Some(record::Recorder::create(path, &url, &options).map_err(|e| {
            Error::Other(anyhow::anyhow!(
                "cannot write the recording {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let transcript = match &args.log {
        Some(path) => Some(Transcript::create(path).map_err(|e| Error::Other(e.into()))?),
        None => None,
    };
    let observer = transcript.as_ref().map(|transcript| {
        transcript.connection(ConnectionLabel::default(), &config) as SharedObserver
    });
    let connecting =
        Box::pin(async move { client::connect_observed(&url, &config, observer).await });

    let report = match prompt {
        Some((prompt, lines, printer)) => {
            let result = Driver::new(settings, Output::Prompt(printer))
                .recording(recorder.clone())
                .run(connecting, lines)
                .await;
            // The driver and its printers are gone: the terminal can be given back.
            prompt.finish();
            result?
        }
        None => {
            let lines = if args.execute.is_empty() {
                pipe::stdin_lines()
            } else {
                pipe::commands(args.execute)
            };
            Driver::new(settings, Output::plain())
                .recording(recorder.clone())
                .run(connecting, lines)
                .await?
        }
    };
    if let Some(server) = bundled {
        server.shutdown().await;
    }
    if let Some(recorder) = &recorder {
        let path = recorder.path().unwrap_or_default();
        let mut stderr = std::io::stderr().lock();
        match recorder.write() {
            Ok(()) => {
                let _ = writeln!(
                    stderr,
                    "recorded the session to {0}; replay it with: wsprobe run {0} --url URL",
                    path.display()
                );
            }
            Err(error) => {
                let _ = writeln!(
                    stderr,
                    "error: cannot write the recording {}: {error}",
                    path.display()
                );
            }
        }
    }
    if let (Some(transcript), Some(path)) = (&transcript, &args.log)
        && let Err(error) = transcript.finish()
    {
        let path = path.display();
        let _ = writeln!(
            std::io::stderr(),
            "warning: the transcript {path} may be incomplete: {error}"
        );
    }
    Ok(outcome(&report, interactive))
}

/// The outcome of a finished session (see the module doc for the rules).
pub(crate) fn outcome(report: &Report, interactive: bool) -> Outcome {
    match &report.finish {
        Finish::Interrupted => Outcome::Interrupted,
        Finish::Closed { ending, we_closed } if !we_closed && !is_normal_close(ending.code()) => {
            Outcome::ChecksFailed
        }
        _ if interactive => Outcome::Success,
        _ if report.failed_checks > 0 => Outcome::ChecksFailed,
        _ => Outcome::Success,
    }
}

/// Parses every `-x` command before anything connects: a typo is a usage error (exit 2)
/// with a caret under it, not a half-run session.
fn check_commands(commands: &[String]) -> Result<(), Error> {
    let color = colored::control::SHOULD_COLORIZE.should_colorize();
    let rendered: Vec<String> = commands
        .iter()
        .filter_map(|command| match parse_repl_line(command) {
            Ok(ReplInput::Empty | ReplInput::Text(_) | ReplInput::Command(_)) => None,
            Err(error) => Some(error.render_line(command, color)),
        })
        .collect();
    if rendered.is_empty() {
        Ok(())
    } else {
        Err(Error::Syntax {
            rendered: rendered.join("\n"),
        })
    }
}

/// The bundled backend: the sample echo app, plus the `whoami` route so that
/// `/send whoami` tells the user their connection id (for `/post ${me} …`).
fn bundled_config() -> ServeConfig {
    let mut config = ServeConfig::default();
    config.routes.insert("whoami", RouteBehaviour::Whoami);
    config
}

/// Starts the reference backend in-process on a free loopback port (no log lines).
async fn start_bundled_backend() -> Result<(url::Url, RunningServer), Error> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = wsprobe_serve::spawn(bundled_config(), listen)
        .await
        .map_err(|e| {
            Error::Other(anyhow::anyhow!(
                "cannot start the bundled backend on 127.0.0.1: {e}"
            ))
        })?;
    let url = client::parse_url(&server.ws_url())?;
    Ok((url, server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsprobe_core::session::Ending;

    fn report(finish: Finish, failed_checks: usize) -> Report {
        Report {
            finish,
            failed_checks,
        }
    }

    fn closed(code: u16, we_closed: bool) -> Finish {
        Finish::Closed {
            ending: Ending::Closed {
                code,
                reason: String::new(),
            },
            we_closed,
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(
            outcome(&report(Finish::Drained, 0), false),
            Outcome::Success
        );
        assert_eq!(
            outcome(&report(Finish::Drained, 1), false),
            Outcome::ChecksFailed
        );
        assert_eq!(outcome(&report(Finish::Quit, 1), true), Outcome::Success);
        assert_eq!(
            outcome(&report(closed(1011, false), 0), true),
            Outcome::ChecksFailed
        );
        assert_eq!(
            outcome(&report(closed(4001, false), 0), false),
            Outcome::ChecksFailed
        );
        assert_eq!(
            outcome(&report(closed(4001, true), 0), false),
            Outcome::Success
        );
        assert_eq!(
            outcome(&report(closed(1000, false), 0), true),
            Outcome::Success
        );
        assert_eq!(
            outcome(&report(closed(1000, false), 2), false),
            Outcome::ChecksFailed
        );
        let dropped = Finish::Closed {
            ending: Ending::Dropped {
                reason: "reset".into(),
            },
            we_closed: false,
        };
        assert_eq!(outcome(&report(dropped, 0), true), Outcome::ChecksFailed);
        assert_eq!(
            outcome(&report(Finish::Interrupted, 0), false),
            Outcome::Interrupted
        );
    }
}
