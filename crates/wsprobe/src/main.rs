//! The `wsprobe` binary: parse the command line, run the job, map the outcome to an exit code.

use std::process::ExitCode;

use wsprobe::cli::Cli;
use wsprobe::error_reporting;

fn main() -> ExitCode {
    let cli =
        <Cli as clap::Parser>::parse_from(wsprobe::cli::with_wscat_spelling(std::env::args_os()));
    wsprobe::init_color(cli.no_color);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(wsprobe::exit::CHECK_FAILED);
        }
    };
    let code = match runtime.block_on(wsprobe::run(cli)) {
        Ok(outcome) => error_reporting::exit_code(outcome),
        Err(error) => error_reporting::report(&error),
    };
    // A blocked stdin reader (the REPL's line editor) must not keep the process alive.
    runtime.shutdown_background();
    ExitCode::from(code)
}
