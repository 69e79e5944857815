//! The live progress line (indicatif, on stderr, about ten times a second): elapsed
//! time, connections, the rate and p50/p99 of the last second, errors. It is off when
//! stderr is not a terminal or with `--no-progress`, so pipes and CI logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::threshold::format_ms;

/// What the line shows at one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Since the start of the run.
    pub(crate) elapsed: Duration,
    /// Connections open now.
    pub(crate) open: usize,
    /// `-c`.
    pub(crate) wanted: usize,
    /// Pings sent per second over the last second.
    pub(crate) rate: f64,
    /// Median round trip of the last second, in µs (none without echoes).
    pub(crate) p50_us: Option<u64>,
    /// 99th-percentile round trip of the last second, in µs (none without echoes).
    pub(crate) p99_us: Option<u64>,
    /// Ping errors plus connect failures so far.
    pub(crate) errors: u64,
}

/// The progress line; does nothing when off. Clones draw the same line.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A line on stderr when it is a terminal and `enabled`; otherwise none.
    pub(crate) fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            // A template without placeholders other than {spinner} and {msg} always parses.
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Self { bar }
    }

    /// Shows `snapshot`.
    pub(crate) fn update(&self, snapshot: &Snapshot) {
        if let Some(bar) = &self.bar {
            bar.set_message(line(snapshot));
            bar.tick();
        }
    }

    /// Prints `text` on stderr, above the line when there is one (so the two do not
    /// garble each other). A closed stderr is not an error.
    pub(crate) fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    /// Removes the line (before the report is printed).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The text of the line.
pub(crate) fn line(snapshot: &Snapshot) -> String {
    let latency = |us: Option<u64>| us.map_or_else(|| "-".to_owned(), |us| format_ms(us as f64));
    format!(
        "{:>6.1}s  {}/{} connections  {:.0}/s  p50 {}  p99 {}  {} errors",
        snapshot.elapsed.as_secs_f64(),
        snapshot.open,
        snapshot.wanted,
        snapshot.rate,
        latency(snapshot.p50_us),
        latency(snapshot.p99_us),
        snapshot.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_well() {
        let snapshot = Snapshot {
            elapsed: Duration::from_millis(12_340),
            open: 98,
            wanted: 100,
            rate: 1999.6,
            p50_us: Some(310),
            p99_us: Some(2_500),
            errors: 3,
        };
        assert_eq!(
            line(&snapshot),
            "  12.3s  98/100 connections  2000/s  p50 0.31ms  p99 2.50ms  3 errors"
        );
        let empty = line(&Snapshot::default());
        assert!(empty.contains("p50 -  p99 -"), "{empty}");
    }

    #[test]
    fn off_when_not_asked() {
        assert!(Progress::new(false).bar.is_none());
    }
}
