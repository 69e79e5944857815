//! `wsprobe load`: load-ping a stage with many connections and read exact latency
//! percentiles, error counts by cause, and a pass/fail against thresholds.
//!
//! [`run`] turns the command line into a [`Plan`] (open or closed [`WorkMode`], a
//! duration or count [`Limit`]), checks every input before anything connects, starts one
//! worker task per connection (`worker.rs`) and a monitor that gathers the histograms
//! each tick (`stats.rs`), drives the progress line (`progress.rs`) and writes the
//! `--hdr-log` (`report.rs`). When the workers are done it builds the [`LoadReport`],
//! evaluates the thresholds (`threshold.rs`) and prints.
//!
//! The files: `schedule.rs` (when connections open and pings are due), `ping.rs` (ping
//! encoding and echo decoding), `inflight.rs` (matching echoes by sequence), `shard.rs`
//! (`--shard` and `--start-at`: the split and the common start), `merge.rs` (`wsprobe
//! load merge`: shard reports added up exactly).

mod html;
mod inflight;
pub(crate) mod merge;
mod ping;
mod progress;
pub mod report;
mod schedule;
pub(crate) mod shard;
mod stats;
pub(crate) mod threshold;
mod timeline;
mod worker;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::cli::LoadArgs;
use crate::os::{Interrupts, raise_open_file_limit};
use crate::{Context, Error, Outcome};
use wsprobe_core::client::{self, ClientConfig};
use wsprobe_core::options::ConnectOptions;
use wsprobe_core::options::EchoPolicy;
use wsprobe_core::report_file::ReportFile;

use report::{
    ConnectionsReport, HdrLog, Histograms, Interval, LatencySummary, MessagesReport, Settings,
    ShardIdentity,
};
pub use report::{LoadReport, Model};
use schedule::{Openings, Timetable};
use shard::Shard;
use stats::{Collector, Stats};
use threshold::{Observed, Threshold};
use worker::{Shared, WorkerEnd};

/// How long a run sends for when neither `-d` nor `-n` is given.
pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// The highest `--rate`: far above what one process sends (a few hundred thousand pings a
/// second at best), low enough that the timetable's arithmetic stays exact.
const MAX_RATE: f64 = 10_000_000.0;

/// Far more connections than one client address can hold (each needs a local port, and
/// there are 65535); a larger count would only overflow the per-connection bookkeeping.
const MAX_CONNECTIONS: usize = 1_000_000;

/// Opening the connections for longer than this gets a note on stderr.
const LONG_OPENING: Duration = Duration::from_secs(10);

/// How often the monitor gathers histograms and redraws the progress line.
const TICK: Duration = Duration::from_millis(100);

/// Length of an interval of the progress line's p50/p99 and of the `--hdr-log`.
const INTERVAL: Duration = Duration::from_secs(1);

/// How pings are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum WorkMode {
    /// `--rate`: every connection follows a fixed timetable.
    Open(Timetable),
    /// No `--rate`: one ping in flight per connection, the next as soon as its echo is in.
    Closed,
}

/// When sending stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `-d`: pings due (open) or ready (closed) before this long after the start.
    Duration(Duration),
    /// `-n`: this many pings over all connections.
    Count(u64),
}

/// What a load run does, decided from the command line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Open or closed model.
    pub(crate) mode: WorkMode,
    /// When sending stops.
    pub(crate) limit: Limit,
    /// `-c`.
    pub(crate) connections: usize,
    /// When each connection opens.
    pub(crate) openings: Openings,
    /// `--timeout`: an echo later than this is late; a ping not echoed by the end plus
    /// this is lost.
    pub(crate) timeout: Duration,
}

impl Plan {
    /// Checks the numbers of the command line and decides the plan.
    pub(crate) fn from_args(args: &LoadArgs, options: &ConnectOptions) -> Result<Self, Error> {
        if args.connections == 0 {
            return Err(Error::usage("-c/--connections must be at least 1"));
        }
        if args.connections > MAX_CONNECTIONS {
            return Err(Error::usage(format!(
                "-c/--connections must be at most {MAX_CONNECTIONS} (each connection takes a \
                 local port: one client address cannot hold more than 65535 to one server)"
            )));
        }
        if args.size > ping::MAX_SIZE {
            return Err(Error::usage(format!(
                "--size must be at most {} (16MiB, the largest WebSocket frame wsprobe reads)",
                ping::MAX_SIZE
            )));
        }
        if args.count == Some(0) {
            return Err(Error::usage("-n/--count must be at least 1"));
        }
        if args.duration == Some(Duration::ZERO) {
            return Err(Error::usage("-d/--duration must be longer than zero"));
        }
        if options.echo == EchoPolicy::Off {
            return Err(Error::usage(
                "`load` matches every ping with its echo, so --echo off cannot be used; \
                 pick --echo body (the default) or --echo full",
            ));
        }
        if options.fields.route_field == options.fields.body_field {
            return Err(Error::usage(
                "--route-field and --body-field must name different fields",
            ));
        }
        if args.timeout.is_zero() {
            return Err(Error::usage("--timeout must be longer than zero"));
        }
        if args.rate.is_some_and(|rate| rate > MAX_RATE) {
            return Err(Error::usage(format!(
                "--rate must be at most {MAX_RATE}/s (one wsprobe process sends a few hundred \
                 thousand pings a second at best; spread a higher load over several)"
            )));
        }
        let limit = match (args.count, args.duration) {
            (Some(count), _) => Limit::Count(count),
            (None, Some(duration)) => Limit::Duration(duration),
            (None, None) => Limit::Duration(DEFAULT_DURATION),
        };
        let mode = match args.rate {
            Some(rate) => WorkMode::Open(Timetable::new(args.connections, rate)),
            None => WorkMode::Closed,
        };
        Ok(Self {
            mode,
            limit,
            connections: args.connections,
            openings: Openings::new(args.connections, args.connect_rate, args.ramp_up),
            timeout: args.timeout,
        })
    }
}

/// Where `--report-json` goes: a file written whole at the end, or stdout (`-`).
pub(crate) enum JsonOut {
    /// A report file (written to a temporary file, put in place whole).
    File(ReportFile),
    /// `-`: standard output (the table then goes to stderr).
    Stdout,
}

impl JsonOut {
    /// Opens `--report-json PATH` before anything runs, so a bad path fails first.
    pub(crate) fn create(path: Option<&std::path::Path>) -> Result<Option<Self>, Error> {
        let Some(path) = path else {
            return Ok(None);
        };
        if path == std::path::Path::new("-") {
            return Ok(Some(Self::Stdout));
        }
        ReportFile::create(path)
            .map(|file| Some(Self::File(file)))
            .map_err(|e| {
                Error::usage(format!(
                    "cannot write --report-json {}: {e}",
                    path.display()
                ))
            })
    }

    /// Writes the document; a closed stdout is not an error.
    pub(crate) fn write(self, json: &str) -> Result<(), Error> {
        match self {
            Self::File(file) => {
                let path = file.path().to_owned();
                file.write(json.as_bytes()).map_err(|e| {
                    Error::Other(anyhow::anyhow!("cannot write {}: {e}", path.display()))
                })
            }
            Self::Stdout => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(json.as_bytes());
                let _ = stdout.flush();
                Ok(())
            }
        }
    }
}

/// The settings of the whole command, as the report records them (before any split).
fn settings(args: &LoadArgs, options: &ConnectOptions) -> Settings {
    let seconds = |d: Duration| d.as_secs_f64();
    Settings {
        connections: args.connections as u64,
        rate: args.rate,
        count: args.count,
        duration_s: match (args.count, args.duration) {
            (Some(_), _) => None,
            (None, duration) => Some(seconds(duration.unwrap_or(DEFAULT_DURATION))),
        },
        ramp_up_s: args.ramp_up.map(seconds),
        connect_rate: args.connect_rate,
        size: args.size,
        route: args.route.clone(),
        echo: match options.echo {
            EchoPolicy::Full => "full".into(),
            EchoPolicy::Body | EchoPolicy::Off => "body".into(),
        },
        timeout_s: seconds(args.timeout),
        start_at: args
            .start_at
            .map(|at| humantime::format_rfc3339_nanos(at).to_string()),
        thresholds: args.thresholds.clone(),
        // The message's text is left out: it may carry a token, and the report is shared.
        keepalive: options.session.keepalive.as_ref().map(|keepalive| {
            let every = humantime::format_duration(keepalive.every);
            match &keepalive.message {
                Some(_) => format!("{every} message"),
                None => format!("{every} ping"),
            }
        }),
        reconnect: options.session.reconnect.map(|policy| {
            let when = match policy.when {
                wsprobe_core::reconnect::ReconnectWhen::GoingAway => "going-away",
                wsprobe_core::reconnect::ReconnectWhen::Always => "always",
            };
            format!("{when}, at most {} attempts", policy.max_attempts)
        }),
    }
}

/// The command line of one shard: its part of the connections, `--rate`, `-n` and
/// `--connect-rate` (see `shard.rs`); a shard that would get nothing to do is a usage
/// error.
fn shard_args(args: &LoadArgs, shard: Shard) -> Result<LoadArgs, Error> {
    let mut mine = args.clone();
    if (args.connections as u64) < shard.count {
        return Err(Error::usage(format!(
            "-c {} cannot be split over {} shards: each needs at least one connection",
            args.connections, shard.count
        )));
    }
    mine.connections =
        usize::try_from(shard::split_whole(args.connections as u64, shard)).unwrap_or(usize::MAX);
    if let Some(count) = args.count {
        if count < shard.count {
            return Err(Error::usage(format!(
                "-n {count} cannot be split over {} shards: each needs at least one ping",
                shard.count
            )));
        }
        mine.count = Some(shard::split_whole(count, shard));
    }
    mine.rate = args.rate.map(|rate| shard::split_rate(rate, shard));
    mine.connect_rate = shard::split_rate(args.connect_rate, shard);
    Ok(mine)
}

/// Runs `wsprobe load`: prints the report, writes the files asked for, and comes out per
/// the thresholds (exit 1 on a breach), Ctrl-C (130), or no connection at all (3). A
/// shard (`--shard`) runs its part of the command and leaves the thresholds to `load
/// merge`.
pub(crate) async fn run(
    whole: LoadArgs,
    options: ConnectOptions,
    context: Context,
) -> Result<Outcome, Error> {
    // Everything the user typed is checked before the first connection.
    let thresholds = whole
        .thresholds
        .iter()
        .map(|text| threshold::parse(text))
        .collect::<Result<Vec<Threshold>, String>>()
        .map_err(Error::Usage)?;
    let shard = whole
        .shard
        .map(|flag| flag.resolve(std::env::var(shard::INDEX_VARIABLE).ok().as_deref()))
        .transpose()
        .map_err(Error::Usage)?;
    // A shard's plan is checked as a plan of its own: the limits (-c, --rate) are those
    // of one process, and the whole run may go past them.
    let args = match shard {
        Some(shard) => shard_args(&whole, shard)?,
        None => whole.clone(),
    };
    let plan = Plan::from_args(&args, &options)?;
    let url = client::parse_url(&args.url)?;
    let client = client_config(&options, &args)?;
    check_local_addresses(&client, &url)?;
    let report_json = JsonOut::create(args.report_json.as_deref())?;
    let report_html = create_report_html(args.report_html.as_deref())?;
    let started_wall = SystemTime::now();
    let start = Instant::now();
    let start_at_us = match args.start_at {
        Some(at) => {
            shard::check_start_at(at, started_wall).map_err(Error::Usage)?;
            // Within the grace, a past TIME counts as the start of the run: sending begins
            // once the connections are open, on a timetable anchored at the start.
            Some(at.duration_since(started_wall).map_or(0, |ahead| {
                u64::try_from(ahead.as_micros()).unwrap_or(u64::MAX)
            }))
        }
        None => None,
    };
    let hdr_log = args
        .hdr_log
        .as_deref()
        .map(|path| {
            HdrLog::create(path, started_wall).map_err(|e| {
                Error::usage(format!("cannot write --hdr-log {}: {e}", path.display()))
            })
        })
        .transpose()?;
    let settings = settings(&whole, &options);
    let shard_identity = shard.map(|shard| ShardIdentity {
        index: shard.index,
        count: shard.count,
        run_id: whole.run_id.clone().unwrap_or_else(|| {
            // The URL as typed (with any token): the id reveals nothing, and two stages
            // with different tokens are different runs.
            let digest_input = serde_json::json!({ "url": whole.url, "settings": settings });
            shard::run_id_of(&digest_input.to_string())
        }),
        first_connection: shard::first_connection(whole.connections as u64, shard),
    });
    if let Some(identity) = &shard_identity
        && !thresholds.is_empty()
    {
        let _ = writeln!(
            std::io::stderr(),
            "note: shard {} of {}: --threshold is not evaluated by a shard; `wsprobe load \
             merge` evaluates it on the whole run",
            identity.index,
            identity.count
        );
    }
    check_open_file_limit(plan.connections);
    announce_long_opening(&plan);

    let format = ping::PingFormat::new(&args.route, &options.fields, args.size, options.echo);
    let shared = Arc::new(Shared {
        url: url.clone(),
        client,
        plan: plan.clone(),
        format,
        stats: Stats::new(start, shard_count()),
        tickets: AtomicU64::new(match plan.limit {
            Limit::Count(count) => count,
            Limit::Duration(_) => 0,
        }),
        openings_left: AtomicUsize::new(plan.connections),
        go: watch::channel(None).0,
        start_at_us,
        opened_us: AtomicU64::new(0),
        first_connection: shard_identity.as_ref().map_or(0, |s| s.first_connection),
        keepalive: options.session.keepalive.clone(),
        reconnect: options.session.reconnect,
    });

    let (stop_monitor, monitor_stopped) = oneshot::channel();
    let progress = progress::Progress::new(!args.no_progress);
    // The timeline (a few KiB a second) goes into the JSON report's `intervals` and the
    // HTML report.
    let timeline = Some(timeline::Recorder::new(started_wall));
    let monitor = tokio::spawn(monitor(
        shared.clone(),
        progress.clone(),
        hdr_log,
        timeline,
        started_wall,
        monitor_stopped,
    ));
    // Registered before the first worker starts, so no Ctrl-C falls back to the default
    // action (killing the process without a report).
    let interrupts = Interrupts::register();
    let mut controls = Controls {
        stop: Vec::with_capacity(plan.connections),
        abort: Vec::with_capacity(plan.connections),
        timeout: plan.timeout,
        progress,
    };
    let mut workers = JoinSet::new();
    for index in 0..plan.connections {
        let (stop_sender, stop) = oneshot::channel();
        let (abort_sender, abort) = oneshot::channel();
        controls.stop.push(stop_sender);
        controls.abort.push(abort_sender);
        workers.spawn(worker::run(
            shared.clone(),
            index,
            worker::Stop::new(stop),
            worker::Stop::new(abort),
        ));
    }
    let Joined {
        ends,
        interrupted,
        crashed,
    } = wait_for_workers(&mut workers, &shared.stats, controls, interrupts).await;
    let _ = stop_monitor.send(());
    let (collector, hdr_result, timeline) = monitor.await.map_err(|e| {
        Error::Other(anyhow::anyhow!(
            "the load monitor stopped unexpectedly: {e}"
        ))
    })?;

    let elapsed = start.elapsed();
    let mut rare = shared.stats.take_rare();
    let first_connect_error = rare.first_connect_error.take();
    let mut report = build_report(
        &shared,
        &args,
        &url,
        &collector,
        rare,
        &ends,
        interrupted,
        elapsed,
        context,
    );
    report.started_at = humantime::format_rfc3339_millis(started_wall).to_string();
    let timeline = timeline.map(timeline::Recorder::finish);
    if let Some(timeline) = &timeline {
        report.intervals = report_intervals(timeline);
    }
    report.settings = Some(settings);
    if let Some(at_us) = start_at_us {
        let opened_us = shared.opened_us.load(std::sync::atomic::Ordering::Acquire);
        report.opening_s = opened_us as f64 / 1e6;
        if opened_us > at_us && !report.interrupted {
            let _ = writeln!(
                std::io::stderr(),
                "warning: the connections were still opening at --start-at (until {:.2}s \
                 after it); the first pings were sent late, and that lateness is in the \
                 latencies: pick a later --start-at",
                (opened_us - at_us) as f64 / 1e6
            );
        }
    }
    if shard_identity.is_none() {
        let observed = Observed {
            round_trip: &collector.round_trip,
            errors: report.messages.errors,
            sent: report.messages.sent,
            connect_errors: report.connections.failed,
            connect_attempts: report.connections.opened + report.connections.failed,
            rate: report.achieved_rate,
            reconnects: report.connections.reconnects,
            lost_to_reconnect: report.messages.lost_to_reconnect,
        };
        report.thresholds = thresholds.iter().map(|t| t.evaluate(&observed)).collect();
    }
    report.shard = shard_identity;

    let to_stdout = matches!(report_json, Some(JsonOut::Stdout));
    print_report(&report, to_stdout);
    for hint in resource_hints(&report, !args.local_addresses.is_empty()) {
        let _ = writeln!(std::io::stderr(), "{hint}");
    }
    if let Some(out) = report_json {
        out.write(&report::to_json(&report))?;
    }
    if let (Some(file), Some(timeline)) = (report_html, timeline) {
        let path = file.path().to_owned();
        let args: Vec<String> = std::env::args().collect();
        let command = html::command_line(&args, context.show_secrets);
        file.write(html::render(&report, &timeline, &command, &[]).as_bytes())
            .map_err(|e| Error::Other(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    }
    if let Err(e) = hdr_result {
        return Err(Error::Other(anyhow::anyhow!("cannot write --hdr-log: {e}")));
    }

    if crashed > 0 {
        return Err(Error::Other(anyhow::anyhow!(
            "{crashed} of {} connection workers crashed (a bug in wsprobe; the panic is \
             above), so the report leaves out what they measured",
            plan.connections
        )));
    }
    if report.interrupted {
        return Ok(Outcome::Interrupted);
    }
    if report.connections.opened == 0
        && let Some(error) = first_connect_error
    {
        return Err(Error::Connect(error));
    }
    Ok(if report.breached() {
        Outcome::ChecksFailed
    } else {
        Outcome::Success
    })
}

/// Histogram shards: enough that worker threads rarely contend, few enough to stay small.
fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).min(16))
}

/// A run stopped by a signal.
#[derive(Clone, Copy, Debug)]
struct Interruption {
    /// When the first signal came, µs since the start.
    at_us: u64,
    /// Which signal it was (`SIGINT`, `SIGTERM`, `SIGHUP`).
    signal: &'static str,
}

/// How the workers ended.
struct Joined {
    /// What each worker that finished reported.
    ends: Vec<WorkerEnd>,
    /// When and by what the run was interrupted, if it was.
    interrupted: Option<Interruption>,
    /// Workers that panicked (a bug; aborted ones, after a second Ctrl-C, do not count).
    crashed: usize,
}

/// How the run tells its workers to stop.
struct Controls {
    /// Stop sending, one per worker (the first Ctrl-C).
    stop: Vec<oneshot::Sender<()>>,
    /// Stop waiting for echoes and closing, one per worker (the second Ctrl-C). Kept
    /// until the end: a dropped sender means abort.
    abort: Vec<oneshot::Sender<()>>,
    /// `--timeout`, for the note on what the first Ctrl-C waits for.
    timeout: Duration,
    /// Where that note goes (above the progress line, if any).
    progress: progress::Progress,
}

/// Waits for every worker. The first Ctrl-C (or SIGTERM, SIGHUP) stops the sending
/// (workers then wait for the echoes in flight, up to the timeout); a second one ends
/// the waiting at once (the pings then in flight are not counted); a third aborts the
/// workers outright.
async fn wait_for_workers(
    workers: &mut JoinSet<WorkerEnd>,
    stats: &Stats,
    mut controls: Controls,
    mut interrupts: Interrupts,
) -> Joined {
    let mut joined = Joined {
        ends: Vec::with_capacity(workers.len()),
        interrupted: None,
        crashed: 0,
    };
    let mut listening = true;
    loop {
        tokio::select! {
            next = workers.join_next() => match next {
                Some(Ok(end)) => joined.ends.push(end),
                Some(Err(error)) => joined.crashed += usize::from(error.is_panic()),
                None => break,
            },
            signal = interrupts.next(), if listening => {
                let Some(signal) = signal else {
                    // No signal handling on this platform: just wait for the workers.
                    listening = false;
                    continue;
                };
                if joined.interrupted.is_none() {
                    joined.interrupted = Some(Interruption {
                        at_us: stats.now_us(),
                        signal,
                    });
                    for stop in controls.stop.drain(..) {
                        let _ = stop.send(());
                    }
                    controls.progress.note(&format!(
                        "stopping ({signal}): waiting up to {} for the echoes in flight; \
                         Ctrl-C again to stop at once",
                        humantime::format_duration(controls.timeout)
                    ));
                } else if !controls.abort.is_empty() {
                    for abort in controls.abort.drain(..) {
                        let _ = abort.send(());
                    }
                } else {
                    workers.abort_all();
                }
            }
        }
    }
    joined
}

/// How far past the last whole wall-clock second `wall` is.
fn past_the_second(wall: SystemTime) -> Duration {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| Duration::from_nanos(u64::from(since.subsec_nanos())))
        .unwrap_or_default()
}

/// The timeline as the JSON report's `intervals`: each labelled with the wall-clock
/// second it lies in (its middle's), round trips serialised exactly.
fn report_intervals(timeline: &timeline::Timeline) -> Vec<Interval> {
    timeline
        .intervals
        .iter()
        .map(|interval| {
            let middle = timeline.started
                + Duration::try_from_secs_f64(interval.start_s + interval.length_s / 2.0)
                    .unwrap_or_default();
            let mut round_trip = stats::new_histogram();
            interval.round_trip.add_to(&mut round_trip);
            let c = &interval.counts;
            let errors = [
                ("late", c.late),
                ("lost", c.lost),
                ("duplicated", c.duplicated),
                ("corrupted", c.corrupted),
                ("error_frames", c.error_frames),
                ("dropped", c.dropped),
            ];
            Interval {
                unix_s: middle
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs()),
                sent: c.sent,
                echoed: c.echoed,
                errors: errors
                    .into_iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(kind, count)| (kind.to_owned(), count))
                    .collect(),
                connect_failed: c.connect_failed,
                opened: c.opened,
                close_codes: interval
                    .close_codes
                    .iter()
                    .map(|(code, count)| (code.to_string(), *count))
                    .collect(),
                open: interval.open,
                round_trip_us: report::encode_histogram(&round_trip),
            }
        })
        .collect()
}

/// Every tick: gathers the histograms and redraws the progress line (rate and p50/p99
/// over the last second, rolling); every second: an interval in the `--hdr-log`.
/// Returns the totals when told to stop.
async fn monitor(
    shared: Arc<Shared>,
    progress: progress::Progress,
    mut hdr_log: Option<HdrLog>,
    mut timeline: Option<timeline::Recorder>,
    started_wall: SystemTime,
    mut stop: oneshot::Receiver<()>,
) -> (Collector, std::io::Result<()>, Option<timeline::Recorder>) {
    let stats = &shared.stats;
    let mut collector = Collector::default();
    let ticks_per_interval = (INTERVAL.as_millis() / TICK.as_millis()).max(1) as usize;
    let mut window = stats::Window::new(ticks_per_interval);
    // Intervals end on whole wall-clock seconds, so the intervals of shards on machines
    // whose clocks agree line up (a merge adds them by second): the first ends at the
    // first whole second after the start, and ticks fall on wall-clock tenths.
    let mut boundary = INTERVAL - past_the_second(started_wall);
    let phase = Duration::from_nanos((boundary.as_nanos() % TICK.as_nanos()) as u64);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::from_std(stats.start + phase), TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut interval_start = Duration::ZERO;
    let mut last_sent = 0;
    let mut snapshot = progress::Snapshot {
        wanted: shared.plan.connections,
        ..progress::Snapshot::default()
    };
    let mut log_result = Ok(());
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut stop => true,
        };
        collector.drain(stats);
        let elapsed = stats.start.elapsed();
        let sent = stats.total(|c| &c.sent);
        window.push(collector.take_tick(), sent - last_sent);
        last_sent = sent;
        // A tick may fire a hair before its wall-clock tenth.
        if elapsed + Duration::from_millis(1) >= boundary || stopping {
            let interval = collector.take_interval();
            let length = elapsed - interval_start;
            if let Some(log) = &mut hdr_log
                && log_result.is_ok()
                && !length.is_zero()
            {
                log_result = log.write_interval(&interval, interval_start, length);
            }
            if let Some(timeline) = &mut timeline {
                timeline.close(stats, &interval, interval_start, length);
            }
            interval_start = elapsed;
            while boundary <= elapsed + Duration::from_millis(1) {
                boundary += INTERVAL;
            }
        }
        let recent = window.round_trip();
        snapshot.elapsed = elapsed;
        snapshot.rate = window.sent() as f64 / (window.ticks() as f64 * TICK.as_secs_f64());
        snapshot.p50_us = (!recent.is_empty()).then(|| recent.value_at_quantile(0.5));
        snapshot.p99_us = (!recent.is_empty()).then(|| recent.value_at_quantile(0.99));
        snapshot.open = usize::try_from(stats.open_now()).unwrap_or(usize::MAX);
        snapshot.errors = stats.errors() + stats.total(|c| &c.connect_failed);
        progress.update(&snapshot);
        if stopping {
            break;
        }
    }
    progress.finish();
    if let Some(log) = hdr_log {
        log_result = log_result.and(log.finish());
    }
    (collector, log_result, timeline)
}

/// How load connects: the user's options, small tungstenite buffers (tens of thousands of
/// connections fit), incoming messages capped near what an echo needs, the host's name
/// resolved once for every connection, and the source addresses (`--local-address`).
fn client_config(options: &ConnectOptions, args: &LoadArgs) -> Result<ClientConfig, Error> {
    let mut client = crate::cli::lower::client_config(options)?
        .cache_dns()
        .small_buffers();
    client.local_addresses = client::LocalAddresses::new(args.local_addresses.clone());
    let incoming_limit = ping::incoming_limit(args.size);
    client.websocket = client
        .websocket
        // A server cannot make a connection hold more than an echo needs.
        .max_message_size(Some(incoming_limit))
        .max_frame_size(Some(incoming_limit));
    Ok(client)
}

/// Refuses (exit 2) `--local-address`es none of which can reach the address dialled (the
/// server's, or the proxy's), when it is an IP address: every connection would fail. A host
/// name may resolve to addresses of both families; its connections dial those of the
/// source addresses' family, and fail (counted as `other`) if it has none.
fn check_local_addresses(client: &ClientConfig, url: &url::Url) -> Result<(), Error> {
    let local = &client.local_addresses;
    let dialled = match client.proxy.as_ref().and_then(|proxy| proxy.for_url(url)) {
        Some(proxy) => proxy.host.parse::<std::net::IpAddr>().ok(),
        None => match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        },
    };
    match dialled {
        Some(target) if !local.can_reach(target) => {
            let shown: Vec<String> = local.addresses().iter().map(ToString::to_string).collect();
            let (theirs, ours) = if target.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            Err(Error::usage(format!(
                "--local-address {} is {ours}, and {target} is {theirs}: a connection binds \
                 to a source address of the family it dials; give a --local-address of \
                 {target}'s family",
                shown.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// The report of what ran.
#[allow(clippy::too_many_arguments)]
fn build_report(
    shared: &Shared,
    args: &LoadArgs,
    url: &url::Url,
    collector: &Collector,
    rare: stats::Rare,
    ends: &[WorkerEnd],
    interrupted: Option<Interruption>,
    elapsed: Duration,
    context: Context,
) -> LoadReport {
    let stats = &shared.stats;
    let sent = stats.total(|c| &c.sent);
    // Every connection tried to open before the workers ended, so the go was given.
    let go_us = shared.go.borrow().unwrap_or_else(|| stats.now_us());
    let sending_us = sending_window_us(
        &shared.plan,
        go_us,
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        ends,
        interrupted.map(|interruption| interruption.at_us),
    );
    let achieved_rate = if sending_us == 0 {
        0.0
    } else {
        sent as f64 * 1e6 / sending_us as f64
    };
    // Query tokens (custom authorizers, presigned SigV4) are as secret as a password.
    let shown_url = if context.show_secrets {
        url.to_string()
    } else {
        client::redacted_url(url)
    };
    LoadReport {
        schema: report::SCHEMA.into(),
        url: shown_url,
        model: match shared.plan.mode {
            WorkMode::Open(_) => Model::Open,
            WorkMode::Closed => Model::Closed,
        },
        target_rate: args.rate,
        achieved_rate,
        size: args.size,
        route: args.route.clone(),
        echo: match shared.format.policy() {
            EchoPolicy::Full => "full".into(),
            EchoPolicy::Body | EchoPolicy::Off => "body".into(),
        },
        elapsed_s: elapsed.as_secs_f64(),
        opening_s: go_us as f64 / 1e6,
        sending_s: sending_us as f64 / 1e6,
        interrupted: interrupted.is_some(),
        interrupted_by: interrupted.map(|interruption| interruption.signal.to_owned()),
        client_lag: match shared.plan.mode {
            WorkMode::Open(_) => {
                let lagged = stats.total(|c| &c.lagged);
                Some(report::ClientLag {
                    bound_ms: worker::LAG_BOUND_US as f64 / 1e3,
                    lagged,
                    max_ms: stats.max_lag_us() as f64 / 1e3,
                    saturated: lagged as f64 > sent as f64 * report::SATURATED_SHARE,
                })
            }
            WorkMode::Closed => None,
        },
        connections: ConnectionsReport {
            requested: shared.plan.connections as u64,
            opened: stats.total(|c| &c.opened),
            failed: stats.total(|c| &c.connect_failed),
            failures: rare.connect_failures,
            dropped: stats.total(|c| &c.dropped),
            stalled: stats.total(|c| &c.stalled),
            close_codes: rare
                .close_codes
                .into_iter()
                .map(|(code, count)| (code.to_string(), count))
                .collect(),
            reconnects: stats.total(|c| &c.reconnects),
            reconnects_by_code: rare
                .reconnects_by_code
                .into_iter()
                .map(|(code, count)| (code.to_string(), count))
                .collect(),
            reconnect_failures: rare.reconnect_failures,
            disconnected_s: stats.total(|c| &c.disconnected_us) as f64 / 1e6,
        },
        messages: MessagesReport {
            sent,
            echoed: stats.total(|c| &c.echoed),
            late: stats.total(|c| &c.late),
            lost: stats.total(|c| &c.lost),
            not_sent: stats.total(|c| &c.not_sent),
            duplicated: stats.total(|c| &c.duplicated),
            in_flight: stats.total(|c| &c.in_flight),
            corrupted: stats.total(|c| &c.corrupted),
            error_frames: stats.total(|c| &c.error_frames),
            error_kinds: rare.error_kinds,
            errors: stats.errors(),
            lost_to_reconnect: stats.total(|c| &c.lost_to_reconnect),
            keepalives: stats.total(|c| &c.keepalives),
            keepalive_answers: stats.total(|c| &c.keepalive_answers),
        },
        round_trip_ms: LatencySummary::of(&collector.round_trip),
        connect_ms: LatencySummary::of(&collector.connect),
        reconnect_ms: LatencySummary::of(&collector.reconnect),
        thresholds: Vec::new(),
        started_at: String::new(),
        settings: None,
        shard: None,
        merged: None,
        histograms: Some(Histograms::encode(
            &collector.round_trip,
            &collector.connect,
            &collector.reconnect,
        )),
        intervals: Vec::new(),
    }
}

/// How long pings were being sent, in µs: what the achieved rate is measured over.
/// Sending starts at the go (`go_us`, µs since the start), for every connection at once;
/// the run ended at `end_us`, and the window never reaches past it.
///
/// Closed model: from the go until the last worker stopped sending. Open model, when a
/// connection went through its timetable: the planned sending time (`-d`, or
/// `-n / rate`; cut short by Ctrl-C), or longer if the sends fell behind (then up to the
/// last send plus one slot). When none did (every connection dropped, stalled or was
/// interrupted), only until the last one stopped sending: the rest of the plan never ran.
fn sending_window_us(
    plan: &Plan,
    go_us: u64,
    end_us: u64,
    ends: &[WorkerEnd],
    interrupted_at: Option<u64>,
) -> u64 {
    let since_go = |us: u64| us.saturating_sub(go_us);
    let stopped = ends
        .iter()
        .filter_map(|end| end.stopped_sending_us)
        .max()
        .map_or(0, since_go);
    let window = match plan.mode {
        WorkMode::Closed => stopped,
        WorkMode::Open(timetable) => {
            let planned = match plan.limit {
                Limit::Duration(duration) => {
                    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
                }
                Limit::Count(count) => timetable.global_due_us(count),
            };
            let planned = interrupted_at.map_or(planned, |at| planned.min(since_go(at)));
            let last_send = ends.iter().filter_map(|end| end.last_send_us).max();
            match last_send {
                Some(last) if ends.iter().any(|end| end.completed) => {
                    planned.max(since_go(last).saturating_add(timetable.period_us().round() as u64))
                }
                _ => planned.min(stopped),
            }
        }
    };
    window.min(since_go(end_us))
}

/// Prints the table and the threshold lines on stdout (on stderr when stdout carries
/// the JSON report); a closed stream is not an error.
pub(crate) fn print_report(report: &LoadReport, on_stderr: bool) {
    let mut text = report::to_table(report);
    if !report.thresholds.is_empty() {
        text.push('\n');
        text.push_str(&report::threshold_lines(report));
    }
    let written = if on_stderr {
        let mut stderr = std::io::stderr().lock();
        stderr
            .write_all(text.as_bytes())
            .and_then(|()| stderr.flush())
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
    };
    let _ = written;
}

/// What to do about connections that failed for lack of descriptors or of source ports
/// (`local_addresses`: whether `--local-address` was given), one hint per cause counted.
fn resource_hints(report: &LoadReport, local_addresses: bool) -> Vec<String> {
    let failures = &report.connections.failures;
    let mut hints = Vec::new();
    if failures.contains_key("too_many_open_files") {
        hints.push(format!(
            "hint: some connections failed with EMFILE (too many open files); raise the \
             limit with `ulimit -n {}` (and the hard limit if needed), use fewer connections, \
             or spread them over several processes or machines with --shard",
            report.connections.requested + 64
        ));
    }
    if failures.contains_key("system_out_of_files") {
        hints.push(
            "hint: some connections failed with ENFILE (the system's table of open files is \
             full); raise it (sysctl fs.file-max) or spread the connections over several \
             machines with --shard"
                .into(),
        );
    }
    let not_available = failures.contains_key("address_not_available");
    if not_available && local_addresses {
        hints.push(
            "hint: some connections failed with EADDRNOTAVAIL: a --local-address that is not \
             an address of this machine (see `ip addr`), or no source port left on it"
                .into(),
        );
    }
    if (not_available && !local_addresses) || failures.contains_key("address_in_use") {
        hints.push(
            "hint: some connections found no free source port (EADDRNOTAVAIL, EADDRINUSE): one \
             source address holds about 28,000 connections to one server address; add source \
             addresses with --local-address (e.g. 127.0.0.2 and 127.0.0.3 on loopback, or this \
             machine's other addresses), widen the port range (sysctl \
             net.ipv4.ip_local_port_range), or spread the connections with --shard"
                .into(),
        );
    }
    hints
}

/// Says so on stderr when opening the connections alone will take a while, since no
/// ping is sent until every connection has tried to open.
fn announce_long_opening(plan: &Plan) {
    let opening = plan.openings.at(plan.connections.saturating_sub(1));
    if opening >= LONG_OPENING {
        let shown = humantime::format_duration(Duration::from_secs(opening.as_secs()));
        let _ = writeln!(
            std::io::stderr(),
            "note: opening {} connections (one every {:?}) takes {shown}; sending starts after",
            plan.connections,
            plan.openings.interval()
        );
    }
}

/// Raises the soft limit on open files to the hard limit, and warns when even that is
/// too low for `connections` (each needs a socket, plus a few for the process itself).
fn check_open_file_limit(connections: usize) {
    let Some(limit) = raise_open_file_limit() else {
        return;
    };
    let needed = connections as u64 + 64;
    if limit < needed {
        let _ = writeln!(
            std::io::stderr(),
            "warning: this process may open only {limit} files, and {connections} connections \
             need about {needed}; connections beyond the limit will fail (raise it with \
             `ulimit -n {needed}`)"
        );
    }
}

/// Claims the `--report-html` file before anything runs, so a path that cannot be
/// written is a usage error, not a report lost at the end (`load` and `load merge`).
pub(crate) fn create_report_html(
    path: Option<&std::path::Path>,
) -> Result<Option<ReportFile>, Error> {
    path.map(|path| {
        ReportFile::create(path).map_err(|e| {
            Error::usage(format!(
                "cannot write --report-html {}: {e}",
                path.display()
            ))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> LoadArgs {
        let mut argv = vec!["wsprobe", "load", "ws://127.0.0.1:1/dev"];
        argv.extend_from_slice(line);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Load(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_follow_the_command_line() {
        let plan = Plan::from_args(
            &args(&["-c", "4", "--rate", "100/s", "-n", "50"]),
            &ConnectOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.mode, WorkMode::Open(Timetable::new(4, 100.0)));
        assert_eq!(plan.limit, Limit::Count(50));
        let plan = Plan::from_args(&args(&["-c", "2"]), &ConnectOptions::default()).unwrap();
        assert_eq!(plan.mode, WorkMode::Closed);
        assert_eq!(plan.limit, Limit::Duration(DEFAULT_DURATION));
        let plan = Plan::from_args(&args(&["-d", "3s"]), &ConnectOptions::default()).unwrap();
        assert_eq!(plan.limit, Limit::Duration(Duration::from_secs(3)));
    }

    #[test]
    fn a_shard_runs_its_part_of_the_command() {
        let whole = args(&[
            "-c",
            "10",
            "--rate",
            "1000/s",
            "-n",
            "100",
            "--connect-rate",
            "50/s",
            "--ramp-up",
            "9s",
        ]);
        let parts: Vec<LoadArgs> = (0..3)
            .map(|index| shard_args(&whole, Shard { index, count: 3 }).unwrap())
            .collect();
        let field = |f: fn(&LoadArgs) -> String| parts.iter().map(f).collect::<Vec<_>>();
        assert_eq!(field(|a| a.connections.to_string()), ["4", "3", "3"]);
        assert_eq!(
            field(|a| format!("{:?}", a.rate)),
            ["Some(334.0)", "Some(333.0)", "Some(333.0)"]
        );
        assert_eq!(
            field(|a| format!("{:?}", a.count)),
            ["Some(34)", "Some(33)", "Some(33)"]
        );
        assert_eq!(field(|a| a.connect_rate.to_string()), ["17", "17", "16"]);
        assert!(
            parts
                .iter()
                .all(|a| a.ramp_up == Some(Duration::from_secs(9)))
        );
        // The whole run may go past one process's limits; each shard may not.
        let huge = args(&["-c", "2000000", "--rate", "20000000/s"]);
        let part = shard_args(&huge, Shard { index: 0, count: 4 }).unwrap();
        assert!(Plan::from_args(&part, &ConnectOptions::default()).is_ok());
        for (line, count) in [(&["-c", "2"][..], 3), (&["-c", "5", "-n", "2"], 3)] {
            assert!(matches!(
                shard_args(&args(line), Shard { index: 0, count }),
                Err(Error::Usage(_))
            ));
        }
    }

    #[test]
    fn connections_share_one_dns_lookup_and_keep_small_buffers() {
        let client = client_config(&ConnectOptions::default(), &args(&[])).unwrap();
        assert!(client.dns_cache.is_some());
        assert!(client.local_addresses.addresses().is_empty());
        assert_eq!(client.websocket.read_buffer_size, 4096);
        assert_eq!(
            client.websocket.max_message_size,
            Some(ping::incoming_limit(64))
        );
    }

    #[test]
    fn local_addresses_of_the_other_family_than_the_server_are_usage_errors() {
        let check = |url: &str, line: &[&str]| {
            let client = client_config(&ConnectOptions::default(), &args(line)).unwrap();
            check_local_addresses(&client, &url::Url::parse(url).unwrap())
        };
        let v4 = [
            "--local-address",
            "127.0.0.2",
            "--local-address",
            "127.0.0.3",
        ];
        assert!(check("ws://127.0.0.1:9/dev", &v4).is_ok());
        // A name may have addresses of both families: checked per connection.
        assert!(check("ws://localhost:9/dev", &v4).is_ok());
        let Err(Error::Usage(message)) = check("ws://[::1]:9/dev", &v4) else {
            panic!("an IPv6 server with IPv4 source addresses is a usage error");
        };
        assert!(
            message.starts_with("--local-address 127.0.0.2, 127.0.0.3 is IPv4, and ::1 is IPv6"),
            "{message}"
        );
        let mixed = ["--local-address", "127.0.0.2", "--local-address", "::1"];
        assert!(check("ws://[::1]:9/dev", &mixed).is_ok());
        assert!(check("ws://127.0.0.1:9/dev", &[]).is_ok());
    }

    #[test]
    fn impossible_plans_are_usage_errors() {
        for line in [
            &["-c", "0"][..],
            &["-c", "1000001"],
            &["-c", "18446744073709551615"],
            &["--size", "16777217"],
            &["--size", "18446744073709551615"],
            &["-n", "0"],
            &["--echo", "off"],
            &["--route-field", "x", "--body-field", "x"],
            &["--timeout", "0s"],
            &["--rate", "1e308/s"],
            &["--rate", "10000001/s"],
        ] {
            let args = args(line);
            let options = crate::cli::lower::connection(&args.connection, None)
                .unwrap()
                .options;
            assert!(
                matches!(Plan::from_args(&args, &options), Err(Error::Usage(_))),
                "{line:?}"
            );
        }
    }

    /// A worker that panics is counted (the run then fails), not silently left out.
    #[tokio::test]
    async fn a_crashed_worker_is_counted() {
        let mut workers = JoinSet::new();
        workers.spawn(async { panic!("a bug in a worker") });
        workers.spawn(async {
            WorkerEnd {
                last_send_us: Some(1),
                stopped_sending_us: Some(2),
                completed: true,
            }
        });
        let stats = Stats::new(Instant::now(), 1);
        let joined = tokio::time::timeout(
            Duration::from_secs(10),
            wait_for_workers(
                &mut workers,
                &stats,
                Controls {
                    stop: Vec::new(),
                    abort: Vec::new(),
                    timeout: Duration::from_secs(1),
                    progress: progress::Progress::new(false),
                },
                Interrupts::register(),
            ),
        )
        .await
        .expect("the workers are joined");
        assert_eq!(joined.crashed, 1);
        assert_eq!(joined.ends.len(), 1);
    }

    #[test]
    fn sending_windows() {
        let open = Plan::from_args(
            &args(&["-c", "2", "--rate", "1000/s", "-n", "100"]),
            &ConnectOptions::default(),
        )
        .unwrap();
        // Times since the start; the go came at 5 ms, the run ended at 1 s.
        let (go, run_end) = (5_000, 1_000_000);
        let end = |last: u64| WorkerEnd {
            last_send_us: Some(go + last),
            stopped_sending_us: Some(go + last),
            completed: true,
        };
        let cut = |last: u64| WorkerEnd {
            completed: false,
            ..end(last)
        };
        // On time: the planned 100 ms.
        assert_eq!(
            sending_window_us(&open, go, run_end, &[end(98_000), end(99_000)], None),
            100_000
        );
        // Behind: up to the last send plus a slot.
        assert_eq!(
            sending_window_us(&open, go, run_end, &[end(150_000)], None),
            151_000
        );
        // Interrupted early.
        assert_eq!(
            sending_window_us(&open, go, run_end, &[cut(19_000)], Some(go + 20_000)),
            19_000
        );
        // Every connection dropped at 30 ms: the rest of the plan never ran.
        assert_eq!(
            sending_window_us(&open, go, run_end, &[cut(30_000), cut(20_000)], None),
            30_000
        );
        // One went on: the whole plan ran, at a lower rate.
        assert_eq!(
            sending_window_us(&open, go, run_end, &[cut(30_000), end(99_000)], None),
            100_000
        );
        // Never longer than the run itself.
        assert_eq!(
            sending_window_us(&open, go, go + 50_000, &[end(40_000)], None),
            50_000
        );
        // No connection opened: nothing was sent.
        assert_eq!(
            sending_window_us(&open, go, run_end, &[WorkerEnd::default()], None),
            0
        );
        let closed = Plan::from_args(&args(&["-n", "5"]), &ConnectOptions::default()).unwrap();
        assert_eq!(
            sending_window_us(&closed, go, run_end, &[end(7), end(9)], None),
            9
        );
        assert_eq!(sending_window_us(&closed, go, run_end, &[], None), 0);
    }
}
