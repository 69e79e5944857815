//! wsprobe: a command-line WebSocket tester for API Gateway stages and other WebSocket APIs.
//!
//! Data flows one way: command line ([`cli`]) → connection ([`client`]) → [`session`] →
//! front-end ([`repl`], [`script`], [`load`]) → report. [`serve`] is the bundled reference
//! backend. Everything lives in the library so tests can run a whole job in-process.

pub mod aws;
pub mod cli;
pub mod client;
pub mod command;
pub mod error;
pub mod error_reporting;
pub mod exit;
pub mod load;
pub mod manage;
pub mod message;
pub mod profile;
pub mod repl;
pub mod report_file;
pub mod script;
pub mod secret;
pub mod serve;
pub mod session;
pub mod values;

use std::io::{IsTerminal, Write};

use cli::{Cli, Command};
pub use error::{Error, Outcome};

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
    // A stage profile (`--stage`) fills the URL and connection options the user left out.
    match cli.command {
        Command::Connect(mut args) => {
            let stage = profile::apply(&mut args.connection, &mut args.url, &cli.given)?;
            if let (Some(stage), None) = (&stage, &args.history_file) {
                // Each stage keeps its own REPL history.
                args.history_file = profile::history_file(&stage.name);
            }
            repl::run(args, context).await
        }
        Command::Run(mut args) => {
            profile::apply(&mut args.connection, &mut args.url, &cli.given)?;
            script::run(args, context).await
        }
        Command::Load(mut args) => {
            let mut url = Some(args.url.clone()).filter(|url| !url.is_empty());
            profile::apply(&mut args.connection, &mut url, &cli.given)?;
            args.url = url.unwrap_or_default();
            load::run(args, context).await
        }
        Command::Serve(args) => serve::run(args, context).await,
        Command::Manage(mut args) => {
            let mut url = Some(args.url.clone()).filter(|url| !url.is_empty());
            profile::apply(&mut args.connection, &mut url, &cli.given)?;
            args.url = url.unwrap_or_default();
            manage::run(args, context).await
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
