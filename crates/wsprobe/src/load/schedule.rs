//! When things are meant to happen, as pure arithmetic: when each connection opens
//! (since the start of the run), and (open model) when each ping is due (since the go:
//! the moment every connection has tried to open, when sending starts for all at once).
//!
//! The open model's timetable interleaves the connections on one global clock: global
//! slot `k` is due at `k / rate`, and belongs to connection `k % connections`. So slot
//! `i` of connection `c` is due at `start + offset_c + i / rate_c`, with
//! `rate_c = rate / connections` and `offset_c = c / rate`: the connections together
//! send at exactly `rate`, evenly spread. Latency is measured from the due time, not
//! from when the send happened (no coordinated omission): a connection that falls
//! behind sends late, and the wait counts.

use std::time::{Duration, Instant};

/// `base + offset`, or about a century later when that would overflow: absurd rates and
/// durations (`--rate 1e-30/s`) mean "never", not a panic.
pub(crate) fn after(base: Instant, offset: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    base.checked_add(offset.min(FAR))
        .or_else(|| base.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(base)
}

/// The open model's fixed timetable; times are µs since the go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Timetable {
    /// Number of connections sharing the rate.
    connections: u64,
    /// Pings per second over all connections.
    rate: f64,
}

impl Timetable {
    /// A timetable for `rate` pings per second shared by `connections` (at least 1).
    pub(crate) fn new(connections: usize, rate: f64) -> Self {
        Self {
            connections: connections.max(1) as u64,
            rate,
        }
    }

    /// The global slot number of slot `index` of `connection`.
    pub(crate) fn global_slot(&self, connection: usize, index: u64) -> u64 {
        index
            .saturating_mul(self.connections)
            .saturating_add(connection as u64)
    }

    /// When slot `index` of `connection` is due, in µs since the go.
    pub(crate) fn due_us(&self, connection: usize, index: u64) -> u64 {
        self.global_due_us(self.global_slot(connection, index))
    }

    /// When global slot `slot` is due, in µs since the go.
    pub(crate) fn global_due_us(&self, slot: u64) -> u64 {
        (slot as f64 * 1e6 / self.rate).round() as u64
    }

    /// How many global slots are due before `end_us` (µs since the go): the slots a
    /// `-d` of that length holds.
    pub(crate) fn slots_before(&self, end_us: u64) -> u64 {
        // An estimate, then exact against `global_due_us` (which rounds).
        let estimate = (end_us as f64 * self.rate / 1e6).ceil();
        let mut slots = if estimate >= u64::MAX as f64 {
            return u64::MAX;
        } else {
            estimate as u64
        };
        for _ in 0..4 {
            if slots > 0 && self.global_due_us(slots - 1) >= end_us {
                slots -= 1;
            } else if self.global_due_us(slots) < end_us {
                slots += 1;
            } else {
                break;
            }
        }
        slots
    }

    /// How many of the global slots `0..count` belong to `connection`.
    pub(crate) fn share_of(&self, connection: usize, count: u64) -> u64 {
        count
            .saturating_sub(connection as u64)
            .div_ceil(self.connections)
    }

    /// One slot period of the whole timetable, in µs.
    pub(crate) fn period_us(&self) -> f64 {
        1e6 / self.rate
    }
}

/// When each connection opens: one every `interval`, the first at the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Openings {
    interval: Duration,
}

impl Openings {
    /// Openings at most `connect_rate` per second, spread over `ramp_up` when given:
    /// the interval is the longer of `1 / connect_rate` and `ramp_up / connections`.
    pub(crate) fn new(connections: usize, connect_rate: f64, ramp_up: Option<Duration>) -> Self {
        let by_rate = Duration::try_from_secs_f64(1.0 / connect_rate).unwrap_or(Duration::MAX);
        let by_ramp = ramp_up
            .map(|ramp| ramp / u32::try_from(connections.max(1)).unwrap_or(u32::MAX))
            .unwrap_or_default();
        Self {
            interval: by_rate.max(by_ramp),
        }
    }

    /// When `connection` opens, since the start.
    pub(crate) fn at(&self, connection: usize) -> Duration {
        self.interval
            .saturating_mul(u32::try_from(connection).unwrap_or(u32::MAX))
    }

    /// Time between two openings.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_on_one_clock() {
        let timetable = Timetable::new(4, 1000.0);
        // Every global slot 1 ms apart, round-robin over the connections.
        let mut dues: Vec<u64> = (0..4)
            .flat_map(|c| (0..3).map(move |i| (c, i)))
            .map(|(c, i)| timetable.due_us(c, i))
            .collect();
        dues.sort_unstable();
        assert_eq!(
            dues,
            (0..12).map(|k| k * 1000).collect::<Vec<_>>(),
            "12 slots, evenly spread"
        );
        assert_eq!(timetable.due_us(1, 0), 1000);
        assert_eq!(timetable.due_us(1, 1), 5000, "per connection: rate / 4");
        assert_eq!(timetable.global_slot(3, 2), 11);
        assert_eq!(
            (0..4)
                .map(|c| timetable.share_of(c, 10))
                .collect::<Vec<_>>(),
            [3, 3, 2, 2]
        );
        assert_eq!(timetable.share_of(3, 2), 0);
        assert_eq!(timetable.period_us(), 1000.0);
    }

    #[test]
    fn slots_before_the_end_of_a_duration() {
        let timetable = Timetable::new(3, 1000.0);
        assert_eq!(timetable.slots_before(1_000_000), 1000);
        assert_eq!(timetable.slots_before(1_000_001), 1001);
        assert_eq!(timetable.slots_before(0), 0);
        assert_eq!(timetable.slots_before(1), 1, "slot 0 is due at once");
        let odd = Timetable::new(1, 3.0);
        // Due at 0, 333_333, 666_667: three before 1 s, two before 666_667.
        assert_eq!(odd.slots_before(1_000_000), 3);
        assert_eq!(odd.slots_before(666_667), 2);
        assert_eq!(Timetable::new(1, 1e-30).slots_before(1_000_000), 1);
        assert_eq!(Timetable::new(1, 1e300).slots_before(1_000_000), u64::MAX);
    }

    #[test]
    fn fractional_rates() {
        let timetable = Timetable::new(3, 3.0);
        assert_eq!(timetable.due_us(0, 1), 1_000_000);
        assert_eq!(timetable.due_us(2, 0), 666_667);
        let fast = Timetable::new(100, 20_000.0);
        assert_eq!(fast.due_us(99, 199), 999_950);
    }

    #[test]
    fn absurd_numbers_mean_never_not_a_panic() {
        let base = Instant::now();
        assert!(after(base, Duration::MAX) > base + Duration::from_secs(3600 * 24 * 365));
        assert_eq!(
            after(base, Duration::from_secs(1)),
            base + Duration::from_secs(1)
        );
        let slow = Openings::new(10, 1e-30, None);
        assert_eq!(slow.at(3), Duration::MAX);
        let timetable = Timetable::new(2, 1e-30);
        assert_eq!(timetable.due_us(1, 5), u64::MAX);
    }

    #[test]
    fn openings_follow_the_connect_rate_and_the_ramp_up() {
        let plain = Openings::new(10, 100.0, None);
        assert_eq!(plain.at(0), Duration::ZERO);
        assert_eq!(plain.at(3), Duration::from_millis(30));
        let ramp = Openings::new(10, 100.0, Some(Duration::from_secs(1)));
        assert_eq!(ramp.interval(), Duration::from_millis(100));
        // The ramp-up cannot make openings faster than the connect rate.
        let capped = Openings::new(1000, 100.0, Some(Duration::from_secs(1)));
        assert_eq!(capped.interval(), Duration::from_millis(10));
    }
}
