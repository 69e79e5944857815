//! `wsprobe load merge FILE…`: the `--report-json` documents of a sharded run added up
//! into one report, exactly: counts are summed and the percentiles come from the sum of
//! the shards' HdrHistograms (which add without loss), never from averaged percentiles.
//! The thresholds (those the shards were given, and the merge's own) are evaluated once,
//! on the whole run.
//!
//! Reports that do not belong together are refused with a usage error naming the file:
//! not JSON or cut short, not a wsprobe load report, no histograms, another run id,
//! other settings or shard count, the same shard twice, and shards missing.
//!
//! `-` reads standard input, where concatenated JSON documents are read and any other
//! line (a pod's log may hold warnings and the table) skipped, so `kubectl logs … |
//! wsprobe load merge -` works.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use hdrhistogram::Histogram;

use super::report::{self, ClientLag, Histograms, Interval, LatencySummary, LoadReport, Merged};
use super::threshold::{self, Observed, Threshold};
use super::timeline::Timeline;
use super::{JsonOut, html, stats};
use crate::cli::MergeArgs;
use crate::{Context, Error, Outcome};

/// One report as read, with where it came from and its histograms decoded.
#[derive(Debug)]
pub(crate) struct Input {
    /// The file (or `stdin, document 2`), for messages.
    pub(crate) source: String,
    /// The report.
    pub(crate) report: LoadReport,
    /// Its round trips (µs).
    pub(crate) round_trip: Histogram<u64>,
    /// Its connect times (µs).
    pub(crate) connect: Histogram<u64>,
    /// Its reconnect times (µs); empty for a report from before `--reconnect`.
    pub(crate) reconnect: Histogram<u64>,
}

/// A merged run: the report (its `histograms` hold both merged histograms, serialised),
/// and the merged round trips, decoded, for the thresholds.
#[derive(Debug)]
pub(crate) struct MergedRun {
    /// The report, as a single run's (with `merged` set).
    pub(crate) report: LoadReport,
    /// All round trips (µs).
    pub(crate) round_trip: Histogram<u64>,
}

/// Runs `wsprobe load merge`.
pub(crate) fn run(args: MergeArgs, context: Context) -> Result<Outcome, Error> {
    let extra = args
        .thresholds
        .iter()
        .map(|text| threshold::parse(text))
        .collect::<Result<Vec<Threshold>, String>>()
        .map_err(Error::Usage)?;
    let report_json = JsonOut::create(args.report_json.as_deref())?;
    let report_html = super::create_report_html(args.report_html.as_deref())?;
    let mut inputs = Vec::new();
    for path in &args.files {
        inputs.extend(read(path)?);
    }
    let mut shards: Vec<html::Shard> = inputs.iter().filter_map(shard_of).collect();
    shards.sort_by_key(|shard| shard.index);
    let mut merged = merge(inputs).map_err(Error::Usage)?;
    // The shards' thresholds (they agree: the settings are equal), then the merge's own.
    let mut thresholds = Vec::new();
    for text in merged
        .report
        .settings
        .as_ref()
        .map(|settings| settings.thresholds.clone())
        .unwrap_or_default()
    {
        thresholds.push(threshold::parse(&text).map_err(Error::Usage)?);
    }
    for threshold in extra {
        if !thresholds
            .iter()
            .any(|t| t.to_string() == threshold.to_string())
        {
            thresholds.push(threshold);
        }
    }
    let report = &mut merged.report;
    let observed = Observed {
        round_trip: &merged.round_trip,
        errors: report.messages.errors,
        sent: report.messages.sent,
        connect_errors: report.connections.failed,
        connect_attempts: report.connections.opened + report.connections.failed,
        rate: report.achieved_rate,
        reconnects: report.connections.reconnects,
        lost_to_reconnect: report.messages.lost_to_reconnect,
    };
    report.thresholds = thresholds.iter().map(|t| t.evaluate(&observed)).collect();
    super::print_report(report, matches!(report_json, Some(JsonOut::Stdout)));
    if let Some(out) = report_json {
        out.write(&report::to_json(report))?;
    }
    if let Some(file) = report_html {
        let timeline = Timeline::of_report(&report.intervals).map_err(Error::Usage)?;
        let args: Vec<String> = std::env::args().collect();
        let command = html::command_line(&args, context.show_secrets);
        let path = file.path().to_owned();
        file.write(html::render(report, &timeline, &command, &shards).as_bytes())
            .map_err(|e| Error::Other(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    }
    Ok(if report.breached() {
        Outcome::ChecksFailed
    } else {
        Outcome::Success
    })
}

/// What the HTML report shows of one shard: which, how many connections, when it started.
fn shard_of(input: &Input) -> Option<html::Shard> {
    let shard = input.report.shard.as_ref()?;
    Some(html::Shard {
        index: u32::try_from(shard.index).ok()?,
        of: u32::try_from(shard.count).ok()?,
        opened: input.report.connections.opened,
        requested: input.report.connections.requested,
        started: humantime::parse_rfc3339_weak(&input.report.started_at)
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH),
    })
}

/// Reads the reports in `path` (`-`: every document on stdin).
fn read(path: &Path) -> Result<Vec<Input>, Error> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Error::usage(format!("cannot read standard input: {e}")))?;
        let documents = documents_in_log(&bytes).map_err(Error::Usage)?;
        if documents.is_empty() {
            return Err(Error::usage(
                "standard input holds no JSON report (was --report-json - given to the shards?)",
            ));
        }
        return documents
            .iter()
            .enumerate()
            .map(|(n, text)| parse(&format!("stdin, document {}", n + 1), text))
            .collect::<Result<_, _>>()
            .map_err(Error::Usage);
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?;
    parse(&path.display().to_string(), &bytes)
        .map(|input| vec![input])
        .map_err(Error::Usage)
}

/// The JSON documents in a log: each starts on a line that starts with `{` and runs to
/// the end of its value; other lines are skipped. A document cut short is an error.
fn documents_in_log(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut documents = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let line_end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |n| at + n + 1);
        if bytes[at] == b'{' {
            let mut stream =
                serde_json::Deserializer::from_slice(&bytes[at..]).into_iter::<serde_json::Value>();
            match stream.next() {
                Some(Ok(_)) => {
                    let end = at + stream.byte_offset();
                    documents.push(&bytes[at..end]);
                    at = end;
                    continue;
                }
                Some(Err(e)) => {
                    return Err(format!(
                        "standard input, document {}: not a whole JSON document ({e}); \
                         was a report cut short?",
                        documents.len() + 1
                    ));
                }
                None => {}
            }
        }
        at = line_end;
    }
    Ok(documents)
}

/// Reads one report and its histograms.
fn parse(source: &str, bytes: &[u8]) -> Result<Input, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            format!("{source}: the JSON ends too early (a report cut short?)")
        } else {
            format!("{source}: not a JSON document ({e})")
        }
    })?;
    let schema = value.get("schema").and_then(serde_json::Value::as_str);
    if schema != Some(report::SCHEMA) {
        return Err(format!(
            "{source}: not a wsprobe load report (schema {}, wanted \"{}\")",
            schema.map_or_else(|| "missing".to_owned(), |s| format!("\"{s}\"")),
            report::SCHEMA
        ));
    }
    let report: LoadReport = serde_json::from_value(value)
        .map_err(|e| format!("{source}: a damaged wsprobe load report ({e})"))?;
    let Some(histograms) = &report.histograms else {
        return Err(format!(
            "{source}: the report carries no histograms (written by an older wsprobe), so \
             it cannot be merged exactly"
        ));
    };
    if report.settings.is_none() {
        return Err(format!(
            "{source}: the report carries no settings (written by an older wsprobe)"
        ));
    }
    let report::Decoded {
        round_trip,
        connect,
        reconnect,
    } = histograms
        .decode()
        .map_err(|e| format!("{source}: a damaged histogram: {e}"))?;
    // A report without the reconnect fields (from before `--reconnect`) reads as one with
    // none: its counts are zero, and so is its (missing) histogram.
    if round_trip.len() != report.round_trip_ms.count
        || connect.len() != report.connect_ms.count
        || reconnect.len() != report.reconnect_ms.count
        || reconnect.len() != report.connections.reconnects
    {
        return Err(format!(
            "{source}: the histograms do not match the counts of the report (edited?)"
        ));
    }
    Ok(Input {
        source: source.to_owned(),
        report,
        round_trip,
        connect,
        reconnect,
    })
}

/// The shard identity of a report: `(index, count, run id)`; an unsharded run is shard
/// 0 of 1.
fn identity(report: &LoadReport) -> (u64, u64, &str) {
    report
        .shard
        .as_ref()
        .map_or((0, 1, ""), |s| (s.index, s.count, s.run_id.as_str()))
}

/// The first field in which two JSON values (the settings) differ, for messages.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (key, value) in a {
            if b.get(key) != Some(value) {
                return format!(
                    "{key}: {value} and {}",
                    b.get(key).unwrap_or(&serde_json::Value::Null)
                );
            }
        }
    }
    format!("{a} and {b}")
}

/// Checks that the reports are the shards of one run, each once and none missing, and
/// adds them up.
pub(crate) fn merge(mut inputs: Vec<Input>) -> Result<MergedRun, String> {
    let Some(first) = inputs.first() else {
        return Err("no report to merge".into());
    };
    let (_, count, run_id) = identity(&first.report);
    let run_id = run_id.to_owned();
    let first_source = first.source.clone();
    let settings = serde_json::to_value(&first.report.settings).unwrap_or_default();
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    for input in &inputs {
        let report = &input.report;
        let (index, this_count, this_run) = identity(report);
        if this_run != run_id {
            return Err(format!(
                "{} is of run {}, {first_source} of run {}: these are not shards of one run",
                input.source,
                shown_run(this_run),
                shown_run(&run_id)
            ));
        }
        if this_count != count {
            return Err(format!(
                "{} is a shard of {this_count}, {first_source} of {count}",
                input.source
            ));
        }
        if report.url != inputs[0].report.url {
            return Err(format!(
                "{} ran against {}, {first_source} against {}",
                input.source, report.url, inputs[0].report.url
            ));
        }
        let these = serde_json::to_value(&report.settings).unwrap_or_default();
        if these != settings {
            return Err(format!(
                "{} and {first_source} ran with different settings ({})",
                input.source,
                first_difference(&settings, &these)
            ));
        }
        if let Some(other) = seen.insert(index, input.source.clone()) {
            return Err(format!(
                "{other} and {} are both shard {index} of {count}",
                input.source
            ));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|index| !seen.contains_key(index))
        .map(|index| index.to_string())
        .collect();
    if !missing.is_empty() {
        let shown = if missing.len() > 20 {
            format!(
                "{} and {} more",
                missing[..20].join(", "),
                missing.len() - 20
            )
        } else {
            missing.join(", ")
        };
        return Err(format!(
            "{} of {count} shards missing: {shown} (run {})",
            missing.len(),
            shown_run(&run_id)
        ));
    }
    inputs.sort_by_key(|input| identity(&input.report).0);
    add_up(&inputs, run_id)
}

fn shown_run(run_id: &str) -> String {
    if run_id.is_empty() {
        "(unsharded)".into()
    } else {
        run_id.to_owned()
    }
}

/// Adds up the reports (already checked to be the shards of one run, in order).
fn add_up(inputs: &[Input], run_id: String) -> Result<MergedRun, String> {
    let mut round_trip = stats::new_histogram();
    let mut connect = stats::new_histogram();
    let mut reconnect = stats::new_histogram();
    for input in inputs {
        round_trip
            .add(&input.round_trip)
            .and_then(|()| connect.add(&input.connect))
            .and_then(|()| reconnect.add(&input.reconnect))
            .map_err(|e| format!("{}: a histogram out of range: {e:?}", input.source))?;
    }
    let reports: Vec<&LoadReport> = inputs.iter().map(|input| &input.report).collect();
    let first = reports[0];
    let sum = |f: fn(&LoadReport) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    let max = |f: fn(&LoadReport) -> f64| reports.iter().map(|r| f(r)).fold(0.0, f64::max);
    let sum_maps = |f: fn(&LoadReport) -> &BTreeMap<String, u64>| {
        let mut total = BTreeMap::new();
        for report in &reports {
            for (key, count) in f(report) {
                *total.entry(key.clone()).or_insert(0) += count;
            }
        }
        total
    };
    let mut report = first.clone();
    report.target_rate = first.settings.as_ref().and_then(|s| s.rate);
    // The shards send side by side: their rates add up.
    report.achieved_rate = reports.iter().map(|r| r.achieved_rate).sum();
    report.elapsed_s = max(|r| r.elapsed_s);
    report.opening_s = max(|r| r.opening_s);
    report.sending_s = max(|r| r.sending_s);
    report.interrupted = reports.iter().any(|r| r.interrupted);
    report.interrupted_by = reports.iter().find_map(|r| r.interrupted_by.clone());
    report.started_at = reports
        .iter()
        .map(|r| r.started_at.clone())
        .min()
        .unwrap_or_default();
    let c = &mut report.connections;
    c.requested = sum(|r| r.connections.requested);
    c.opened = sum(|r| r.connections.opened);
    c.failed = sum(|r| r.connections.failed);
    c.failures = sum_maps(|r| &r.connections.failures);
    c.dropped = sum(|r| r.connections.dropped);
    c.stalled = sum(|r| r.connections.stalled);
    c.close_codes = sum_maps(|r| &r.connections.close_codes);
    c.reconnects = sum(|r| r.connections.reconnects);
    c.reconnects_by_code = sum_maps(|r| &r.connections.reconnects_by_code);
    c.reconnect_failures = sum_maps(|r| &r.connections.reconnect_failures);
    c.disconnected_s = reports.iter().map(|r| r.connections.disconnected_s).sum();
    let m = &mut report.messages;
    m.sent = sum(|r| r.messages.sent);
    m.echoed = sum(|r| r.messages.echoed);
    m.late = sum(|r| r.messages.late);
    m.lost = sum(|r| r.messages.lost);
    m.not_sent = sum(|r| r.messages.not_sent);
    m.duplicated = sum(|r| r.messages.duplicated);
    m.in_flight = sum(|r| r.messages.in_flight);
    m.corrupted = sum(|r| r.messages.corrupted);
    m.error_frames = sum(|r| r.messages.error_frames);
    m.error_kinds = sum_maps(|r| &r.messages.error_kinds);
    m.errors = sum(|r| r.messages.errors);
    m.lost_to_reconnect = sum(|r| r.messages.lost_to_reconnect);
    m.keepalives = sum(|r| r.messages.keepalives);
    m.keepalive_answers = sum(|r| r.messages.keepalive_answers);
    let lags: Vec<&ClientLag> = reports
        .iter()
        .filter_map(|r| r.client_lag.as_ref())
        .collect();
    report.client_lag = lags.first().map(|lag| {
        let lagged = lags.iter().map(|l| l.lagged).sum::<u64>();
        ClientLag {
            bound_ms: lag.bound_ms,
            lagged,
            max_ms: lags.iter().map(|l| l.max_ms).fold(0.0, f64::max),
            saturated: lagged as f64 > report.messages.sent as f64 * report::SATURATED_SHARE,
        }
    });
    report.round_trip_ms = LatencySummary::of(&round_trip);
    report.connect_ms = LatencySummary::of(&connect);
    report.reconnect_ms = LatencySummary::of(&reconnect);
    report.thresholds = Vec::new();
    report.shard = None;
    report.merged = Some(Merged {
        run_id,
        shards: inputs.len() as u64,
    });
    report.histograms = Some(Histograms::encode(&round_trip, &connect, &reconnect));
    report.intervals = merge_intervals(inputs)?;
    Ok(MergedRun { report, round_trip })
}

/// The shards' intervals added up second by second (they cover whole wall-clock
/// seconds, so the same second of two shards is the same time, as far as their clocks
/// agree).
fn merge_intervals(inputs: &[Input]) -> Result<Vec<Interval>, String> {
    let mut seconds: BTreeMap<u64, (Interval, Histogram<u64>)> = BTreeMap::new();
    for input in inputs {
        for interval in &input.report.intervals {
            let histogram = report::decode_histogram(&interval.round_trip_us).map_err(|e| {
                format!(
                    "{}: a damaged histogram in the interval of {}: {e}",
                    input.source, interval.unix_s
                )
            })?;
            let (sum, round_trips) = seconds.entry(interval.unix_s).or_insert_with(|| {
                (
                    Interval {
                        unix_s: interval.unix_s,
                        sent: 0,
                        echoed: 0,
                        errors: BTreeMap::new(),
                        connect_failed: 0,
                        opened: 0,
                        close_codes: BTreeMap::new(),
                        open: 0,
                        round_trip_us: String::new(),
                    },
                    stats::new_histogram(),
                )
            });
            sum.sent += interval.sent;
            sum.echoed += interval.echoed;
            sum.connect_failed += interval.connect_failed;
            sum.opened += interval.opened;
            sum.open += interval.open;
            for (code, count) in &interval.close_codes {
                *sum.close_codes.entry(code.clone()).or_insert(0) += count;
            }
            for (kind, count) in &interval.errors {
                *sum.errors.entry(kind.clone()).or_insert(0) += count;
            }
            round_trips.add(&histogram).map_err(|e| {
                format!(
                    "{}: a histogram out of range in the interval of {}: {e:?}",
                    input.source, interval.unix_s
                )
            })?;
        }
    }
    Ok(seconds
        .into_values()
        .map(|(mut interval, round_trips)| {
            interval.round_trip_us = report::encode_histogram(&round_trips);
            interval
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_found_among_log_lines() {
        let log =
            b"warning: something\n{\"a\": 1}\nload ws://x\n  Model  open\n{\"b\":\n 2}\n{\"c\":3}";
        let documents = documents_in_log(log).unwrap();
        assert_eq!(
            documents,
            [&b"{\"a\": 1}"[..], b"{\"b\":\n 2}", b"{\"c\":3}"]
        );
        assert!(documents_in_log(b"{\"a\": 1}\n{\"b\": [1, 2").is_err());
        assert!(documents_in_log(b"no json here\n").unwrap().is_empty());
    }
}
