//! The result of a load run as plain data ([`LoadReport`]), and the ways it is shown:
//! the table on stdout, the threshold lines, the `--report-json` document (all pure
//! functions of the report), and the `--hdr-log` interval log of round trips.
//!
//! The JSON document is lossless: besides the summaries it carries the histograms
//! themselves ([`Histograms`]: HdrHistogram V2, deflate-compressed, base64, values in µs),
//! the settings of the whole command ([`Settings`]) and, for a shard, its identity
//! ([`ShardIdentity`]), so `wsprobe load merge` can add shards up exactly and refuse
//! reports that do not belong together. A renderer (the table here, an HTML page) needs
//! only a [`LoadReport`]; the exact histograms come from [`Histograms::decode`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;
use std::time::{Duration, SystemTime};

use colored::Colorize;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use serde::{Deserialize, Serialize};

use super::threshold::{Verdict, format_ms};
use wsprobe_core::report_file::ReportFile;

/// Version of the JSON document; bumped when a field changes meaning or goes away.
pub(crate) const SCHEMA: &str = "wsprobe-load/1";

/// Which load model ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// `--rate`: a fixed timetable, latency from the scheduled send.
    Open,
    /// One ping in flight per connection, latency from the actual send.
    Closed,
}

/// Latency percentiles, in milliseconds; `None` when nothing was measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LatencySummary {
    /// Number of samples.
    pub(crate) count: u64,
    /// Shortest.
    pub(crate) min: Option<f64>,
    /// Mean.
    pub(crate) mean: Option<f64>,
    /// Median.
    pub(crate) p50: Option<f64>,
    /// 90th percentile.
    pub(crate) p90: Option<f64>,
    /// 99th percentile.
    pub(crate) p99: Option<f64>,
    /// 99.9th percentile (`"p99.9"` in JSON).
    #[serde(rename = "p99.9")]
    pub(crate) p99_9: Option<f64>,
    /// Longest.
    pub(crate) max: Option<f64>,
}

impl LatencySummary {
    /// Summarises a histogram of µs.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            count: histogram.len(),
            min: Some(ms(histogram.min())),
            mean: Some(histogram.mean() / 1e3),
            p50: Some(ms(histogram.value_at_quantile(0.50))),
            p90: Some(ms(histogram.value_at_quantile(0.90))),
            p99: Some(ms(histogram.value_at_quantile(0.99))),
            p99_9: Some(ms(histogram.value_at_quantile(0.999))),
            max: Some(ms(histogram.max())),
        }
    }
}

/// Connections: how many opened, why others did not, how many the server dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConnectionsReport {
    /// `-c`.
    pub(crate) requested: u64,
    /// Connections that opened (handshake 101).
    pub(crate) opened: u64,
    /// Connections that could not be opened.
    pub(crate) failed: u64,
    /// Failures by cause: an HTTP status (`"403"`), `refused`, `dns`, `tls`, `timeout`,
    /// `proxy`, `too_many_open_files` (EMFILE), `system_out_of_files` (ENFILE),
    /// `address_not_available` (EADDRNOTAVAIL), `address_in_use` (EADDRINUSE), `other`.
    pub(crate) failures: BTreeMap<String, u64>,
    /// Connections the server closed (or that broke or stalled) before the run was done
    /// with them.
    pub(crate) dropped: u64,
    /// Of those, connections given up because a send could not be written out within
    /// `--timeout`: the server was not reading.
    pub(crate) stalled: u64,
    /// Close codes of those connections (`1006`: ended without a close frame).
    pub(crate) close_codes: BTreeMap<String, u64>,
    /// `--reconnect`: connections reopened after a close the policy accepts (0 in reports
    /// from before it existed).
    #[serde(default)]
    pub(crate) reconnects: u64,
    /// The close codes that caused them.
    #[serde(default)]
    pub(crate) reconnects_by_code: BTreeMap<String, u64>,
    /// Connections whose reconnect was refused (`401`, `403`) or gave up after
    /// `--reconnect-max` attempts, by the cause of the last attempt (the keys of
    /// `failures`); each is counted as dropped too.
    #[serde(default)]
    pub(crate) reconnect_failures: BTreeMap<String, u64>,
    /// Time spent closed and reconnecting, summed over the connections, in seconds.
    #[serde(default)]
    pub(crate) disconnected_s: f64,
}

/// Pings and what became of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessagesReport {
    /// Pings sent.
    pub(crate) sent: u64,
    /// Echoes back within `--timeout`.
    pub(crate) echoed: u64,
    /// Echoes back after `--timeout` (their round trips are in the histogram too).
    pub(crate) late: u64,
    /// Pings never echoed (by the end of the run plus `--timeout`).
    pub(crate) lost: u64,
    /// Open model with `-d`: slots of the timetable due before the end that were not sent
    /// by then (the connection was behind). Not an error: a sign that the target rate is
    /// above what the client or the server sustains.
    pub(crate) not_sent: u64,
    /// Echoes of a sequence already echoed.
    pub(crate) duplicated: u64,
    /// Pings still awaiting their echo when a second Ctrl-C stopped the run at once:
    /// in flight, not counted (neither echoed nor lost).
    pub(crate) in_flight: u64,
    /// Damaged echoes, unreadable messages, echoes of pings never sent.
    pub(crate) corrupted: u64,
    /// Gateway error frames (`{"message": "Forbidden", …}`).
    pub(crate) error_frames: u64,
    /// Error frames by their `message`.
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// late + lost + duplicated + corrupted + error frames + dropped connections: what
    /// `--threshold errors…` compares.
    pub(crate) errors: u64,
    /// `--reconnect`: pings awaiting their echo (within `--timeout`) on a connection the
    /// server closed and that was reopened: lost to the reconnect, not an error.
    #[serde(default)]
    pub(crate) lost_to_reconnect: u64,
    /// `--keepalive`: keepalive frames sent (not pings: not in `sent`).
    #[serde(default)]
    pub(crate) keepalives: u64,
    /// Answers to them recognised (not counted as echoes nor as errors).
    #[serde(default)]
    pub(crate) keepalive_answers: u64,
}

/// Open model: how late the client itself was with its sends (see `worker.rs`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClientLag {
    /// A send is lagged when it left more than this (ms) after both its slot and the
    /// end of the connection's previous send.
    pub(crate) bound_ms: f64,
    /// Sends lagged beyond the bound.
    pub(crate) lagged: u64,
    /// The longest lag, ms.
    pub(crate) max_ms: f64,
    /// More than [`SATURATED_SHARE`] of the sends lagged: the client, not the server,
    /// held the rate back, and the latencies include its own delay.
    pub(crate) saturated: bool,
}

/// The share of lagged sends above which the client counts as saturated.
pub(crate) const SATURATED_SHARE: f64 = 0.01;

/// Everything a load run measured (or a merge of shards added up). Reports are pure
/// functions of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Always [`SCHEMA`].
    pub(crate) schema: String,
    /// The URL (any password in it redacted).
    pub url: String,
    /// Which model ran.
    pub(crate) model: Model,
    /// `--rate` (open model only), pings per second.
    pub(crate) target_rate: Option<f64>,
    /// Pings sent per second of sending.
    pub(crate) achieved_rate: f64,
    /// `--size`, bytes per ping.
    pub(crate) size: u64,
    /// `--route`.
    pub(crate) route: String,
    /// `--echo`: `body` or `full`.
    pub(crate) echo: String,
    /// From the first connection attempt to the end, in seconds.
    pub(crate) elapsed_s: f64,
    /// Opening the connections (at `--connect-rate`, over `--ramp-up`), in seconds:
    /// sending starts for every connection at once when all have tried to open.
    pub(crate) opening_s: f64,
    /// How long pings were being sent, in seconds (what the rate is measured over).
    pub(crate) sending_s: f64,
    /// Stopped early by Ctrl-C, SIGTERM or SIGHUP.
    pub(crate) interrupted: bool,
    /// Which signal stopped it (`SIGINT`, `SIGTERM`, `SIGHUP`); `null` when none did.
    pub(crate) interrupted_by: Option<String>,
    /// Open model: the client's own lag; `null` in the closed model.
    pub(crate) client_lag: Option<ClientLag>,
    /// Connections.
    pub(crate) connections: ConnectionsReport,
    /// Pings.
    pub(crate) messages: MessagesReport,
    /// Round trips (ms): from the scheduled send (open model) or the actual send (closed).
    pub(crate) round_trip_ms: LatencySummary,
    /// Connect times (ms): DNS, TCP, TLS and the WebSocket handshake.
    pub(crate) connect_ms: LatencySummary,
    /// `--reconnect`: from a close to the new connection open (backoff included), ms.
    #[serde(default)]
    pub(crate) reconnect_ms: LatencySummary,
    /// Every `--threshold`, in order, with its verdict (empty for a shard: the merge
    /// evaluates them).
    pub(crate) thresholds: Vec<Verdict>,
    /// When the run started (the first connection attempt), RFC 3339 UTC.
    #[serde(default)]
    pub(crate) started_at: String,
    /// The command's settings (of the whole run, for a shard): what shards must agree on.
    #[serde(default)]
    pub(crate) settings: Option<Settings>,
    /// `--shard`: which shard of which run this is; `null` for an unsharded run.
    #[serde(default)]
    pub(crate) shard: Option<ShardIdentity>,
    /// A merged report: the run and how many shards were added up; `null` otherwise.
    #[serde(default)]
    pub(crate) merged: Option<Merged>,
    /// The exact histograms; `null` only in reports of older versions.
    #[serde(default)]
    pub(crate) histograms: Option<Histograms>,
    /// The run second by second, in whole wall-clock seconds (so the intervals of shards
    /// on machines with synchronised clocks line up, and a merge adds them by second).
    #[serde(default)]
    pub(crate) intervals: Vec<Interval>,
}

/// One second of a run: what happened within one whole second of wall-clock time (the
/// first and the last interval may cover only part of it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Interval {
    /// The Unix time, in whole seconds, of the second the interval lies in.
    pub(crate) unix_s: u64,
    /// Pings sent.
    pub(crate) sent: u64,
    /// Echoes within `--timeout`.
    pub(crate) echoed: u64,
    /// Errors counted in the interval, by kind (`late`, `lost`, `duplicated`,
    /// `corrupted`, `error_frames`, `dropped`; only those that occurred). Lost pings are
    /// counted when the connection gives up on them, at its end.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Connections that failed to open.
    pub(crate) connect_failed: u64,
    /// Connections opened (absent in reports from before it was recorded).
    #[serde(default)]
    pub(crate) opened: u64,
    /// Close codes of the connections dropped, by code (only those that occurred).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) close_codes: BTreeMap<String, u64>,
    /// Connections open at the end of the interval (summed over the shards in a merge).
    pub(crate) open: u64,
    /// Round trips that ended in the interval: HdrHistogram V2, deflate, base64, µs.
    pub(crate) round_trip_us: String,
}

/// The settings of a load command, as typed (for a shard: of the whole run, before the
/// split). Shards of one run have equal settings; `load merge` refuses others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// `-c`, over all shards.
    pub(crate) connections: u64,
    /// `--rate`, over all shards.
    pub(crate) rate: Option<f64>,
    /// `-n`, over all shards.
    pub(crate) count: Option<u64>,
    /// `-d` in seconds (`null` with `-n`; 10 when neither was given).
    pub(crate) duration_s: Option<f64>,
    /// `--ramp-up` in seconds.
    pub(crate) ramp_up_s: Option<f64>,
    /// `--connect-rate`, over all shards.
    pub(crate) connect_rate: f64,
    /// `--size`.
    pub(crate) size: u64,
    /// `--route`.
    pub(crate) route: String,
    /// `--echo`: `body` or `full`.
    pub(crate) echo: String,
    /// `--timeout` in seconds.
    pub(crate) timeout_s: f64,
    /// `--start-at`, RFC 3339 UTC, if given.
    pub(crate) start_at: Option<String>,
    /// The `--threshold`s as typed (a shard leaves them to the merge).
    pub(crate) thresholds: Vec<String>,
    /// `--keepalive` (`5m ping`, `30s message`: the text is left out, it may carry a
    /// token); absent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keepalive: Option<String>,
    /// `--reconnect` (`going-away, at most 10 attempts`); absent without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reconnect: Option<String>,
}

/// Which shard a report is of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardIdentity {
    /// 0-based index.
    pub(crate) index: u64,
    /// How many shards the run has.
    pub(crate) count: u64,
    /// Shared by every shard of the run: `--run-id`, or a digest of the URL and settings.
    pub(crate) run_id: String,
    /// The global number of this shard's first connection (ping tokens carry it).
    pub(crate) first_connection: u64,
}

/// What a merged report was made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Merged {
    /// The run id the shards share.
    pub(crate) run_id: String,
    /// How many shard reports were added up.
    pub(crate) shards: u64,
}

/// The exact histograms of a run, in µs: each the HdrHistogram V2 serialisation,
/// deflate-compressed (the format of `--hdr-log` intervals and of HdrHistogram's
/// Java, C, Go and Python libraries), in standard base64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Histograms {
    /// Round trips (µs).
    pub(crate) round_trip_us: String,
    /// Connect times (µs).
    pub(crate) connect_us: String,
    /// Reconnect times (µs): from a close to the new connection open. Absent in reports
    /// from before `--reconnect`, which had none: read as empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reconnect_us: Option<String>,
}

/// A run's histograms, decoded.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Round trips (µs).
    pub(crate) round_trip: Histogram<u64>,
    /// Connect times (µs).
    pub(crate) connect: Histogram<u64>,
    /// Reconnect times (µs).
    pub(crate) reconnect: Histogram<u64>,
}

impl Histograms {
    /// Serialises the histograms.
    pub(crate) fn encode(
        round_trip: &Histogram<u64>,
        connect: &Histogram<u64>,
        reconnect: &Histogram<u64>,
    ) -> Self {
        Self {
            round_trip_us: encode_histogram(round_trip),
            connect_us: encode_histogram(connect),
            reconnect_us: Some(encode_histogram(reconnect)),
        }
    }

    /// Reads them back (a missing reconnect histogram as an empty one).
    pub(crate) fn decode(&self) -> Result<Decoded, String> {
        Ok(Decoded {
            round_trip: decode_histogram(&self.round_trip_us)
                .map_err(|e| format!("round_trip_us: {e}"))?,
            connect: decode_histogram(&self.connect_us).map_err(|e| format!("connect_us: {e}"))?,
            reconnect: match &self.reconnect_us {
                Some(text) => decode_histogram(text).map_err(|e| format!("reconnect_us: {e}"))?,
                None => super::stats::new_histogram(),
            },
        })
    }
}

/// A histogram as base64 of its V2 deflate serialisation.
pub(crate) fn encode_histogram(histogram: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::Serializer as _;
    let mut bytes = Vec::new();
    // Writing to a Vec fails only for a histogram too large to serialise, which ours
    // (bounded range, 3 significant digits) never are; an empty string then reads back
    // as an error rather than a wrong histogram.
    if V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .is_err()
    {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a histogram written by [`encode_histogram`].
pub(crate) fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram: {e:?}"))
}

impl LoadReport {
    /// Whether any threshold was breached.
    pub(crate) fn breached(&self) -> bool {
        self.thresholds.iter().any(|verdict| !verdict.passed)
    }
}

/// The report as the `--report-json` document.
pub(crate) fn to_json(report: &LoadReport) -> String {
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn latency_row(out: &mut String, name: &str, summary: &LatencySummary) {
    let cell = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |ms| format_ms(ms * 1e3));
    let _ = writeln!(
        out,
        "  {name:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        summary.count,
        cell(summary.mean),
        cell(summary.p50),
        cell(summary.p90),
        cell(summary.p99),
        cell(summary.p99_9),
        cell(summary.max),
    );
}

/// The report as a table for people (ends with a newline).
pub(crate) fn to_table(report: &LoadReport) -> String {
    let mut out = String::new();
    let model = match report.model {
        Model::Open => "open model: fixed timetable, latency from the scheduled send",
        Model::Closed => "closed model: one ping in flight per connection",
    };
    let _ = writeln!(out, "{} {}", "load".bold(), report.url);
    if report.interrupted {
        let by = match report.interrupted_by.as_deref() {
            None | Some("SIGINT") => "Ctrl-C",
            Some(signal) => signal,
        };
        let _ = writeln!(
            out,
            "{}",
            format!("interrupted by {by}: what ran until then").yellow()
        );
    }
    let row = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "  {name:<12} {value}");
    };
    row(&mut out, "Model", model.into());
    if let Some(shard) = &report.shard {
        row(
            &mut out,
            "Shard",
            format!(
                "{} of {} (run {}): thresholds are evaluated by `wsprobe load merge`",
                shard.index, shard.count, shard.run_id
            ),
        );
    }
    if let Some(merged) = &report.merged {
        row(
            &mut out,
            "Merged",
            format!(
                "{} shards of run {}: counts added up, percentiles of the merged histograms",
                merged.shards, merged.run_id
            ),
        );
    }
    row(
        &mut out,
        "Time",
        format!(
            "{:.2}s opening connections, {:.2}s sending, {:.2}s in all",
            report.opening_s, report.sending_s, report.elapsed_s
        ),
    );
    let rate = match report.target_rate {
        Some(target) => format!(
            "{:.1}/s achieved of {target:.1}/s target ({:.1}%)",
            report.achieved_rate,
            report.achieved_rate * 100.0 / target
        ),
        None => format!("{:.1}/s achieved", report.achieved_rate),
    };
    // The rate is over the whole sending time: connections lost on the way pull it down.
    let rate = match report.connections.dropped {
        0 => rate,
        dropped => format!(
            "{rate}, {dropped} of {} connections dropped during the run",
            report.connections.opened
        ),
    };
    row(&mut out, "Rate", rate);
    let c = &report.connections;
    let failed = if c.failed == 0 {
        "0 failed".to_owned()
    } else {
        format!("{} failed ({})", c.failed, counts(&c.failures))
    };
    let stalled = if c.stalled == 0 {
        String::new()
    } else {
        format!(
            " ({} stalled: the server is not reading; a send did not complete within --timeout)",
            c.stalled
        )
    };
    row(
        &mut out,
        "Connections",
        format!(
            "{} of {} opened, {failed}, {} dropped{stalled}",
            c.opened, c.requested, c.dropped
        ),
    );
    let close_codes = counts(&c.close_codes);
    row(&mut out, "Close codes", close_codes);
    if c.reconnects > 0 || !c.reconnect_failures.is_empty() {
        let failures = if c.reconnect_failures.is_empty() {
            String::new()
        } else {
            format!(
                ", {} not reopened ({})",
                c.reconnect_failures.values().sum::<u64>(),
                counts(&c.reconnect_failures)
            )
        };
        row(
            &mut out,
            "Reconnects",
            format!(
                "{} (after {}){failures}, {:.2}s disconnected in all",
                c.reconnects,
                counts(&c.reconnects_by_code),
                c.disconnected_s
            ),
        );
    }
    let m = &report.messages;
    let in_flight = if m.in_flight == 0 {
        String::new()
    } else {
        format!(", {} in flight (not counted)", m.in_flight)
    };
    row(
        &mut out,
        "Messages",
        format!(
            "{} sent, {} echoed, {} late, {} lost, {} duplicated, {} corrupted{in_flight}",
            m.sent, m.echoed, m.late, m.lost, m.duplicated, m.corrupted
        ),
    );
    let error_frames = if m.error_frames == 0 {
        "0".to_owned()
    } else {
        format!("{} ({})", m.error_frames, counts(&m.error_kinds))
    };
    row(&mut out, "Error frames", error_frames);
    if m.lost_to_reconnect > 0 || c.reconnects > 0 {
        row(
            &mut out,
            "Reconnecting",
            format!(
                "{} pings in flight when their connection closed: lost to the reconnect, \
                 not errors",
                m.lost_to_reconnect
            ),
        );
    }
    if m.keepalives > 0 {
        row(
            &mut out,
            "Keepalives",
            format!(
                "{} sent, {} answered (not pings)",
                m.keepalives, m.keepalive_answers
            ),
        );
    }
    let errors = if m.errors == 0 {
        "0".green().to_string()
    } else {
        m.errors.to_string().red().to_string()
    };
    row(&mut out, "Errors", errors);
    if m.not_sent > 0 {
        row(
            &mut out,
            "Not sent",
            format!(
                "{} {}",
                m.not_sent,
                "slots of the timetable were due before the end of -d but not sent: the \
                 target rate is above what the client or the server sustains"
                    .yellow()
            ),
        );
    }
    if let Some(lag) = report.client_lag.as_ref().filter(|lag| lag.saturated) {
        let share = lag.lagged as f64 * 100.0 / (m.sent.max(1)) as f64;
        row(
            &mut out,
            "Warning",
            format!(
                "the client was saturated: {} sends ({share:.1}%) left over {} late for \
                 its own reasons (max {}), and the latencies include that delay; lower \
                 --rate or -c, or spread the load over more processes",
                lag.lagged,
                format_ms(lag.bound_ms * 1e3),
                format_ms(lag.max_ms * 1e3)
            )
            .yellow()
            .to_string(),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    latency_row(&mut out, "Round trip", &report.round_trip_ms);
    latency_row(&mut out, "Connect", &report.connect_ms);
    if report.reconnect_ms.count > 0 {
        latency_row(&mut out, "Reconnect", &report.reconnect_ms);
    }
    out
}

/// One line per threshold: `✓ p99 12.0ms < 50ms` or `✗ p99 62.1ms ≥ 50ms`.
pub(crate) fn threshold_lines(report: &LoadReport) -> String {
    let mut out = String::new();
    for verdict in &report.thresholds {
        let mark = if verdict.passed {
            "✓".green()
        } else {
            "✗".red().bold()
        };
        let _ = writeln!(out, "{mark} {}", verdict.line);
    }
    out
}

/// A `--hdr-log` file: the standard HdrHistogram interval log (V2, deflate-compressed),
/// one histogram of round trips in µs per interval, timestamps relative to the start.
/// Logs from several machines merge with the usual HdrHistogram tools. Like every report
/// file, it is written to a temporary file and put in place whole by [`HdrLog::finish`].
pub(crate) struct HdrLog {
    file: BufWriter<ReportFile>,
    serializer: V2DeflateSerializer,
}

impl std::fmt::Debug for HdrLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdrLog").finish_non_exhaustive()
    }
}

impl HdrLog {
    /// Creates the file and writes the header (start time, base time, legend).
    pub(crate) fn create(path: &Path, started: SystemTime) -> io::Result<Self> {
        let mut file = BufWriter::new(ReportFile::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("wsprobe load: round trips in microseconds, one interval a second")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut file, &mut serializer)?;
        writeln!(
            file,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(Self { file, serializer })
    }

    /// Appends the histogram of one interval that began `start` after the base time.
    pub(crate) fn write_interval(
        &mut self,
        histogram: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> io::Result<()> {
        // A builder without settings writes no header lines, only the interval.
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.file, &mut self.serializer)?;
        writer
            .write_histogram(histogram, start, length, None)
            .map_err(|e| io::Error::other(format!("{e}")))
    }

    /// Writes out what is buffered and puts the file in place.
    pub(crate) fn finish(self) -> io::Result<()> {
        self.file.into_inner().map_err(|e| e.into_error())?.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    fn report() -> LoadReport {
        let mut histogram = crate::load::stats::new_histogram();
        for us in [150, 200, 250, 4_000] {
            histogram.record(us).unwrap();
        }
        let mut reconnect = crate::load::stats::new_histogram();
        for us in [180_000, 240_000] {
            reconnect.record(us).unwrap();
        }
        LoadReport {
            schema: SCHEMA.into(),
            url: "ws://127.0.0.1:1/dev".into(),
            model: Model::Open,
            target_rate: Some(100.0),
            achieved_rate: 99.5,
            size: 64,
            route: "send".into(),
            echo: "body".into(),
            elapsed_s: 1.5,
            opening_s: 0.1,
            sending_s: 1.0,
            interrupted: false,
            interrupted_by: None,
            client_lag: Some(ClientLag {
                bound_ms: 10.0,
                lagged: 0,
                max_ms: 0.5,
                saturated: false,
            }),
            connections: ConnectionsReport {
                requested: 3,
                opened: 2,
                failed: 1,
                failures: [("403".to_owned(), 1)].into(),
                dropped: 0,
                stalled: 0,
                close_codes: BTreeMap::new(),
                reconnects: 2,
                reconnects_by_code: [("1001".to_owned(), 2)].into(),
                reconnect_failures: [("401".to_owned(), 1)].into(),
                disconnected_s: 0.25,
            },
            messages: MessagesReport {
                sent: 4,
                echoed: 4,
                ..MessagesReport::default()
            },
            round_trip_ms: LatencySummary::of(&histogram),
            connect_ms: LatencySummary::default(),
            reconnect_ms: LatencySummary::of(&reconnect),
            thresholds: Vec::new(),
            started_at: "2026-11-28T05:00:00.000Z".into(),
            settings: None,
            shard: None,
            merged: None,
            histograms: Some(Histograms::encode(
                &histogram,
                &crate::load::stats::new_histogram(),
                &reconnect,
            )),
            intervals: vec![Interval {
                unix_s: 1_795_842_000,
                sent: 4,
                echoed: 4,
                errors: BTreeMap::new(),
                connect_failed: 1,
                opened: 3,
                close_codes: [("1006".to_owned(), 1)].into(),
                open: 2,
                round_trip_us: encode_histogram(&histogram),
            }],
        }
    }

    #[test]
    fn the_json_reads_back_with_its_histograms() {
        let report = report();
        let back: LoadReport = serde_json::from_str(&to_json(&report)).unwrap();
        assert_eq!(back, report);
        let Decoded {
            round_trip,
            connect,
            reconnect,
        } = back.histograms.unwrap().decode().unwrap();
        assert_eq!(reconnect.len(), 2);
        assert_eq!(round_trip.len(), 4);
        assert_eq!(round_trip.max(), round_trip.highest_equivalent(4_000));
        assert!(connect.is_empty());
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("aGVsbG8=").is_err());
    }

    #[test]
    fn the_table_shows_model_rate_counts_and_percentiles() {
        let table = to_table(&report());
        for needle in [
            "open model",
            "99.5/s achieved of 100.0/s target (99.5%)",
            "2 of 3 opened, 1 failed (403: 1), 0 dropped",
            "4 sent, 4 echoed, 0 late, 0 lost, 0 duplicated, 0 corrupted",
            "2 (after 1001: 2), 1 not reopened (401: 1), 0.25s disconnected in all",
            "Reconnect ",
            "Round trip",
            "4.00ms",
        ] {
            assert!(table.contains(needle), "{needle} in\n{table}");
        }
        let connect_row = table.lines().find(|l| l.contains("Connect ")).unwrap();
        assert!(connect_row.contains(" - "), "{connect_row}");
    }

    #[test]
    fn not_sent_slots_drops_in_flight_pings_and_a_saturated_client_are_explained() {
        let mut report = report();
        assert!(!to_table(&report).contains("Not sent"));
        assert!(!to_table(&report).contains("saturated"));
        report.messages.not_sent = 70;
        report.connections.dropped = 1;
        report.messages.in_flight = 3;
        report.client_lag = Some(ClientLag {
            bound_ms: 10.0,
            lagged: 2,
            max_ms: 25.0,
            saturated: true,
        });
        let table = to_table(&report);
        for needle in [
            "Not sent     70 slots",
            "the target rate is above what the client or the server sustains",
            "the client was saturated: 2 sends (50.0%) left over 10.0ms late",
            "(max 25.0ms)",
            "99.5/s achieved of 100.0/s target (99.5%), 1 of 2 connections dropped during the run",
            "0 corrupted, 3 in flight (not counted)",
        ] {
            assert!(table.contains(needle), "{needle} in\n{table}");
        }
    }

    #[test]
    fn the_json_has_the_documented_fields() {
        let json: serde_json::Value = serde_json::from_str(&to_json(&report())).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["model"], "open");
        assert_eq!(json["connections"]["failures"]["403"], 1);
        assert_eq!(json["round_trip_ms"]["count"], 4);
        // HdrHistogram reports the highest value equivalent to the one recorded.
        let p999 = json["round_trip_ms"]["p99.9"].as_f64().unwrap();
        assert!((p999 - 4.0).abs() < 0.01, "{p999}");
        assert_eq!(json["connect_ms"]["p50"], serde_json::Value::Null);
    }

    #[test]
    fn hdr_logs_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rtt.hlog");
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut log = HdrLog::create(&path, started).unwrap();
        let mut histogram = crate::load::stats::new_histogram();
        histogram.record(1_234).unwrap();
        log.write_interval(&histogram, Duration::ZERO, Duration::from_secs(1))
            .unwrap();
        histogram.record(5_000).unwrap();
        log.write_interval(&histogram, Duration::from_secs(1), Duration::from_secs(1))
            .unwrap();
        log.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        let intervals: Vec<_> = IntervalLogIterator::new(&bytes)
            .filter_map(|entry| match entry.unwrap() {
                LogEntry::Interval(interval) => Some(interval),
                _ => None,
            })
            .collect();
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[1].start_timestamp(), Duration::from_secs(1));
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(intervals[1].encoded_histogram())
            .unwrap();
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut raw.as_slice())
            .unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded.max(), histogram.max());
    }
}
