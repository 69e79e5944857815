//! What the workers measure, shared: latency histograms in a few locked shards and event
//! counters in as many padded sets of atomics (a worker records into shard `connection %
//! shards`, so two cores rarely meet on a lock or a cache line), and the rare things
//! (connect failures by cause, close codes, error frames by kind) behind one lock. A
//! [`Collector`] drains the shards every tick into the run's totals and into the current
//! one-second interval (for the progress line and the `--hdr-log`).
//!
//! Latencies are recorded in microseconds, from 1 µs to 10 minutes at 3 significant
//! digits; longer ones are clamped to the top. A histogram per connection would cost
//! ~150 KiB each, far too much for 10,000 connections, hence the shared shards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Largest latency told apart, in µs (10 minutes).
const HIGHEST_US: u64 = 600_000_000;

/// An empty latency histogram (µs, 3 significant digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")
}

/// Why a connection could not be opened, as counted in the report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ConnectCause {
    /// The handshake was answered with this HTTP status.
    Status(u16),
    /// Nothing listened.
    Refused,
    /// The name did not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls,
    /// The HTTP proxy did not open a tunnel.
    Proxy,
    /// Longer than `--connect-timeout`.
    Timeout,
    /// The process ran out of file descriptors (EMFILE).
    TooManyOpenFiles,
    /// The system ran out of file descriptors (ENFILE).
    SystemOutOfFiles,
    /// No source port was free for this server, or a `--local-address` is not one of this
    /// machine's (EADDRNOTAVAIL).
    AddressNotAvailable,
    /// The source ports of an address are all taken (EADDRINUSE).
    AddressInUse,
    /// Anything else (I/O, protocol).
    Other,
}

impl ConnectCause {
    /// Classifies a connect error.
    pub(crate) fn of(error: &wsprobe_core::client::ConnectError) -> Self {
        use wsprobe_core::client::ConnectError as E;
        match error {
            E::Rejected { status, .. } => Self::Status(*status),
            E::Refused { .. } => Self::Refused,
            E::Dns { .. } => Self::Dns,
            E::Tls { .. } => Self::Tls,
            E::Timeout { .. } => Self::Timeout,
            // Running out of descriptors or ports on the way to the proxy is ours to fix.
            E::Proxy { reason, .. } => os_error(reason)
                .and_then(Self::of_os_error)
                .unwrap_or(Self::Proxy),
            E::Other { reason, .. } => os_error(reason)
                .and_then(Self::of_os_error)
                .unwrap_or(Self::Other),
            E::InvalidUrl { .. } => Self::Other,
        }
    }

    /// The causes told apart by their OS error: running out of descriptors or of ports.
    #[cfg(unix)]
    fn of_os_error(code: i32) -> Option<Self> {
        use nix::errno::Errno;
        match Errno::from_raw(code) {
            Errno::EMFILE => Some(Self::TooManyOpenFiles),
            Errno::ENFILE => Some(Self::SystemOutOfFiles),
            Errno::EADDRNOTAVAIL => Some(Self::AddressNotAvailable),
            Errno::EADDRINUSE => Some(Self::AddressInUse),
            _ => None,
        }
    }

    #[cfg(not(unix))]
    fn of_os_error(_code: i32) -> Option<Self> {
        None
    }

    /// The key in reports: the status number, or a word.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Status(status) => status.to_string(),
            Self::Refused => "refused".into(),
            Self::Dns => "dns".into(),
            Self::Tls => "tls".into(),
            Self::Timeout => "timeout".into(),
            Self::Proxy => "proxy".into(),
            Self::TooManyOpenFiles => "too_many_open_files".into(),
            Self::SystemOutOfFiles => "system_out_of_files".into(),
            Self::AddressNotAvailable => "address_not_available".into(),
            Self::AddressInUse => "address_in_use".into(),
            Self::Other => "other".into(),
        }
    }
}

/// The OS error number at the end of an I/O error's text (`… (os error 99)`): the client
/// keeps I/O errors as text.
fn os_error(reason: &str) -> Option<i32> {
    const MARK: &str = "(os error ";
    let rest = &reason[reason.rfind(MARK)? + MARK.len()..];
    rest[..rest.find(')')?].parse().ok()
}

/// Event counters of one shard, updated by the workers with relaxed atomics. Each shard
/// sits on cache lines of its own, so cores counting for different shards do not fight
/// over one line; totals are sums over the shards.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    /// Pings sent.
    pub(crate) sent: AtomicU64,
    /// Echoes back within the timeout.
    pub(crate) echoed: AtomicU64,
    /// Echoes back after the timeout.
    pub(crate) late: AtomicU64,
    /// Pings never echoed (known per connection at its end).
    pub(crate) lost: AtomicU64,
    /// Echoes of a sequence already echoed.
    pub(crate) duplicated: AtomicU64,
    /// Echoes damaged, unparseable, or of a ping never sent.
    pub(crate) corrupted: AtomicU64,
    /// Gateway error frames (`{"message": "Forbidden", …}`), by kind in [`Rare`].
    pub(crate) error_frames: AtomicU64,
    /// Connections the server closed, or that broke or stalled, while the run wanted
    /// them open.
    pub(crate) dropped: AtomicU64,
    /// Of the dropped connections, those given up because a send could not be written
    /// out within the timeout: the server was not reading.
    pub(crate) stalled: AtomicU64,
    /// Pings still awaiting their echo (within the timeout) when a second Ctrl-C
    /// aborted the run: neither echoed nor lost, not counted.
    pub(crate) in_flight: AtomicU64,
    /// Open model with `-d`: slots due before the end that were not sent by then.
    pub(crate) not_sent: AtomicU64,
    /// Open model: sends that left more than the lag bound late for the client's own
    /// reasons.
    pub(crate) lagged: AtomicU64,
    /// Open model: the longest such lag, in µs (a maximum, not a sum).
    pub(crate) max_lag_us: AtomicU64,
    /// Connections opened.
    pub(crate) opened: AtomicU64,
    /// Connections that could not be opened.
    pub(crate) connect_failed: AtomicU64,
    /// Connections that opened and have ended since.
    pub(crate) closed: AtomicU64,
    /// `--reconnect`: connections reopened after a close the policy accepts.
    pub(crate) reconnects: AtomicU64,
    /// `--reconnect`: connections closed and not reopened yet (a gauge: up at the close,
    /// down at the reopen or when the connection gives up).
    pub(crate) reconnecting: AtomicU64,
    /// `--reconnect`: time spent between a close and the reopen (or giving up), µs.
    pub(crate) disconnected_us: AtomicU64,
    /// Pings awaiting their echo (within the timeout) on a connection the server closed
    /// and that was reopened: lost to the reconnect, not to the server.
    pub(crate) lost_to_reconnect: AtomicU64,
    /// `--keepalive`: keepalive frames sent.
    pub(crate) keepalives: AtomicU64,
    /// `--keepalive`: answers to them recognised (not counted as pings or errors).
    pub(crate) keepalive_answers: AtomicU64,
}

/// Things that happen rarely, counted by kind.
#[derive(Debug, Default)]
pub(crate) struct Rare {
    /// Connect failures by [`ConnectCause::key`].
    pub(crate) connect_failures: BTreeMap<String, u64>,
    /// The first connect error, for the message when no connection opened at all.
    pub(crate) first_connect_error: Option<wsprobe_core::client::ConnectError>,
    /// Close codes of the connections the server closed (1006: no close frame).
    pub(crate) close_codes: BTreeMap<u16, u64>,
    /// Gateway error frames by their `message`.
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// `--reconnect`: the close codes that caused the reconnects.
    pub(crate) reconnects_by_code: BTreeMap<u16, u64>,
    /// `--reconnect`: connections that could not be reopened, by [`ConnectCause::key`]
    /// of the last attempt's error (`401`, `refused`, …).
    pub(crate) reconnect_failures: BTreeMap<String, u64>,
}

/// One shard of latency histograms.
#[derive(Debug)]
struct Shard {
    round_trip: Histogram<u64>,
    connect: Histogram<u64>,
    reconnect: Histogram<u64>,
}

/// Everything the workers record into, shared by all of them.
#[derive(Debug)]
pub(crate) struct Stats {
    /// The start of the run: every `_us` time is measured from here.
    pub(crate) start: Instant,
    /// Event counters, one set per shard.
    counters: Box<[Counters]>,
    shards: Box<[Mutex<Shard>]>,
    rare: Mutex<Rare>,
}

/// Locks a mutex even if a panicking thread poisoned it: the data are counts, still valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stats {
    /// Empty statistics for a run starting at `start`, with `shards` histogram shards.
    pub(crate) fn new(start: Instant, shards: usize) -> Self {
        let shards: Box<[Mutex<Shard>]> = (0..shards.max(1))
            .map(|_| {
                Mutex::new(Shard {
                    round_trip: new_histogram(),
                    connect: new_histogram(),
                    reconnect: new_histogram(),
                })
            })
            .collect();
        let counters = (0..shards.len()).map(|_| Counters::default()).collect();
        Self {
            start,
            counters,
            shards,
            rare: Mutex::new(Rare::default()),
        }
    }

    /// Microseconds since the start of the run.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn shard(&self, connection: usize) -> MutexGuard<'_, Shard> {
        lock(&self.shards[connection % self.shards.len()])
    }

    /// A round trip of `latency_us` measured on `connection`.
    pub(crate) fn record_round_trip(&self, connection: usize, latency_us: u64) {
        self.shard(connection)
            .round_trip
            .saturating_record(latency_us.max(1));
    }

    /// `connection` opened in `connect_us`.
    pub(crate) fn record_connected(&self, connection: usize, connect_us: u64) {
        self.shard(connection)
            .connect
            .saturating_record(connect_us.max(1));
        self.count(connection, |c| &c.opened);
    }

    /// `connection` was reopened after a close with `code`, `took_us` after the close
    /// (the backoff and the handshake).
    pub(crate) fn record_reconnect(&self, connection: usize, code: u16, took_us: u64) {
        self.shard(connection)
            .reconnect
            .saturating_record(took_us.max(1));
        self.count(connection, |c| &c.reconnects);
        self.add(connection, |c| &c.disconnected_us, took_us);
        *lock(&self.rare).reconnects_by_code.entry(code).or_default() += 1;
    }

    /// `connection` could not be reopened (`error`: the last attempt's), `took_us` after
    /// the close; it is then dropped with its close code.
    pub(crate) fn record_reconnect_failure(
        &self,
        connection: usize,
        error: &wsprobe_core::client::ConnectError,
        took_us: u64,
    ) {
        self.add(connection, |c| &c.disconnected_us, took_us);
        *lock(&self.rare)
            .reconnect_failures
            .entry(ConnectCause::of(error).key())
            .or_default() += 1;
    }

    /// `connection` could not be opened.
    pub(crate) fn record_connect_failure(
        &self,
        connection: usize,
        error: wsprobe_core::client::ConnectError,
    ) {
        self.count(connection, |c| &c.connect_failed);
        let mut rare = lock(&self.rare);
        *rare
            .connect_failures
            .entry(ConnectCause::of(&error).key())
            .or_default() += 1;
        rare.first_connect_error.get_or_insert(error);
    }

    /// The server closed `connection` with `code` (or it broke: 1006).
    pub(crate) fn record_dropped(&self, connection: usize, code: u16) {
        self.count(connection, |c| &c.dropped);
        *lock(&self.rare).close_codes.entry(code).or_default() += 1;
    }

    /// `connection` was given up: a send could not be written out in time (it counts as
    /// dropped too, with no close code: none was exchanged).
    pub(crate) fn record_stalled(&self, connection: usize) {
        self.count(connection, |c| &c.dropped);
        self.count(connection, |c| &c.stalled);
    }

    /// The lags of `connection`'s sends: `lagged` over the bound, the longest `max_us`.
    pub(crate) fn record_lag(&self, connection: usize, lagged: u64, max_us: u64) {
        let counters = &self.counters[connection % self.counters.len()];
        counters.lagged.fetch_add(lagged, Ordering::Relaxed);
        counters.max_lag_us.fetch_max(max_us, Ordering::Relaxed);
    }

    /// The longest lag of any send, µs.
    pub(crate) fn max_lag_us(&self) -> u64 {
        self.counters
            .iter()
            .map(|shard| shard.max_lag_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// A gateway error frame whose `message` is `kind` arrived on `connection`.
    pub(crate) fn record_error_frame(&self, connection: usize, kind: &str) {
        self.count(connection, |c| &c.error_frames);
        let mut rare = lock(&self.rare);
        match rare.error_kinds.get_mut(kind) {
            Some(count) => *count += 1,
            None => {
                rare.error_kinds.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Adds one to a counter of `connection`'s shard.
    pub(crate) fn count(&self, connection: usize, counter: impl Fn(&Counters) -> &AtomicU64) {
        self.add(connection, counter, 1);
    }

    /// Takes one from a counter of `connection`'s shard (a gauge that `connection` raised
    /// before: the shard's count never goes below zero).
    pub(crate) fn uncount(&self, connection: usize, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.counters[connection % self.counters.len()]).fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter of `connection`'s shard.
    pub(crate) fn add(&self, connection: usize, counter: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        counter(&self.counters[connection % self.counters.len()]).fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's total over every shard.
    pub(crate) fn total(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.counters
            .iter()
            .map(|shard| counter(shard).load(Ordering::Relaxed))
            .sum()
    }

    /// Connections open right now.
    pub(crate) fn open_now(&self) -> u64 {
        self.total(|c| &c.opened)
            .saturating_sub(self.total(|c| &c.closed))
            .saturating_sub(self.total(|c| &c.reconnecting))
    }

    /// Looks at the rare counts so far (the timeline copies them once an interval).
    pub(crate) fn with_rare<T>(&self, look: impl FnOnce(&Rare) -> T) -> T {
        look(&lock(&self.rare))
    }

    /// Takes the rare counts out (at the end of the run).
    pub(crate) fn take_rare(&self) -> Rare {
        std::mem::take(&mut *lock(&self.rare))
    }

    /// Errors so far: everything that went wrong with a ping or a connection once open.
    pub(crate) fn errors(&self) -> u64 {
        self.total(|c| &c.late)
            + self.total(|c| &c.lost)
            + self.total(|c| &c.duplicated)
            + self.total(|c| &c.corrupted)
            + self.total(|c| &c.error_frames)
            + self.total(|c| &c.dropped)
    }
}

/// Gathers the shards' histograms: the run's totals and the current interval.
#[derive(Debug)]
pub(crate) struct Collector {
    /// Every round trip of the run.
    pub(crate) round_trip: Histogram<u64>,
    /// Every connect time of the run.
    pub(crate) connect: Histogram<u64>,
    /// Every reconnect of the run: from the close to the new connection open, µs.
    pub(crate) reconnect: Histogram<u64>,
    /// Round trips of the current interval (since the last [`Collector::take_interval`]).
    interval: Histogram<u64>,
    /// Round trips of the current tick (since the last [`Collector::take_tick`]).
    tick: Histogram<u64>,
}

impl Default for Collector {
    fn default() -> Self {
        Self {
            round_trip: new_histogram(),
            connect: new_histogram(),
            reconnect: new_histogram(),
            interval: new_histogram(),
            tick: new_histogram(),
        }
    }
}

impl Collector {
    /// Moves what the shards recorded since the last call into the totals and the
    /// current interval.
    pub(crate) fn drain(&mut self, stats: &Stats) {
        for shard in stats.shards.iter() {
            let mut shard = lock(shard);
            // Same bounds everywhere, so `add` cannot fail; skip the work when empty.
            if !shard.round_trip.is_empty() {
                let _ = self.round_trip.add(&shard.round_trip);
                let _ = self.interval.add(&shard.round_trip);
                let _ = self.tick.add(&shard.round_trip);
                shard.round_trip.reset();
            }
            if !shard.connect.is_empty() {
                let _ = self.connect.add(&shard.connect);
                shard.connect.reset();
            }
            if !shard.reconnect.is_empty() {
                let _ = self.reconnect.add(&shard.reconnect);
                shard.reconnect.reset();
            }
        }
    }

    /// The round trips of the interval that just ended; a new interval begins.
    pub(crate) fn take_interval(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.interval, new_histogram())
    }

    /// The round trips of the tick that just ended; a new tick begins.
    pub(crate) fn take_tick(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.tick, new_histogram())
    }
}

/// The last few ticks, summed: what the progress line shows as "the last second".
#[derive(Debug)]
pub(crate) struct Window {
    ticks: std::collections::VecDeque<(Histogram<u64>, u64)>,
    length: usize,
    round_trip: Histogram<u64>,
    sent: u64,
}

impl Window {
    /// A window over the last `length` ticks.
    pub(crate) fn new(length: usize) -> Self {
        Self {
            ticks: std::collections::VecDeque::with_capacity(length + 1),
            length: length.max(1),
            round_trip: new_histogram(),
            sent: 0,
        }
    }

    /// Adds a tick's round trips and pings sent; the oldest tick leaves the window.
    pub(crate) fn push(&mut self, round_trip: Histogram<u64>, sent: u64) {
        // Same bounds everywhere, and only what was added is subtracted: cannot fail.
        let _ = self.round_trip.add(&round_trip);
        self.sent += sent;
        self.ticks.push_back((round_trip, sent));
        if self.ticks.len() > self.length
            && let Some((old, old_sent)) = self.ticks.pop_front()
        {
            let _ = self.round_trip.subtract(&old);
            self.sent -= old_sent;
        }
    }

    /// Round trips in the window.
    pub(crate) fn round_trip(&self) -> &Histogram<u64> {
        &self.round_trip
    }

    /// Pings sent in the window.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Ticks in the window (fewer than its length at the start).
    pub(crate) fn ticks(&self) -> usize {
        self.ticks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsprobe_core::client::ConnectError;

    #[test]
    fn shards_drain_into_totals_and_intervals() {
        let stats = Stats::new(Instant::now(), 3);
        for connection in 0..6 {
            stats.record_round_trip(connection, 100 * (connection as u64 + 1));
        }
        stats.record_connected(4, 2_000);
        let mut collector = Collector::default();
        collector.drain(&stats);
        assert_eq!(collector.round_trip.len(), 6);
        assert_eq!(collector.connect.len(), 1);
        assert_eq!(collector.round_trip.max(), 600);
        let interval = collector.take_interval();
        assert_eq!(interval.len(), 6);
        assert_eq!(collector.take_tick().len(), 6);
        stats.record_round_trip(0, 0);
        collector.drain(&stats);
        assert_eq!(
            collector.round_trip.len(),
            7,
            "drained samples are not counted twice"
        );
        assert_eq!(collector.round_trip.min(), 1, "zero is recorded as 1 µs");
        assert_eq!(collector.take_interval().len(), 1);
        assert_eq!(stats.open_now(), 1);
        stats.count(4, |c| &c.closed);
        assert_eq!(stats.open_now(), 0);
    }

    #[test]
    fn the_window_forgets_old_ticks() {
        let mut window = Window::new(2);
        let tick = |values: &[u64]| {
            let mut h = new_histogram();
            for &v in values {
                h.record(v).unwrap();
            }
            h
        };
        window.push(tick(&[1_000]), 10);
        window.push(tick(&[2_000, 3_000]), 20);
        assert_eq!((window.round_trip().len(), window.sent()), (3, 30));
        window.push(tick(&[]), 5);
        assert_eq!((window.round_trip().len(), window.sent()), (2, 25));
        assert_eq!(window.round_trip().min(), 2_000);
        assert_eq!(window.ticks(), 2);
    }

    #[test]
    fn connect_failures_by_cause() {
        let stats = Stats::new(Instant::now(), 1);
        let rejected = || ConnectError::Rejected {
            status: 403,
            reason: "Forbidden".into(),
            body: String::new(),
            headers: Box::default(),
        };
        stats.record_connect_failure(0, rejected());
        stats.record_connect_failure(1, rejected());
        stats.record_connect_failure(2, ConnectError::Refused { addr: "h:1".into() });
        stats.record_connect_failure(
            3,
            ConnectError::Other {
                url: "ws://h/".into(),
                reason: "TCP connect to h failed: Too many open files (os error 24)".into(),
            },
        );
        let rare = stats.take_rare();
        let expected: BTreeMap<String, u64> = [
            ("403".to_owned(), 2),
            ("refused".to_owned(), 1),
            ("too_many_open_files".to_owned(), 1),
        ]
        .into();
        assert_eq!(rare.connect_failures, expected);
        assert!(matches!(
            rare.first_connect_error,
            Some(ConnectError::Rejected { status: 403, .. })
        ));
        assert_eq!(stats.total(|c| &c.connect_failed), 4);
    }

    #[cfg(unix)]
    #[test]
    fn running_out_of_ports_or_descriptors_is_told_apart_by_its_os_error() {
        use nix::errno::Errno;
        let cause = |errno: Errno| {
            let error = std::io::Error::from_raw_os_error(errno as i32);
            ConnectCause::of(&ConnectError::Other {
                url: "127.0.0.1:9".into(),
                reason: format!(
                    "TCP connect to 127.0.0.1:9 failed: cannot bind to 127.0.0.2: {error}"
                ),
            })
            .key()
        };
        assert_eq!(cause(Errno::EADDRNOTAVAIL), "address_not_available");
        assert_eq!(cause(Errno::EADDRINUSE), "address_in_use");
        assert_eq!(cause(Errno::EMFILE), "too_many_open_files");
        assert_eq!(cause(Errno::ENFILE), "system_out_of_files");
        assert_eq!(cause(Errno::ECONNRESET), "other");
        let to_proxy = |errno: Errno| {
            let error = std::io::Error::from_raw_os_error(errno as i32);
            ConnectCause::of(&ConnectError::Proxy {
                proxy: "127.0.0.1:3128".into(),
                reason: format!("cannot reach it (cannot bind to 192.0.2.1: {error})"),
            })
            .key()
        };
        assert_eq!(to_proxy(Errno::EADDRNOTAVAIL), "address_not_available");
        assert_eq!(to_proxy(Errno::ECONNREFUSED), "proxy");
        assert_eq!(os_error("reset (os error 104"), None);
        assert_eq!(os_error("no number"), None);
    }

    #[test]
    fn errors_add_up() {
        let stats = Stats::new(Instant::now(), 2);
        stats.count(0, |c| &c.lost);
        stats.add(1, |c| &c.duplicated, 2);
        stats.count(1, |c| &c.sent);
        stats.record_error_frame(0, "Forbidden");
        stats.record_dropped(3, 1001);
        assert_eq!(stats.errors(), 5);
        assert_eq!(stats.total(|c| &c.sent), 1);
        let rare = stats.take_rare();
        assert_eq!(rare.error_kinds.get("Forbidden"), Some(&1));
        assert_eq!(rare.close_codes.get(&1001), Some(&1));
    }
}
