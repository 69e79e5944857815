//! wsprobe, the binary's library: the command line (`cli`), lowered once into the core's
//! types, and the front-ends that run on them: [`connect`] (the prompt), [`run`] (scripts),
//! [`load`], [`serve`] and [`manage`]. `error_reporting` and `exit` are the only places
//! that turn outcomes and errors into messages and exit codes.
//!
//! Data flows one way: command line → options (`wsprobe-core`) → connection → session →
//! engine → front-end → report. Everything lives in the library so tests can run a whole
//! job in-process.

pub mod cli;
pub mod connect;
pub mod error;
pub mod error_reporting;
pub mod exit;
pub mod load;
pub mod manage;
mod os;
pub mod run;
pub mod serve;

use std::io::{IsTerminal, Write};

use cli::{Cli, Command, lower};
pub use error::{Credentials, Error, Outcome};

/// Settings that every job honours.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context {
    /// `--show-secrets`: print tokens and keys instead of redacting them.
    pub show_secrets: bool,
}

/// Runs the job the command line asks for.
pub async fn run(cli: Cli) -> Result<Outcome, Error> {
    let context = Context {
        show_secrets: cli.show_secrets,
    };
    match cli.command {
        Command::Connect(mut args) => {
            // wscat's spellings: `-c URL` for the URL, `-n` for `-k`.
            let url = args.url.take().or_else(|| args.connect_url.take());
            args.connection.insecure |= args.no_check;
            let mut lowered = lower::connection(&args.connection, url)?;
            lowered.options.inbox = lower::inbox(&args.inbox)?;
            lowered.options.session = lower::session(&args.session)?;
            if let (Some(stage), None) = (&lowered.stage, &args.history_file) {
                // Each stage keeps its own REPL history.
                args.history_file = cli::profile::history_file(&stage.name);
            }
            args.url = lowered.url;
            let given = Credentials::of(&lowered.options);
            connect::run(args, lowered.options, context)
                .await
                .map_err(|e| e.given(given))
        }
        Command::Run(mut args) => {
            let mut lowered = lower::connection(&args.connection, args.url.take())?;
            lowered.options.inbox = lower::inbox(&args.inbox)?;
            lowered.options.session = lower::session(&args.session)?;
            args.url = lowered.url;
            run::run(args, lowered.options, context).await
        }
        Command::Load(mut args) => {
            if let Some(cli::LoadCommand::Merge(merge)) = args.command.take() {
                return load::merge::run(merge, context);
            }
            let url = Some(std::mem::take(&mut args.url)).filter(|url| !url.is_empty());
            if url.is_none() && args.connection.stage.is_none() {
                return Err(Error::usage(
                    "load needs the stage to ping: `wsprobe load URL …`, or `wsprobe load \
                     --stage NAME …` with the URL from wsprobe.toml",
                ));
            }
            let mut lowered = lower::connection(&args.connection, url)?;
            lowered.options.session = lower::load_session(&args.session)?;
            args.url = lowered.url.unwrap_or_default();
            let given = Credentials::of(&lowered.options);
            load::run(*args, lowered.options, context)
                .await
                .map_err(|e| e.given(given))
        }
        Command::Serve(args) => serve::run(args, context).await,
        Command::Manage(mut args) => {
            let url = Some(std::mem::take(&mut args.url)).filter(|url| !url.is_empty());
            let lowered = lower::manage_connection(&args.connection, url)?;
            args.url = lowered.url.unwrap_or_default();
            manage::run(args, lowered.options, context).await
        }
        Command::Completions { shell } => {
            // A closed stdout (`| head`) is not a failure.
            let _ = write_completions(shell, &mut std::io::stdout().lock());
            Ok(Outcome::Success)
        }
    }
}

/// Writes the completion script for `shell`. It is generated in memory first: clap_complete
/// panics when its writer fails, and stdout may be a closed pipe.
fn write_completions(shell: clap_complete::Shell, out: &mut impl Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "wsprobe", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Decides once, at start-up, whether output is coloured: never with `--no-color`,
/// `NO_COLOR` or when stdout is not a terminal.
pub fn init_color(no_color_flag: bool) {
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if no_color_flag || no_color_env || !std::io::stdout().is_terminal() {
        colored::control::set_override(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader is gone, like stdout piped into `head` after it exits.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn completions_into_a_closed_pipe_are_an_error_not_a_panic() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh] {
            let error = write_completions(shell, &mut ClosedPipe).unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
        }
        let mut script = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut script).unwrap();
        assert!(String::from_utf8(script).unwrap().contains("wsprobe"));
    }
}
