//! Sharded load: `--shard I/N` runs shard I (0-based, as a Kubernetes completion index)
//! of N, and `--start-at TIME` makes shards launched apart send together.
//!
//! The split is pure arithmetic, so the shards together do exactly what the unsharded
//! command would: a whole quantity (connections, `-n`, a whole `--rate` or
//! `--connect-rate` of at least N) is divided with the remainder spread over the first
//! shards (10 over 3: 4, 3, 3); a fractional rate is divided evenly. `-d` and
//! `--ramp-up` are times, the same for every shard: each shard opens its share of the
//! connections over the same ramp-up, so the union opens all of them over it. Each
//! shard's connections carry their global numbers in their ping tokens
//! ([`first_connection`]), so no two shards send the same token.

use std::time::{Duration, SystemTime};

/// The environment variable a Kubernetes Indexed Job sets to the pod's index.
pub(crate) const INDEX_VARIABLE: &str = "JOB_COMPLETION_INDEX";

/// How far in the past a `--start-at` may be and still be accepted: the shard then
/// starts sending as soon as its connections are open, its timetable anchored at its own
/// start (so at most this much behind the other shards'). A TIME further back is a
/// mistake: the shard would run out of step with the others.
pub(crate) const START_AT_GRACE: Duration = Duration::from_secs(1);

/// Which shard this process runs: `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    /// 0-based, below `count`.
    pub(crate) index: u64,
    /// How many shards run the command.
    pub(crate) count: u64,
}

/// `--shard` as typed: `I/N`, or `N` with I from [`INDEX_VARIABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShardFlag {
    /// `I`, when given.
    pub(crate) index: Option<u64>,
    /// `N`.
    pub(crate) count: u64,
}

/// Parses `--shard`: `I/N` (`0/4`) or `N` (`4`, the index then comes from
/// `JOB_COMPLETION_INDEX`).
pub(crate) fn parse_shard_flag(text: &str) -> Result<ShardFlag, String> {
    let number = |part: &str, what: &str| {
        part.trim().parse::<u64>().map_err(|_| {
            format!("`{text}`: {what} must be a whole number (e.g. --shard 0/4, or --shard 4 with {INDEX_VARIABLE} set)")
        })
    };
    let (index, count) = match text.split_once('/') {
        Some((index, count)) => (
            Some(number(index, "the shard index")?),
            number(count, "the shard count")?,
        ),
        None => (None, number(text, "the shard count")?),
    };
    if count == 0 {
        return Err(format!("`{text}`: the shard count must be at least 1"));
    }
    Ok(ShardFlag { index, count })
}

impl ShardFlag {
    /// The shard, taking the index from `index_variable` (the value of
    /// `JOB_COMPLETION_INDEX`) when the flag has none.
    pub(crate) fn resolve(self, index_variable: Option<&str>) -> Result<Shard, String> {
        let index = match (self.index, index_variable) {
            (Some(index), _) => index,
            (None, Some(value)) => value.trim().parse::<u64>().map_err(|_| {
                format!(
                    "--shard {}: {INDEX_VARIABLE} is `{value}`, not a shard index (0, 1, 2, …)",
                    self.count
                )
            })?,
            (None, None) => {
                return Err(format!(
                    "--shard {n} takes the shard index from {INDEX_VARIABLE} (set by a \
                     Kubernetes Indexed Job), which is not set; give it as --shard I/{n}",
                    n = self.count
                ));
            }
        };
        if index >= self.count {
            return Err(format!(
                "shard index {index} is out of range for {} shards (0 to {})",
                self.count,
                self.count - 1
            ));
        }
        Ok(Shard {
            index,
            count: self.count,
        })
    }
}

/// Shard `shard`'s part of a whole `total`: `total / N`, plus one for the first
/// `total % N` shards.
pub(crate) fn split_whole(total: u64, shard: Shard) -> u64 {
    total / shard.count + u64::from(shard.index < total % shard.count)
}

/// The global number of shard `shard`'s first connection when `total` connections are
/// split: the sum of the shares of the shards before it.
pub(crate) fn first_connection(total: u64, shard: Shard) -> u64 {
    shard.index * (total / shard.count) + shard.index.min(total % shard.count)
}

/// Shard `shard`'s part of a rate: a whole rate of at least N is split as a whole
/// quantity (the parts add up exactly), any other one evenly.
pub(crate) fn split_rate(rate: f64, shard: Shard) -> f64 {
    // Below 2^53 every whole f64 is exact as a u64.
    if rate.fract() == 0.0 && rate >= shard.count as f64 && rate < 9_007_199_254_740_992.0 {
        split_whole(rate as u64, shard) as f64
    } else {
        rate / shard.count as f64
    }
}

/// Parses `--start-at`: RFC 3339 (`2026-11-28T05:00:00Z`, `…00.250+01:00`) or Unix
/// seconds with an optional fraction (`1795842000.25`).
pub(crate) fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let seconds = whole
            .parse::<u64>()
            .map_err(|_| format!("`{text}`: not a Unix time in seconds"))?;
        if fraction.contains('.') || fraction.len() > 9 {
            return Err(format!(
                "`{text}`: a Unix time has one `.` and at most 9 digits after it"
            ));
        }
        let nanos = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<9}")
                .parse::<u32>()
                .map_err(|_| format!("`{text}`: not a Unix time in seconds"))?
        };
        return SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(seconds, nanos))
            .ok_or_else(|| format!("`{text}`: too far in the future"));
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .filter(|_| text.ends_with('Z') || text.ends_with('z'))
        .or_else(|| parse_rfc3339_offset(text))
        .ok_or_else(|| {
            format!(
                "`{text}`: not a time; give RFC 3339 with a zone (2026-11-28T05:00:00Z, \
                 2026-11-28T06:00:00+01:00) or Unix seconds (1795842000.5)"
            )
        })
}

/// RFC 3339 with a numeric offset (`+01:00`), which humantime does not read.
fn parse_rfc3339_offset(text: &str) -> Option<SystemTime> {
    let (local, sign, offset) =
        if let Some(at) = text.get(19..).and_then(|tail| tail.rfind(['+', '-'])) {
            let at = at + 19;
            (&text[..at], &text[at..at + 1], &text[at + 1..])
        } else {
            return None;
        };
    let (hours, minutes) = offset.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let offset =
        Duration::from_secs(hours.parse::<u64>().ok()? * 3600 + minutes.parse::<u64>().ok()? * 60);
    let as_utc = humantime::parse_rfc3339_weak(local).ok()?;
    if sign == "+" {
        as_utc.checked_sub(offset)
    } else {
        as_utc.checked_add(offset)
    }
}

/// Checks a `--start-at` against the clock when the run starts: a TIME further in the
/// past than [`START_AT_GRACE`] is a usage error.
pub(crate) fn check_start_at(start_at: SystemTime, now: SystemTime) -> Result<(), String> {
    match now.duration_since(start_at) {
        Ok(past) if past > START_AT_GRACE => Err(format!(
            "--start-at {} is {:.1}s in the past (at most {} is accepted); pick a time a \
             little after every shard will have opened its connections",
            humantime::format_rfc3339_millis(start_at),
            past.as_secs_f64(),
            humantime::format_duration(START_AT_GRACE)
        )),
        _ => Ok(()),
    }
}

/// The default run id: a digest of the settings every shard of one command line shares
/// (so shards started apart agree on it without talking), 16 hex digits. FNV-1a: stable
/// across builds and platforms, unlike std's hasher.
pub(crate) fn run_id_of(settings_json: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in settings_json.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u64, count: u64) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn whole_quantities_split_exactly_with_the_remainder_first() {
        let parts = |total, n| {
            (0..n)
                .map(|i| split_whole(total, shard(i, n)))
                .collect::<Vec<_>>()
        };
        assert_eq!(parts(10, 3), [4, 3, 3]);
        assert_eq!(parts(11, 3), [4, 4, 3]);
        assert_eq!(parts(12, 3), [4, 4, 4]);
        assert_eq!(parts(2, 4), [1, 1, 0, 0]);
        assert_eq!(parts(7, 1), [7]);
        for (total, n) in [(18_000, 4), (100_001, 7), (5, 5), (u64::MAX, 3)] {
            let parts = parts(total, n);
            assert_eq!(
                parts.iter().map(|&p| u128::from(p)).sum::<u128>(),
                u128::from(total)
            );
            assert!(parts.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
        }
    }

    #[test]
    fn first_connections_tile_the_global_numbers() {
        for (total, n) in [(10, 3), (11, 4), (3, 3), (1000, 7)] {
            let mut next = 0;
            for i in 0..n {
                assert_eq!(
                    first_connection(total, shard(i, n)),
                    next,
                    "{total} over {n}"
                );
                next += split_whole(total, shard(i, n));
            }
            assert_eq!(next, total);
        }
    }

    #[test]
    fn rates_add_up() {
        let parts = |rate, n| {
            (0..n)
                .map(|i| split_rate(rate, shard(i, n)))
                .collect::<Vec<_>>()
        };
        assert_eq!(parts(1000.0, 3), [334.0, 333.0, 333.0]);
        assert_eq!(parts(100.0, 4), [25.0; 4]);
        assert_eq!(
            parts(2.0, 4),
            [0.5; 4],
            "a whole rate below N is split evenly"
        );
        assert_eq!(parts(2.5, 2), [1.25; 2]);
        let sum: f64 = parts(999.9, 7).iter().sum();
        assert!((sum - 999.9).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn shard_flags() {
        assert_eq!(
            parse_shard_flag("1/4"),
            Ok(ShardFlag {
                index: Some(1),
                count: 4
            })
        );
        assert_eq!(
            parse_shard_flag("4"),
            Ok(ShardFlag {
                index: None,
                count: 4
            })
        );
        for bad in ["0", "0/0", "a/4", "1/b", "-1/4", "", "1/4/5"] {
            assert!(parse_shard_flag(bad).is_err(), "{bad}");
        }
        let flag = parse_shard_flag("3").unwrap();
        assert_eq!(flag.resolve(Some("2")), Ok(shard(2, 3)));
        assert!(
            flag.resolve(Some("3"))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            flag.resolve(Some("x"))
                .unwrap_err()
                .contains("JOB_COMPLETION_INDEX")
        );
        assert!(flag.resolve(None).unwrap_err().contains("not set"));
        // An explicit index wins over the environment.
        assert_eq!(
            parse_shard_flag("0/3").unwrap().resolve(Some("2")),
            Ok(shard(0, 3))
        );
        assert!(parse_shard_flag("3/3").unwrap().resolve(None).is_err());
    }

    #[test]
    fn start_times() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s);
        assert_eq!(parse_start_at("1795842000"), Ok(at(1_795_842_000.0)));
        assert_eq!(
            parse_start_at("1795842000.25"),
            Ok(SystemTime::UNIX_EPOCH + Duration::new(1_795_842_000, 250_000_000))
        );
        assert_eq!(
            parse_start_at("2026-11-28T05:00:00Z"),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_842_000))
        );
        assert_eq!(
            parse_start_at("2026-11-28T06:00:00.5+01:00"),
            Ok(SystemTime::UNIX_EPOCH + Duration::new(1_795_842_000, 500_000_000))
        );
        assert_eq!(
            parse_start_at("2026-11-28T04:30:00-00:30"),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_842_000))
        );
        for bad in [
            "",
            "soon",
            "1.2.3",
            "2026-11-28T05:00:00",
            "1.1234567891",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_start_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_start_in_the_past_is_refused_beyond_the_grace() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(check_start_at(now + Duration::from_secs(5), now).is_ok());
        assert!(check_start_at(now - Duration::from_millis(900), now).is_ok());
        let error = check_start_at(now - Duration::from_secs(3), now).unwrap_err();
        assert!(error.contains("3.0s in the past"), "{error}");
    }

    #[test]
    fn run_ids_are_stable_digests() {
        assert_eq!(run_id_of(""), "cbf29ce484222325");
        assert_eq!(run_id_of("a"), run_id_of("a"));
        assert_ne!(run_id_of("a"), run_id_of("b"));
        assert_eq!(run_id_of("x").len(), 16);
    }
}
