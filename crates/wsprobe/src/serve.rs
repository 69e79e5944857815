//! `wsprobe serve`: lowers the flags into the server's configuration, prints the URLs,
//! serves until SIGINT or SIGTERM, then closes every connection with 1001 and succeeds.

use std::io::Write as _;

use crate::cli::ServeArgs;
use crate::cli::lower;
use crate::{Context, Error, Outcome};

/// Runs `wsprobe serve`.
pub(crate) async fn run(args: ServeArgs, _context: Context) -> Result<Outcome, Error> {
    let config = lower::serve_config(&args)?;
    // Each connection is a socket: the soft limit (often 1024) would refuse clients long
    // before the hard one.
    let _ = crate::os::raise_open_file_limit();
    let signal = wsprobe_serve::shutdown_signal();
    let server = wsprobe_serve::spawn(config, args.listen)
        .await
        .map_err(|e| Error::Other(anyhow::anyhow!("cannot listen on {}: {e}", args.listen)))?;
    {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout is not a reason to stop serving.
        let _ = writeln!(stdout, "{}", server.ws_url());
        let _ = writeln!(stdout, "{}", server.connections_url());
        let _ = stdout.flush();
    }
    if let Some(path) = &args.tls_self_signed {
        let path = wsprobe_serve::self_signed_path(path.as_deref());
        // On stderr: stdout's first two lines are the URLs, which scripts read.
        let _ = writeln!(
            std::io::stderr(),
            "self-signed certificate for localhost, 127.0.0.1 and ::1 written to {0}; \
             trust it with --cacert {0}",
            path.display()
        );
    }
    signal.await;
    server.shutdown().await;
    if let Some(None) = &args.tls_self_signed {
        // The default file is ours (named after this process); a PATH the user gave is
        // theirs to keep.
        let _ = std::fs::remove_file(wsprobe_serve::self_signed_path(None));
    }
    Ok(Outcome::Success)
}
