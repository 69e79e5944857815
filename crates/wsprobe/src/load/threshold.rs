//! `--threshold` expressions: parsed before anything connects (a bad one is a usage
//! error), evaluated against what the run measured.
//!
//! Grammar (spaces allowed around the operator):
//!
//! ```text
//! threshold := metric op value
//! op        := "<" | "<=" | ">" | ">=" | "=="
//! metric    := pN            latency percentile, 0 < N ≤ 100 (p50, p90, p99, p99.9, …)
//!            | mean | max    latency
//!            | errors        ping errors (late, lost, duplicated, corrupted, error frames,
//!                            dropped connections): a count (`errors==0`) or a share of the
//!                            pings sent (`errors<0.1%`)
//!            | connect_errors  connections that could not be opened: a count, or a share
//!                            of the connections tried
//!            | rate          achieved pings per second (`rate>=950/s`)
//!            | reconnects    `--reconnect`: connections reopened, a count
//!            | lost_to_reconnect  pings in flight when their connection closed and was
//!                            reopened: a count, or a share of the pings sent
//! value     := duration for latencies (`50ms`, `1.5s`, `250us`), count or `N%`, rate
//! ```

use std::fmt;

use hdrhistogram::Histogram;

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`
    Equal,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Self::Less => actual < limit,
            Self::LessOrEqual => actual <= limit,
            Self::Greater => actual > limit,
            Self::GreaterOrEqual => actual >= limit,
            Self::Equal => actual == limit,
        }
    }

    /// The symbol of the comparison that holds when this one does not.
    fn negated(self) -> &'static str {
        match self {
            Self::Less => "≥",
            Self::LessOrEqual => ">",
            Self::Greater => "≤",
            Self::GreaterOrEqual => "<",
            Self::Equal => "≠",
        }
    }
}

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Metric {
    /// A round-trip percentile (0 < p ≤ 100).
    Percentile(f64),
    /// Mean round trip.
    Mean,
    /// Longest round trip.
    Max,
    /// Ping errors, as a count or a percentage of pings sent.
    Errors { percent: bool },
    /// Connect failures, as a count or a percentage of connections tried.
    ConnectErrors { percent: bool },
    /// Achieved pings per second.
    Rate,
    /// Reconnects, a count.
    Reconnects,
    /// Pings lost to reconnects, as a count or a percentage of pings sent.
    LostToReconnect { percent: bool },
}

/// One parsed `--threshold`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Threshold {
    /// As typed, trimmed.
    pub(crate) text: String,
    /// The metric's name as typed (`p99.9`, `errors`).
    metric_name: String,
    /// What is measured.
    pub(crate) metric: Metric,
    /// The comparison.
    pub(crate) op: Op,
    /// The limit, in the metric's unit: µs for latencies, a count, a percentage, per second.
    pub(crate) limit: f64,
    /// The limit as typed (`50ms`, `0.1%`).
    limit_text: String,
}

/// What a run measured, as thresholds see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observed<'a> {
    /// Every round trip, in µs.
    pub(crate) round_trip: &'a Histogram<u64>,
    /// Ping errors.
    pub(crate) errors: u64,
    /// Pings sent.
    pub(crate) sent: u64,
    /// Connect failures.
    pub(crate) connect_errors: u64,
    /// Connections tried.
    pub(crate) connect_attempts: u64,
    /// Achieved pings per second.
    pub(crate) rate: f64,
    /// Reconnects.
    pub(crate) reconnects: u64,
    /// Pings lost to reconnects.
    pub(crate) lost_to_reconnect: u64,
}

/// A threshold's verdict.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Verdict {
    /// The threshold as typed.
    pub(crate) threshold: String,
    /// Whether it held.
    pub(crate) passed: bool,
    /// The measured value in the threshold's unit (ms for latencies), if there was one.
    pub(crate) actual: Option<f64>,
    /// One line for people: `p99 62.1ms ≥ 50ms` for a breach, `p99 12.0ms < 50ms` otherwise.
    pub(crate) line: String,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses one threshold expression.
pub(crate) fn parse(text: &str) -> Result<Threshold, String> {
    let text = text.trim();
    let bad = |why: &str| {
        format!(
            "`{text}` is not a threshold: {why}; write e.g. `p99<50ms`, `errors<0.1%`, \
             `connect_errors==0` or `rate>=950/s`"
        )
    };
    let Some(op_at) = text.find(['<', '>', '=', '!']) else {
        return Err(bad("it has no comparison (<, <=, >, >=, ==)"));
    };
    let (metric_name, rest) = text.split_at(op_at);
    let metric_name = metric_name.trim();
    let (op, value) = if let Some(value) = rest.strip_prefix("<=") {
        (Op::LessOrEqual, value)
    } else if let Some(value) = rest.strip_prefix(">=") {
        (Op::GreaterOrEqual, value)
    } else if let Some(value) = rest.strip_prefix("==") {
        (Op::Equal, value)
    } else if let Some(value) = rest.strip_prefix('<') {
        (Op::Less, value)
    } else if let Some(value) = rest.strip_prefix('>') {
        (Op::Greater, value)
    } else {
        return Err(bad("the comparison must be <, <=, >, >= or =="));
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(bad("it has no value after the comparison"));
    }
    let (metric, limit) = match metric_name {
        "mean" => (Metric::Mean, parse_latency(value).map_err(|e| bad(&e))?),
        "max" => (Metric::Max, parse_latency(value).map_err(|e| bad(&e))?),
        "errors" | "connect_errors" => {
            let (limit, percent) = parse_count_or_share(value).map_err(|e| bad(&e))?;
            let metric = if metric_name == "errors" {
                Metric::Errors { percent }
            } else {
                Metric::ConnectErrors { percent }
            };
            (metric, limit)
        }
        "reconnects" => {
            let (limit, percent) = parse_count_or_share(value).map_err(|e| bad(&e))?;
            if percent {
                return Err(bad("reconnects is a count (e.g. `reconnects<100`)"));
            }
            (Metric::Reconnects, limit)
        }
        "lost_to_reconnect" => {
            let (limit, percent) = parse_count_or_share(value).map_err(|e| bad(&e))?;
            (Metric::LostToReconnect { percent }, limit)
        }
        "rate" => (
            Metric::Rate,
            wsprobe_core::values::parse_rate(value).map_err(|e| bad(&e))?,
        ),
        name if name.starts_with('p') => {
            let percentile = name[1..]
                .parse::<f64>()
                .ok()
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| {
                    bad(&format!(
                        "`{name}` is not a percentile above p0 and up to p100"
                    ))
                })?;
            (
                Metric::Percentile(percentile),
                parse_latency(value).map_err(|e| bad(&e))?,
            )
        }
        "" => return Err(bad("it names no metric")),
        other => {
            return Err(bad(&format!(
                "`{other}` is not a metric (pN, mean, max, errors, connect_errors, rate, \
                 reconnects, lost_to_reconnect)"
            )));
        }
    };
    Ok(Threshold {
        text: text.to_owned(),
        metric_name: metric_name.to_owned(),
        metric,
        op,
        limit,
        limit_text: value.to_owned(),
    })
}

/// A latency limit in µs: `50ms`, `1.5s`, `250us`/`250µs`, `2m`. A unit is required.
fn parse_latency(text: &str) -> Result<f64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "us" | "µs" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "" => return Err(format!("`{text}` has no unit (write e.g. `{text}ms`)")),
        other => return Err(format!("`{other}` is not a time unit (us, ms, s, m)")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n * scale),
        _ => Err(format!("`{text}` is not a duration")),
    }
}

/// A count (`0`, `10`) or a share (`0.1%`); returns the number and whether it is a share.
fn parse_count_or_share(text: &str) -> Result<(f64, bool), String> {
    let (number, percent) = match text.strip_suffix('%') {
        Some(number) => (number.trim(), true),
        None => (text, false),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && (percent || n.fract() == 0.0) => Ok((n, percent)),
        _ if percent => Err(format!("`{text}` is not a percentage")),
        _ => Err(format!(
            "`{text}` is not a count (or a percentage like `0.1%`)"
        )),
    }
}

/// Shows µs as milliseconds, with precision that suits the size.
pub(crate) fn format_ms(us: f64) -> String {
    let ms = us / 1e3;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        if part == 0 { 0.0 } else { 100.0 }
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

impl Threshold {
    /// Evaluates the threshold against what was measured.
    pub(crate) fn evaluate(&self, observed: &Observed<'_>) -> Verdict {
        let histogram = observed.round_trip;
        let latency = |value: f64| (Some(value), format_ms(value));
        let (actual, shown) = match self.metric {
            Metric::Percentile(_) | Metric::Mean | Metric::Max if histogram.is_empty() => {
                return Verdict {
                    threshold: self.text.clone(),
                    passed: false,
                    actual: None,
                    line: format!(
                        "{} not measured (no echoes), wanted {}",
                        self.metric_name, self.text
                    ),
                };
            }
            Metric::Percentile(p) => latency(histogram.value_at_quantile(p / 100.0) as f64),
            Metric::Mean => latency(histogram.mean()),
            Metric::Max => latency(histogram.max() as f64),
            Metric::Errors { percent: false } => {
                (Some(observed.errors as f64), observed.errors.to_string())
            }
            Metric::Errors { percent: true } => {
                let value = share(observed.errors, observed.sent);
                (Some(value), format!("{value:.3}%"))
            }
            Metric::ConnectErrors { percent: false } => (
                Some(observed.connect_errors as f64),
                observed.connect_errors.to_string(),
            ),
            Metric::ConnectErrors { percent: true } => {
                let value = share(observed.connect_errors, observed.connect_attempts);
                (Some(value), format!("{value:.3}%"))
            }
            Metric::Rate => (Some(observed.rate), format!("{:.1}/s", observed.rate)),
            Metric::Reconnects => (
                Some(observed.reconnects as f64),
                observed.reconnects.to_string(),
            ),
            Metric::LostToReconnect { percent: false } => (
                Some(observed.lost_to_reconnect as f64),
                observed.lost_to_reconnect.to_string(),
            ),
            Metric::LostToReconnect { percent: true } => {
                let value = share(observed.lost_to_reconnect, observed.sent);
                (Some(value), format!("{value:.3}%"))
            }
        };
        let value = actual.unwrap_or(f64::NAN);
        let passed = self.op.holds(value, self.limit);
        let op_shown = if passed {
            match self.op {
                Op::Less => "<",
                Op::LessOrEqual => "≤",
                Op::Greater => ">",
                Op::GreaterOrEqual => "≥",
                Op::Equal => "=",
            }
        } else {
            self.op.negated()
        };
        let is_latency = matches!(
            self.metric,
            Metric::Percentile(_) | Metric::Mean | Metric::Max
        );
        Verdict {
            threshold: self.text.clone(),
            passed,
            actual: if is_latency {
                actual.map(|us| us / 1e3)
            } else {
                actual
            },
            line: format!(
                "{} {shown} {op_shown} {}",
                self.metric_name, self.limit_text
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: &[u64]) -> Histogram<u64> {
        let mut h = crate::load::stats::new_histogram();
        for &v in values_us {
            h.record(v).unwrap();
        }
        h
    }

    fn observed(h: &Histogram<u64>) -> Observed<'_> {
        Observed {
            round_trip: h,
            errors: 3,
            sent: 1000,
            connect_errors: 0,
            connect_attempts: 10,
            rate: 960.0,
            reconnects: 12,
            lost_to_reconnect: 5,
        }
    }

    #[test]
    fn reconnect_thresholds() {
        let h = histogram(&[1_000]);
        let check = |text: &str| parse(text).unwrap().evaluate(&observed(&h));
        assert!(check("reconnects<=12").passed);
        assert!(!check("reconnects<10").passed);
        assert_eq!(check("reconnects<10").line, "reconnects 12 ≥ 10");
        assert!(check("lost_to_reconnect<1%").passed);
        assert!(!check("lost_to_reconnect==0").passed);
        assert!(parse("reconnects<5%").is_err());
    }

    #[test]
    fn the_documented_examples_parse() {
        let cases = [
            ("p99<50ms", Metric::Percentile(99.0), Op::Less, 50_000.0),
            (
                "p99.9 < 200ms",
                Metric::Percentile(99.9),
                Op::Less,
                200_000.0,
            ),
            (
                "p50<=1.5s",
                Metric::Percentile(50.0),
                Op::LessOrEqual,
                1.5e6,
            ),
            ("mean<250us", Metric::Mean, Op::Less, 250.0),
            ("max<2m", Metric::Max, Op::Less, 120e6),
            (
                "errors<0.1%",
                Metric::Errors { percent: true },
                Op::Less,
                0.1,
            ),
            (
                "errors==0",
                Metric::Errors { percent: false },
                Op::Equal,
                0.0,
            ),
            (
                "connect_errors==0",
                Metric::ConnectErrors { percent: false },
                Op::Equal,
                0.0,
            ),
            ("rate>=950/s", Metric::Rate, Op::GreaterOrEqual, 950.0),
            ("rate>6000/m", Metric::Rate, Op::Greater, 100.0),
        ];
        for (text, metric, op, limit) in cases {
            let threshold = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (threshold.metric, threshold.op, threshold.limit),
                (metric, op, limit),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_thresholds_say_why() {
        let cases = [
            ("p99", "no comparison"),
            ("p99!=5ms", "must be"),
            ("p99<", "no value"),
            ("<5ms", "names no metric"),
            ("p99<50", "no unit"),
            ("p99<50 parsecs", "not a time unit"),
            ("p101<5ms", "not a percentile"),
            ("p0<5ms", "not a percentile above p0 and up to p100"),
            ("latency<5ms", "not a metric"),
            ("errors<1.5", "not a count"),
            ("errors<x%", "not a percentage"),
            ("rate>=fast", "not a"),
            ("p99=<5ms", "must be"),
        ];
        for (text, needle) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
            assert!(
                error.contains("p99<50ms"),
                "{text}: the error shows an example"
            );
        }
    }

    #[test]
    fn breaches_and_passes() {
        let h = histogram(&[1_000, 2_000, 3_000, 62_100]);
        let o = observed(&h);
        let verdict = parse("p99<50ms").unwrap().evaluate(&o);
        assert!(!verdict.passed);
        assert_eq!(verdict.line, "p99 62.1ms ≥ 50ms");
        assert!((verdict.actual.unwrap() - 62.1).abs() < 0.1);

        let verdict = parse("p50<=2ms").unwrap().evaluate(&o);
        assert!(verdict.passed, "{verdict:?}");
        assert_eq!(verdict.line, "p50 2.00ms ≤ 2ms");

        let verdict = parse("errors<0.1%").unwrap().evaluate(&o);
        assert_eq!(
            (verdict.passed, verdict.line.as_str()),
            (false, "errors 0.300% ≥ 0.1%")
        );
        assert!(parse("errors<1%").unwrap().evaluate(&o).passed);
        let verdict = parse("errors==0").unwrap().evaluate(&o);
        assert_eq!(
            (verdict.passed, verdict.line.as_str()),
            (false, "errors 3 ≠ 0")
        );
        assert!(parse("connect_errors==0").unwrap().evaluate(&o).passed);
        let verdict = parse("rate>=1000/s").unwrap().evaluate(&o);
        assert_eq!(
            (verdict.passed, verdict.line.as_str()),
            (false, "rate 960.0/s < 1000/s")
        );
        assert!(parse("rate>=950/s").unwrap().evaluate(&o).passed);
        assert!(parse("max>60ms").unwrap().evaluate(&o).passed);
        assert!(!parse("mean<1ms").unwrap().evaluate(&o).passed);
    }

    #[test]
    fn latency_without_echoes_is_a_breach() {
        let h = histogram(&[]);
        let verdict = parse("p99<50ms").unwrap().evaluate(&observed(&h));
        assert!(!verdict.passed);
        assert_eq!(verdict.actual, None);
        assert!(verdict.line.contains("no echoes"), "{}", verdict.line);
    }

    #[test]
    fn milliseconds_are_shown_with_sensible_precision() {
        assert_eq!(format_ms(312.0), "0.31ms");
        assert_eq!(format_ms(62_100.0), "62.1ms");
        assert_eq!(format_ms(1_234_567.0), "1235ms");
    }
}
