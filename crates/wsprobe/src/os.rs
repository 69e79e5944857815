//! What wsprobe asks of the operating system, shared by the front-ends: the signals that
//! interrupt a run (`run` and `load` treat SIGINT, SIGTERM and SIGHUP alike) and the
//! open-file limit (`load` and `serve` raise it to the hard limit at start).

/// The signals that interrupt a run: Ctrl-C (SIGINT), and SIGTERM and SIGHUP, which CI
/// cancellation, `timeout(1)`, Kubernetes and a closed terminal send; all three act alike.
/// Listened for from [`Interrupts::register`] on: a signal that comes while the listener
/// is not being polled is kept for the next [`Interrupts::next`], not lost.
pub(crate) struct Interrupts {
    #[cfg(unix)]
    signals: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl Interrupts {
    pub(crate) fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut kinds = vec![
                ("SIGINT", SignalKind::interrupt()),
                ("SIGTERM", SignalKind::terminate()),
            ];
            // Under `nohup`, a hangup must not stop the run: an ignored SIGHUP stays so.
            if !hangup_ignored_at_start() {
                kinds.push(("SIGHUP", SignalKind::hangup()));
            }
            let signals = kinds
                .into_iter()
                .filter_map(|(name, kind)| signal(kind).ok().map(|signal| (name, signal)))
                .collect();
            Self { signals }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The name of the next signal; `None` when this platform cannot listen for any.
    pub(crate) async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        {
            if self.signals.is_empty() {
                return None;
            }
            std::future::poll_fn(|cx| {
                for (name, signal) in &mut self.signals {
                    if let std::task::Poll::Ready(Some(())) = signal.poll_recv(cx) {
                        return std::task::Poll::Ready(Some(*name));
                    }
                }
                std::task::Poll::Pending
            })
            .await
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
        }
    }
}

/// Whether SIGHUP was ignored when wsprobe started, as `nohup` (or `trap '' HUP`) leaves
/// it. Linux tells in `/proc/self/status`; elsewhere it is taken as not ignored.
#[cfg(unix)]
fn hangup_ignored_at_start() -> bool {
    /// SIGHUP's number on every Unix.
    const SIGHUP: u32 = 1;
    if !cfg!(target_os = "linux") {
        return false;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status
                .lines()
                .find_map(|line| line.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|ignored| ignored & (1 << (SIGHUP - 1)) != 0)
}

/// Sets the soft `RLIMIT_NOFILE` to the hard one; returns the soft limit now in force.
#[cfg(unix)]
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        // macOS refuses an unlimited soft limit; 10240 (OPEN_MAX) is its usual ceiling.
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(10_240), hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(not(unix))]
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A Ctrl-C that comes before the run waits for one (while the workers start) is kept;
    /// before, it killed the process with no report and no exit code 130.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_ctrl_c_before_the_first_wait_is_kept() {
        let mut interrupts = Interrupts::register();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), interrupts.next())
            .await
            .expect("the Ctrl-C sent before the wait arrives")
            .expect("Ctrl-C can be listened for");
    }
}
