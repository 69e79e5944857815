//! The run second by second: what the HTML report plots. The monitor closes an interval
//! about once a second ([`Recorder::close`]) with that interval's round-trip histogram and
//! the counters' growth since the previous one; the workers' hot loop is not involved.
//!
//! Each interval keeps its histogram in a sparse form (the recorded values and their
//! counts: a few KiB at most, where a full histogram is ~150 KiB), so an hour of intervals
//! stays small, and any run of intervals can be added back into an exact histogram: a
//! plot down-samples by adding histograms, never by averaging percentiles. `load merge`
//! builds a [`Timeline`] from the merged report's per-second intervals ([`Timeline::of_report`]).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::stats::{Counters, Stats};

/// A histogram of round trips (µs) as its recorded values and their counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SparseHistogram(Vec<(u64, u64)>);

impl SparseHistogram {
    /// The recorded values of `histogram` (each the highest equivalent value of its bucket).
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        Self(
            histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Records these values into `histogram` (of the load's bounds: values stay in range).
    pub(crate) fn add_to(&self, histogram: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            histogram.saturating_record_n(value, count);
        }
    }
}

/// Counts of one interval: how much each counter grew during it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IntervalCounts {
    /// Pings sent.
    pub(crate) sent: u64,
    /// Echoes on time.
    pub(crate) echoed: u64,
    /// Echoes after `--timeout`.
    pub(crate) late: u64,
    /// Pings found lost.
    pub(crate) lost: u64,
    /// Echoes of a sequence already echoed.
    pub(crate) duplicated: u64,
    /// Damaged echoes.
    pub(crate) corrupted: u64,
    /// Gateway error frames.
    pub(crate) error_frames: u64,
    /// Connections opened.
    pub(crate) opened: u64,
    /// Connections dropped by the server (or broken, or stalled).
    pub(crate) dropped: u64,
    /// Connections that could not be opened.
    pub(crate) connect_failed: u64,
}

impl IntervalCounts {
    /// The counters' totals over every shard of `stats`, now.
    fn totals(stats: &Stats) -> Self {
        let total = |counter: fn(&Counters) -> &AtomicU64| stats.total(counter);
        Self {
            sent: total(|c| &c.sent),
            echoed: total(|c| &c.echoed),
            late: total(|c| &c.late),
            lost: total(|c| &c.lost),
            duplicated: total(|c| &c.duplicated),
            corrupted: total(|c| &c.corrupted),
            error_frames: total(|c| &c.error_frames),
            opened: total(|c| &c.opened),
            dropped: total(|c| &c.dropped),
            connect_failed: total(|c| &c.connect_failed),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            sent: self.sent - before.sent,
            echoed: self.echoed - before.echoed,
            late: self.late - before.late,
            lost: self.lost - before.lost,
            duplicated: self.duplicated - before.duplicated,
            corrupted: self.corrupted - before.corrupted,
            error_frames: self.error_frames - before.error_frames,
            opened: self.opened - before.opened,
            dropped: self.dropped - before.dropped,
            connect_failed: self.connect_failed - before.connect_failed,
        }
    }

    /// Adds another interval's counts (for a merge of shards).
    pub(crate) fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.echoed += other.echoed;
        self.late += other.late;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.corrupted += other.corrupted;
        self.error_frames += other.error_frames;
        self.opened += other.opened;
        self.dropped += other.dropped;
        self.connect_failed += other.connect_failed;
    }
}

/// One interval of the run (about a second).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Interval {
    /// When it began, seconds since the start of the run.
    pub(crate) start_s: f64,
    /// How long it lasted, seconds.
    pub(crate) length_s: f64,
    /// Round trips measured in it (µs).
    pub(crate) round_trip: SparseHistogram,
    /// How the counters grew in it.
    pub(crate) counts: IntervalCounts,
    /// Connections open at its end.
    pub(crate) open: u64,
    /// Close codes of the connections dropped in it.
    pub(crate) close_codes: BTreeMap<u16, u64>,
    /// Connect failures in it, by cause (as in the report).
    pub(crate) connect_failures: BTreeMap<String, u64>,
    /// Gateway error frames in it, by message.
    pub(crate) error_kinds: BTreeMap<String, u64>,
}

/// Adds the counts of `from` into `into`, key by key.
pub(crate) fn add_maps<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

/// What grew in `now` since `before`: the keys whose count went up, by how much.
fn growth<K: Ord + Clone>(now: &BTreeMap<K, u64>, before: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    now.iter()
        .filter_map(|(key, &count)| {
            let grown = count - before.get(key).copied().unwrap_or(0);
            (grown > 0).then(|| (key.clone(), grown))
        })
        .collect()
}

/// The run, interval by interval.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Timeline {
    /// The wall-clock time of the start of the run (of the first interval).
    pub(crate) started: SystemTime,
    /// The intervals, in order, back to back.
    pub(crate) intervals: Vec<Interval>,
}

impl Timeline {
    /// The timeline of a report's per-second intervals (a merged run's): one interval per
    /// wall-clock second, from the first. What the report does not keep per second (connect
    /// failures by cause, gateway error messages) is left empty.
    pub(crate) fn of_report(intervals: &[super::report::Interval]) -> Result<Self, String> {
        let first = intervals.first().map_or(0, |interval| interval.unix_s);
        let mut timeline = Self {
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(first),
            intervals: Vec::with_capacity(intervals.len()),
        };
        for interval in intervals {
            let histogram =
                super::report::decode_histogram(&interval.round_trip_us).map_err(|e| {
                    format!(
                        "a damaged histogram in the interval of {}: {e}",
                        interval.unix_s
                    )
                })?;
            let error = |kind: &str| interval.errors.get(kind).copied().unwrap_or(0);
            timeline.intervals.push(Interval {
                start_s: interval.unix_s.saturating_sub(first) as f64,
                length_s: 1.0,
                round_trip: SparseHistogram::of(&histogram),
                counts: IntervalCounts {
                    sent: interval.sent,
                    echoed: interval.echoed,
                    late: error("late"),
                    lost: error("lost"),
                    duplicated: error("duplicated"),
                    corrupted: error("corrupted"),
                    error_frames: error("error_frames"),
                    opened: interval.opened,
                    dropped: error("dropped"),
                    connect_failed: interval.connect_failed,
                },
                open: interval.open,
                close_codes: interval
                    .close_codes
                    .iter()
                    .filter_map(|(code, count)| Some((code.parse().ok()?, *count)))
                    .collect(),
                ..Interval::default()
            });
        }
        Ok(timeline)
    }
}

/// Builds the [`Timeline`] in the monitor, one interval at a time.
#[derive(Debug)]
pub(crate) struct Recorder {
    timeline: Timeline,
    totals: IntervalCounts,
    close_codes: BTreeMap<u16, u64>,
    connect_failures: BTreeMap<String, u64>,
    error_kinds: BTreeMap<String, u64>,
}

impl Recorder {
    /// An empty timeline of a run that started at `started`.
    pub(crate) fn new(started: SystemTime) -> Self {
        Self {
            timeline: Timeline {
                started,
                intervals: Vec::new(),
            },
            totals: IntervalCounts::default(),
            close_codes: BTreeMap::new(),
            connect_failures: BTreeMap::new(),
            error_kinds: BTreeMap::new(),
        }
    }

    /// Ends the interval that began `start` after the start of the run and lasted
    /// `length`, with its round trips.
    pub(crate) fn close(
        &mut self,
        stats: &Stats,
        round_trip: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) {
        let totals = IntervalCounts::totals(stats);
        let (close_codes, connect_failures, error_kinds) = stats.with_rare(|rare| {
            (
                growth(&rare.close_codes, &self.close_codes),
                growth(&rare.connect_failures, &self.connect_failures),
                growth(&rare.error_kinds, &self.error_kinds),
            )
        });
        add_maps(&mut self.close_codes, &close_codes);
        add_maps(&mut self.connect_failures, &connect_failures);
        add_maps(&mut self.error_kinds, &error_kinds);
        self.timeline.intervals.push(Interval {
            start_s: start.as_secs_f64(),
            length_s: length.as_secs_f64(),
            round_trip: SparseHistogram::of(round_trip),
            counts: totals.since(self.totals),
            open: stats.open_now(),
            close_codes,
            connect_failures,
            error_kinds,
        });
        self.totals = totals;
    }

    /// The timeline so far.
    pub(crate) fn finish(self) -> Timeline {
        self.timeline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::new_histogram;
    use std::time::Instant;

    #[test]
    fn intervals_hold_what_grew_in_them() {
        let stats = Stats::new(Instant::now(), 2);
        let mut recorder = Recorder::new(SystemTime::UNIX_EPOCH);
        let mut histogram = new_histogram();
        histogram.record(1_500).unwrap();
        histogram.record(90_000).unwrap();
        stats.add(0, |c| &c.sent, 10);
        stats.record_connected(1, 2_000);
        stats.record_dropped(1, 1001);
        recorder.close(&stats, &histogram, Duration::ZERO, Duration::from_secs(1));
        stats.add(1, |c| &c.sent, 5);
        stats.record_dropped(0, 1001);
        stats.record_error_frame(0, "Forbidden");
        recorder.close(
            &stats,
            &new_histogram(),
            Duration::from_secs(1),
            Duration::from_millis(500),
        );
        let timeline = recorder.finish();
        let [first, second] = &timeline.intervals[..] else {
            panic!("{timeline:?}")
        };
        assert_eq!((first.counts.sent, second.counts.sent), (10, 5));
        assert_eq!(first.counts.opened, 1);
        assert_eq!(first.close_codes, [(1001, 1)].into());
        assert_eq!(second.close_codes, [(1001, 1)].into());
        assert_eq!(second.error_kinds, [("Forbidden".to_owned(), 1)].into());
        assert!(first.error_kinds.is_empty());
        assert_eq!((second.start_s, second.length_s), (1.0, 0.5));
        let mut back = new_histogram();
        first.round_trip.add_to(&mut back);
        assert_eq!(back.len(), 2);
        assert_eq!(back.max(), histogram.max());
        assert_eq!(
            back.value_at_quantile(0.5),
            histogram.value_at_quantile(0.5)
        );
    }
}
