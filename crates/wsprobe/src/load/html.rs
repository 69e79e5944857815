//! `--report-html`: the report as one self-contained HTML page, a pure function of the
//! [`LoadReport`] and the run's [`Timeline`] ([`render`]).
//!
//! The charts are SVG drawn by `plotters` (its SVG backend only: no fonts, no bitmaps;
//! text is left to the browser's own sans-serif) and inlined, so the page needs no
//! network at all: no script, no web font, no external style or image. Values show on
//! hover through SVG `<title>`s on a transparent strip per plotted point; colours of axes
//! and text follow `prefers-color-scheme` and print through CSS.
//!
//! Long runs are down-sampled for plotting to at most [`MAX_POINTS`] points a chart by
//! adding neighbouring intervals (histograms are added, so a point's percentiles are
//! exact for its span); the percentile distribution comes from the whole run's histogram,
//! the sum of every interval's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::report::{self, LoadReport, Model};
use super::stats::new_histogram;
use super::threshold::{self, Metric, Verdict, format_ms};
use super::timeline::{IntervalCounts, Timeline, add_maps};

/// The most points a chart over time plots; longer runs are down-sampled to this.
const MAX_POINTS: usize = 600;

/// Size of a chart, in SVG pixels (it scales to the page's width).
const SIZE: (u32, u32) = (960, 340);

/// Colours of the series: readable on white and on a dark background.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Error kinds (gateway messages, connect causes) plotted apart; the rest are summed.
const MAX_KINDS: usize = 6;

/// One shard of a merged run, as the page lists it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shard {
    /// Its index, 0-based (`--shard I/N`).
    pub(crate) index: u32,
    /// How many shards the run had (`N`).
    pub(crate) of: u32,
    /// Connections it opened.
    pub(crate) opened: u64,
    /// Connections it was asked for.
    pub(crate) requested: u64,
    /// When it started (its own clock).
    pub(crate) started: SystemTime,
}

/// The report as an HTML page. `command` is the command line, already redacted
/// ([`command_line`]); `shards` lists the shards of a merged run (none for a single run).
pub(crate) fn render(
    report: &LoadReport,
    timeline: &Timeline,
    command: &str,
    shards: &[Shard],
) -> String {
    let points = downsample(timeline);
    let mut whole = new_histogram();
    for interval in &timeline.intervals {
        interval.round_trip.add_to(&mut whole);
    }
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>wsprobe load: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&report.url)
    );
    header(&mut out, report, timeline, command);
    if !shards.is_empty() {
        section(
            &mut out,
            "shards",
            "Shards",
            &format!("This run was merged from {} shards.", shards.len()),
            &shard_table(shards),
        );
    }
    let span = if points.len() < timeline.intervals.len() {
        format!(
            " Each point covers {:.0} s (down-sampled from {} intervals).",
            points.first().map_or(1.0, |p| p.end_s - p.start_s),
            timeline.intervals.len()
        )
    } else {
        String::new()
    };
    section(
        &mut out,
        "latency-over-time",
        "Latency over time",
        &format!(
            "Round trips per interval, {}.{span}",
            match report.model {
                Model::Open => "from the scheduled send",
                Model::Closed => "from the actual send",
            }
        ),
        &latency_chart(&points, &report.thresholds),
    );
    section(
        &mut out,
        "percentile-distribution",
        "Percentile distribution",
        "Round trips of the whole run against percentile; each step to the right is one \
         more nine, so the tail is visible.",
        &(percentile_chart(&whole) + &percentile_table(&whole)),
    );
    section(
        &mut out,
        "throughput-over-time",
        "Throughput over time",
        "Pings sent and echoes received per second.",
        &throughput_chart(&points, report.target_rate),
    );
    section(
        &mut out,
        "connections-over-time",
        "Connections over time",
        &format!(
            "Connections open at the end of each interval; opened, dropped and failed per \
             second. Close codes of dropped connections: {}.",
            escape(&counts(&report.connections.close_codes))
        ),
        &connections_chart(&points),
    );
    section(
        &mut out,
        "errors-over-time",
        "Errors over time",
        &format!(
            "Errors per second by kind; {} in all (connect failures apart: {}).",
            report.messages.errors, report.connections.failed
        ),
        &errors_chart(&points),
    );
    let mut table = strip_ansi(&report::to_table(report));
    if !report.thresholds.is_empty() {
        table.push('\n');
        table.push_str(&strip_ansi(&report::threshold_lines(report)));
    }
    section(
        &mut out,
        "summary",
        "Summary",
        "The table the terminal shows.",
        &format!("<pre>{}</pre>", escape(&table)),
    );
    let _ = writeln!(
        out,
        "<footer>wsprobe {} · schema {}</footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION"),
        report.schema
    );
    out
}

const STYLE: &str = r##"
:root{color-scheme:light dark;--fg:#1b1b1f;--bg:#fff;--muted:#5f6368;--card:#f4f5f7;--line:#d0d4da;--ok:#1a7f37;--bad:#c62828;--warn:#8a5a00}
@media (prefers-color-scheme:dark){:root{--fg:#e4e6ea;--bg:#15171b;--muted:#a2a8b0;--card:#22252b;--line:#3a3f47;--ok:#3fb950;--bad:#ff6b64;--warn:#e0a820}
svg [fill="#000000"]{fill:#e4e6ea}svg [stroke="#000000"]{stroke:#e4e6ea}svg [fill="#FFFFFF"]{fill:#22252b}}
body{margin:0 auto;max-width:1000px;padding:1.5rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.5rem;margin:0 0 .5rem}h2{font-size:1.15rem;margin:0 0 .25rem}
section{margin:1.5rem 0;padding:1rem;background:var(--card);border:1px solid var(--line);border-radius:8px;break-inside:avoid}
section p{margin:.2rem 0 .6rem;color:var(--muted)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
code,pre{font:13px/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace}pre{margin:0;white-space:pre-wrap}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;margin:.3rem 0;padding:0;font-size:.9rem}.legend span{display:inline-block;width:24px;margin:0 .4rem .25rem 0;vertical-align:middle}
table{border-collapse:collapse;margin-top:.5rem}td,th{padding:.15rem .8rem;text-align:right;border-bottom:1px solid var(--line)}th:first-child,td:first-child{text-align:left}
.banner{padding:.6rem 1rem;border-radius:6px;font-weight:600;margin:.5rem 0;border:2px solid}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
svg{width:100%;height:auto;display:block}.hover{fill:transparent}.hover:hover{fill:rgba(128,128,128,.2)}
footer{color:var(--muted);font-size:.85rem}
@media print{:root{--fg:#000;--bg:#fff;--muted:#444;--card:#fff;--line:#bbb;--ok:#1a7f37;--bad:#c62828;--warn:#8a5a00}
svg [fill="#000000"]{fill:#000}svg [stroke="#000000"]{stroke:#000}svg [fill="#FFFFFF"]{fill:#fff}body{max-width:none;padding:0}section{border:none;padding:0}}
"##;

/// The title, the verdict, the settings and the thresholds.
fn header(out: &mut String, report: &LoadReport, timeline: &Timeline, command: &str) {
    let _ = writeln!(out, "<header id=\"header\">\n<h1>wsprobe load report</h1>");
    let c = &report.connections;
    if report.interrupted {
        let by = match report.interrupted_by.as_deref() {
            None | Some("SIGINT") => "Ctrl-C",
            Some(signal) => signal,
        };
        let _ = writeln!(
            out,
            "<div class=\"banner warn\">Interrupted by {by}: this is what ran until then.</div>"
        );
    }
    if c.opened == 0 {
        let _ = writeln!(
            out,
            "<div class=\"banner bad\">No connection could be opened ({}): nothing was measured.</div>",
            escape(&counts(&c.failures))
        );
    }
    if !report.thresholds.is_empty() {
        let (class, text) = if report.breached() {
            ("bad", "A threshold was breached.")
        } else {
            ("ok", "Every threshold held.")
        };
        let _ = writeln!(out, "<div class=\"banner {class}\">{text}</div>");
    }
    let model = match report.model {
        Model::Open => "open (fixed timetable, latency from the scheduled send)",
        Model::Closed => "closed (one ping in flight per connection)",
    };
    let target = report.target_rate.map_or_else(
        || "none (closed model)".to_owned(),
        |rate| format!("{rate:.1}/s"),
    );
    let achieved = match report.target_rate {
        Some(target) if target > 0.0 => format!(
            "{:.1}/s ({:.1}% of the target)",
            report.achieved_rate,
            report.achieved_rate * 100.0 / target
        ),
        _ => format!("{:.1}/s", report.achieved_rate),
    };
    let rows = [
        ("URL", format!("<code>{}</code>", escape(&report.url))),
        ("Model", model.to_owned()),
        (
            "Connections",
            format!(
                "{} requested, {} opened, {} failed, {} dropped",
                c.requested, c.opened, c.failed, c.dropped
            ),
        ),
        ("Target rate", target),
        ("Achieved rate", achieved),
        (
            "Duration",
            format!(
                "{:.2} s sending, {:.2} s opening connections, {:.2} s in all",
                report.sending_s, report.opening_s, report.elapsed_s
            ),
        ),
        (
            "Started",
            humantime::format_rfc3339_seconds(timeline.started).to_string(),
        ),
        (
            "Pings",
            format!(
                "{} bytes on route <code>{}</code>, echo {}",
                report.size,
                escape(&report.route),
                escape(&report.echo)
            ),
        ),
        ("Command", format!("<code>{}</code>", escape(command))),
    ];
    out.push_str("<dl>\n");
    for (name, value) in rows {
        let _ = writeln!(out, "<dt>{name}</dt><dd>{value}</dd>");
    }
    if let Some(value) = reconnects_line(report) {
        let _ = writeln!(out, "<dt>Reconnects</dt><dd>{value}</dd>");
    }
    out.push_str("</dl>\n");
    if !report.thresholds.is_empty() {
        out.push_str("<table id=\"thresholds\"><tr><th>Threshold</th><th>Result</th><th>Measured</th></tr>\n");
        for verdict in &report.thresholds {
            let (class, mark) = if verdict.passed {
                ("ok", "✓ pass")
            } else {
                ("bad", "✗ fail")
            };
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"{class}\">{mark}</td><td>{}</td></tr>",
                escape(&verdict.threshold),
                escape(&verdict.line)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</header>\n");
}

/// `--reconnect`: how many reconnects, after which closes, how long they took, the time
/// spent disconnected and the pings lost to them; `None` when there were none.
fn reconnects_line(report: &LoadReport) -> Option<String> {
    let c = &report.connections;
    if c.reconnects == 0 && c.reconnect_failures.is_empty() {
        return None;
    }
    let ms = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
    let mut line = format!(
        "{} (after close codes {}), p50 {}, p99 {}, max {} from the close to the new \
         connection open; {:.2} s disconnected in all; {} pings lost to reconnects",
        c.reconnects,
        escape(&counts(&c.reconnects_by_code)),
        ms(report.reconnect_ms.p50),
        ms(report.reconnect_ms.p99),
        ms(report.reconnect_ms.max),
        c.disconnected_s,
        report.messages.lost_to_reconnect
    );
    if !c.reconnect_failures.is_empty() {
        let _ = write!(
            line,
            "; not reopened: {}",
            escape(&counts(&c.reconnect_failures))
        );
    }
    Some(line)
}

fn shard_table(shards: &[Shard]) -> String {
    let mut out =
        String::from("<table><tr><th>Shard</th><th>Connections opened</th><th>Started</th></tr>\n");
    for shard in shards {
        let _ = writeln!(
            out,
            "<tr><td>{}/{}</td><td>{} of {}</td><td>{}</td></tr>",
            shard.index,
            shard.of,
            shard.opened,
            shard.requested,
            humantime::format_rfc3339_millis(shard.started)
        );
    }
    out.push_str("</table>");
    out
}

fn section(out: &mut String, id: &str, title: &str, caption: &str, body: &str) {
    let _ = writeln!(
        out,
        "<section id=\"{id}\">\n<h2>{title}</h2>\n<p>{caption}</p>\n{body}\n</section>"
    );
}

/// Round-trip percentiles of a point, in ms.
#[derive(Clone, Copy, Debug)]
struct Latency {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// A plotted point: one interval, or several added together.
#[derive(Debug)]
struct Point {
    start_s: f64,
    end_s: f64,
    latency: Option<Latency>,
    counts: IntervalCounts,
    open: u64,
    close_codes: BTreeMap<u16, u64>,
    connect_failures: BTreeMap<String, u64>,
    error_kinds: BTreeMap<String, u64>,
}

impl Point {
    /// A count per second of this point's span.
    fn rate(&self, count: u64) -> f64 {
        let length = self.end_s - self.start_s;
        if length > 0.0 {
            count as f64 / length
        } else {
            0.0
        }
    }

    /// The middle of its span: where its value is plotted on the time axis.
    fn middle(&self) -> f64 {
        (self.start_s + self.end_s) / 2.0
    }
}

/// The timeline's intervals, added together in runs so that there are at most
/// [`MAX_POINTS`].
fn downsample(timeline: &Timeline) -> Vec<Point> {
    let per_point = timeline.intervals.len().div_ceil(MAX_POINTS).max(1);
    let mut histogram = new_histogram();
    timeline
        .intervals
        .chunks(per_point)
        .map(|chunk| {
            histogram.reset();
            let mut point = Point {
                start_s: chunk[0].start_s,
                end_s: chunk[0].start_s,
                latency: None,
                counts: IntervalCounts::default(),
                open: 0,
                close_codes: BTreeMap::new(),
                connect_failures: BTreeMap::new(),
                error_kinds: BTreeMap::new(),
            };
            for interval in chunk {
                interval.round_trip.add_to(&mut histogram);
                point.counts.add(&interval.counts);
                point.end_s = interval.start_s + interval.length_s;
                point.open = interval.open;
                add_maps(&mut point.close_codes, &interval.close_codes);
                add_maps(&mut point.connect_failures, &interval.connect_failures);
                add_maps(&mut point.error_kinds, &interval.error_kinds);
            }
            point.latency = latency(&histogram);
            point
        })
        .collect()
}

fn latency(histogram: &Histogram<u64>) -> Option<Latency> {
    let ms = |us: u64| us as f64 / 1e3;
    (!histogram.is_empty()).then(|| Latency {
        count: histogram.len(),
        p50: ms(histogram.value_at_quantile(0.5)),
        p90: ms(histogram.value_at_quantile(0.9)),
        p99: ms(histogram.value_at_quantile(0.99)),
        max: ms(histogram.max()),
    })
}

/// One line of a chart.
struct Series {
    name: String,
    color: RGBColor,
    dashed: bool,
    /// Drawn wider, so that a line drawn over it (echoed over sent) leaves it visible.
    wide: bool,
    points: Vec<(f64, f64)>,
}

/// What a chart shows: its lines, axes and hover strips.
struct Chart<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    x_range: (f64, f64),
    series: Vec<Series>,
    /// Hover strips: from, to (on the x axis), and the text shown.
    hovers: Vec<(f64, f64, String)>,
    x_labels: usize,
    x_format: &'a dyn Fn(&f64) -> String,
    y_format: &'a dyn Fn(&f64) -> String,
    /// Shown in the middle of an empty chart.
    empty: Option<&'a str>,
}

/// The chart as an inline `<svg>`; a paragraph saying why if it could not be drawn.
fn draw(chart: &Chart) -> String {
    let mut svg = String::new();
    let mut hovers = String::new();
    if let Err(error) = draw_into(chart, &mut svg, &mut hovers) {
        return format!(
            "<p class=\"bad\">The chart could not be drawn: {}</p>",
            escape(&error.to_string())
        );
    }
    // Inline SVG in HTML needs no namespace, and the page names no URL at all.
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", " role=\"img\"", 1);
    let svg = match svg.rfind("</svg>") {
        Some(end) => format!("{}{hovers}{}", &svg[..end], &svg[end..]),
        None => svg,
    };
    legend(&chart.series) + &svg
}

/// The legend, above the chart in HTML so that it never hides a line (a border draws
/// the swatch: borders print, backgrounds often do not).
fn legend(series: &[Series]) -> String {
    if series.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"legend\">");
    for line in series {
        let RGBColor(r, g, b) = line.color;
        let style = if line.dashed { "dashed" } else { "solid" };
        let _ = write!(
            out,
            "<li><span style=\"border-top:3px {style} #{r:02x}{g:02x}{b:02x}\"></span>{}</li>",
            escape(&line.name)
        );
    }
    out.push_str("</ul>\n");
    out
}

fn draw_into(
    chart: &Chart,
    svg: &mut String,
    hovers: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let y_max = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|&(_, y)| y))
        .fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.12 } else { 1.0 };
    let (x0, x1) = chart.x_range;
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    let mut context = ChartBuilder::on(&root)
        .margin(14)
        .margin_right(44)
        .x_label_area_size(46)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, 0.0..y_max)?;
    context
        .configure_mesh()
        .x_desc(chart.x_desc)
        .y_desc(chart.y_desc)
        .x_labels(chart.x_labels)
        .y_labels(6)
        .x_label_formatter(chart.x_format)
        .y_label_formatter(chart.y_format)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.0))
        .draw()?;
    for series in &chart.series {
        let style = series.color.stroke_width(if series.wide { 5 } else { 2 });
        if series.dashed {
            context.draw_series(DashedLineSeries::new(
                series.points.iter().copied(),
                8,
                6,
                style,
            ))?;
        } else {
            context.draw_series(LineSeries::new(series.points.iter().copied(), style))?;
        }
    }
    if let Some(text) = chart.empty {
        let (x, y) = context.backend_coord(&((x0 + x1) / 2.0, y_max / 2.0));
        root.draw(&Text::new(
            text.to_owned(),
            (x, y),
            ("sans-serif", 18).into_font().color(&BLACK).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ),
            ),
        ))?;
    }
    for (from, to, text) in &chart.hovers {
        let (left, top) = context.backend_coord(&(*from, y_max));
        let (right, bottom) = context.backend_coord(&(*to, 0.0));
        let _ = write!(
            hovers,
            "<rect class=\"hover\" x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            (right - left).max(1),
            bottom - top,
            escape(text)
        );
    }
    root.present()?;
    Ok(())
}

fn seconds(x: &f64) -> String {
    format!("{x:.0}")
}

fn milliseconds(y: &f64) -> String {
    if *y >= 100.0 || *y == 0.0 {
        format!("{y:.0}")
    } else if *y >= 1.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.2}")
    }
}

fn per_second(y: &f64) -> String {
    if *y >= 10.0 || *y == 0.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.1}")
    }
}

/// How many labels the time axis gets: one a second at most (whole seconds are shown), 12
/// at most.
fn time_labels(points: &[Point]) -> usize {
    let (_, end) = time_range(points);
    (end.ceil() as usize + 1).clamp(2, 12)
}

fn time_range(points: &[Point]) -> (f64, f64) {
    (0.0, points.last().map_or(1.0, |p| p.end_s))
}

/// A hover label's time span: `12–13 s`.
fn span(point: &Point) -> String {
    format!("{:.1}–{:.1} s", point.start_s, point.end_s)
}

fn latency_chart(points: &[Point], thresholds: &[Verdict]) -> String {
    let line = |name: &str, color: usize, pick: fn(&Latency) -> f64| Series {
        name: name.to_owned(),
        color: PALETTE[color],
        dashed: false,
        wide: false,
        points: points
            .iter()
            .filter_map(|p| p.latency.as_ref().map(|l| (p.middle(), pick(l))))
            .collect(),
    };
    let mut series = vec![
        line("p50", 0, |l| l.p50),
        line("p90", 1, |l| l.p90),
        line("p99", 2, |l| l.p99),
        line("max", 3, |l| l.max),
    ];
    // Latency thresholds as dashed lines, when they are near enough to the data to be
    // drawn without flattening it.
    let highest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, y)| y))
        .fold(0.0_f64, f64::max);
    let (x0, x1) = time_range(points);
    for verdict in thresholds {
        let Ok(threshold) = threshold::parse(&verdict.threshold) else {
            continue;
        };
        let is_latency = matches!(
            threshold.metric,
            Metric::Percentile(_) | Metric::Mean | Metric::Max
        );
        let limit_ms = threshold.limit / 1e3;
        if is_latency && highest > 0.0 && limit_ms <= highest * 2.0 {
            series.push(Series {
                name: format!("threshold {}", verdict.threshold),
                color: PALETTE[4 + series.len() % 4],
                dashed: true,
                wide: false,
                points: vec![(x0, limit_ms), (x1, limit_ms)],
            });
        }
    }
    let hovers = points
        .iter()
        .map(|p| {
            let text = match &p.latency {
                Some(l) => format!(
                    "{}: {} round trips; p50 {}, p90 {}, p99 {}, max {}",
                    span(p),
                    l.count,
                    format_ms(l.p50 * 1e3),
                    format_ms(l.p90 * 1e3),
                    format_ms(l.p99 * 1e3),
                    format_ms(l.max * 1e3)
                ),
                None => format!("{}: no round trip", span(p)),
            };
            (p.start_s, p.end_s, text)
        })
        .collect();
    let empty = points.iter().all(|p| p.latency.is_none());
    draw(&Chart {
        x_desc: "time since start (s)",
        y_desc: "round trip (ms)",
        x_range: (x0, x1),
        series,
        hovers,
        x_labels: time_labels(points),
        x_format: &seconds,
        y_format: &milliseconds,
        empty: empty.then_some("no round trip was measured"),
    })
}

/// The percentile at `nines` on the HdrHistogram axis: 1 is 90 %, 2 is 99 %, 3 is 99.9 %.
fn percentile_at(nines: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-nines))
}

/// A percentile as people write it: `99.9%`.
fn percent(percentile: f64) -> String {
    let text = format!("{percentile:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn percentile_chart(whole: &Histogram<u64>) -> String {
    // One nine more than the samples can tell apart, at least up to 99.9 %, at most 99.9999 %.
    let count = whole.len().max(1) as f64;
    let nines = (count.log10().ceil()).clamp(3.0, 6.0);
    let steps = (nines * 50.0) as usize;
    let at = |x: f64| whole.value_at_quantile(percentile_at(x) / 100.0) as f64 / 1e3;
    let points: Vec<(f64, f64)> = if whole.is_empty() {
        Vec::new()
    } else {
        (0..=steps)
            .map(|i| {
                let x = nines * i as f64 / steps as f64;
                (x, at(x))
            })
            .collect()
    };
    let hovers = if whole.is_empty() {
        Vec::new()
    } else {
        (0..(nines * 10.0) as usize)
            .map(|i| {
                let (from, to) = (i as f64 / 10.0, (i + 1) as f64 / 10.0);
                let middle = (from + to) / 2.0;
                let text = format!(
                    "p{}: {}",
                    percent(percentile_at(middle)).trim_end_matches('%'),
                    format_ms(at(middle) * 1e3)
                );
                (from, to, text)
            })
            .collect()
    };
    let x_format = |x: &f64| percent(percentile_at(x.round()));
    draw(&Chart {
        x_desc: "percentile",
        y_desc: "round trip (ms)",
        x_range: (0.0, nines),
        series: vec![Series {
            name: "round trip".into(),
            color: PALETTE[0],
            dashed: false,
            wide: false,
            points,
        }],
        hovers,
        x_labels: nines as usize + 1,
        x_format: &x_format,
        y_format: &milliseconds,
        empty: whole.is_empty().then_some("no round trip was measured"),
    })
}

/// The HdrHistogram-style table under the distribution: percentile, value, count below.
fn percentile_table(whole: &Histogram<u64>) -> String {
    if whole.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<table id=\"percentiles\"><tr><th>Percentile</th><th>Round trip</th><th>Round trips at or below</th></tr>\n",
    );
    for percentile in [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0] {
        let value = whole.value_at_quantile(percentile / 100.0);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            percent(percentile),
            format_ms(value as f64),
            whole.count_between(0, value)
        );
    }
    out.push_str("</table>");
    out
}

/// A per-second rate of one counter, a point per interval.
fn rate_series(
    points: &[Point],
    name: &str,
    color: usize,
    pick: fn(&IntervalCounts) -> u64,
) -> Series {
    Series {
        name: name.to_owned(),
        color: PALETTE[color],
        dashed: false,
        wide: false,
        points: points
            .iter()
            .map(|p| (p.middle(), p.rate(pick(&p.counts))))
            .collect(),
    }
}

fn throughput_chart(points: &[Point], target: Option<f64>) -> String {
    let line = |name: &str, color: usize, pick| rate_series(points, name, color, pick);
    let mut series = vec![
        Series {
            wide: true,
            ..line("sent /s", 0, |c| c.sent)
        },
        line("echoed /s", 1, |c| c.echoed),
    ];
    let (x0, x1) = time_range(points);
    if let Some(rate) = target {
        series.push(Series {
            name: format!("target {rate:.0}/s"),
            color: PALETTE[3],
            dashed: true,
            wide: false,
            points: vec![(x0, rate), (x1, rate)],
        });
    }
    let hovers = points
        .iter()
        .map(|p| {
            let text = format!(
                "{}: {:.1} sent/s, {:.1} echoed/s ({} sent, {} echoed)",
                span(p),
                p.rate(p.counts.sent),
                p.rate(p.counts.echoed),
                p.counts.sent,
                p.counts.echoed
            );
            (p.start_s, p.end_s, text)
        })
        .collect();
    draw(&Chart {
        x_desc: "time since start (s)",
        y_desc: "pings per second",
        x_range: (x0, x1),
        series,
        hovers,
        x_labels: time_labels(points),
        x_format: &seconds,
        y_format: &per_second,
        empty: None,
    })
}

fn connections_chart(points: &[Point]) -> String {
    let rate = |name: &str, color: usize, pick| rate_series(points, name, color, pick);
    let mut series = vec![
        Series {
            name: "open".into(),
            color: PALETTE[0],
            dashed: false,
            wide: false,
            points: points.iter().map(|p| (p.end_s, p.open as f64)).collect(),
        },
        rate("opened /s", 1, |c| c.opened),
        rate("dropped /s", 3, |c| c.dropped),
    ];
    if points.iter().any(|p| p.counts.connect_failed > 0) {
        series.push(rate("failed to open /s", 4, |c| c.connect_failed));
    }
    let hovers = points
        .iter()
        .map(|p| {
            let mut text = format!(
                "{}: {} open; {} opened, {} dropped, {} failed to open",
                span(p),
                p.open,
                p.counts.opened,
                p.counts.dropped,
                p.counts.connect_failed
            );
            if !p.close_codes.is_empty() {
                let codes: BTreeMap<String, u64> = p
                    .close_codes
                    .iter()
                    .map(|(code, n)| (code.to_string(), *n))
                    .collect();
                let _ = write!(text, "; close codes {}", counts(&codes));
            }
            (p.start_s, p.end_s, text)
        })
        .collect();
    draw(&Chart {
        x_desc: "time since start (s)",
        y_desc: "connections (open), per second",
        x_range: time_range(points),
        series,
        hovers,
        x_labels: time_labels(points),
        x_format: &seconds,
        y_format: &per_second,
        empty: None,
    })
}

/// The kinds of error over time: (name, count of a point).
type Kind = (String, Box<dyn Fn(&Point) -> u64>);

fn error_kinds(points: &[Point]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = vec![
        ("late".into(), Box::new(|p: &Point| p.counts.late)),
        ("lost".into(), Box::new(|p: &Point| p.counts.lost)),
        (
            "duplicated".into(),
            Box::new(|p: &Point| p.counts.duplicated),
        ),
        ("corrupted".into(), Box::new(|p: &Point| p.counts.corrupted)),
        ("dropped".into(), Box::new(|p: &Point| p.counts.dropped)),
    ];
    // The most frequent gateway messages and connect causes each get a line.
    let mut by_kind = |name: &str, pick: fn(&Point) -> &BTreeMap<String, u64>| {
        let mut totals: BTreeMap<&String, u64> = BTreeMap::new();
        for point in points {
            for (kind, count) in pick(point) {
                *totals.entry(kind).or_default() += count;
            }
        }
        let mut ranked: Vec<(&String, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = ranked
            .iter()
            .take(MAX_KINDS)
            .map(|(kind, _)| (*kind).clone())
            .collect();
        for kind in &shown {
            let key = kind.clone();
            kinds.push((
                format!("{name} {kind}"),
                Box::new(move |p: &Point| pick(p).get(&key).copied().unwrap_or(0)),
            ));
        }
        if ranked.len() > MAX_KINDS {
            kinds.push((
                format!("{name} (other)"),
                Box::new(move |p: &Point| {
                    pick(p)
                        .iter()
                        .filter(|(kind, _)| !shown.contains(kind))
                        .map(|(_, n)| n)
                        .sum()
                }),
            ));
        }
    };
    by_kind("error frame", |p| &p.error_kinds);
    by_kind("connect failed:", |p| &p.connect_failures);
    kinds.retain(|(_, count)| points.iter().any(|p| count(p) > 0));
    kinds
}

fn errors_chart(points: &[Point]) -> String {
    let kinds = error_kinds(points);
    let series = kinds
        .iter()
        .enumerate()
        .map(|(i, (name, count))| Series {
            name: format!("{name} /s"),
            color: PALETTE[(i + 3) % PALETTE.len()],
            dashed: false,
            wide: false,
            points: points
                .iter()
                .map(|p| (p.middle(), p.rate(count(p))))
                .collect(),
        })
        .collect();
    let hovers = points
        .iter()
        .map(|p| {
            let found: Vec<String> = kinds
                .iter()
                .filter_map(|(name, count)| {
                    let n = count(p);
                    (n > 0).then(|| format!("{n} {name}"))
                })
                .collect();
            let text = if found.is_empty() {
                format!("{}: no errors", span(p))
            } else {
                format!("{}: {}", span(p), found.join(", "))
            };
            (p.start_s, p.end_s, text)
        })
        .collect();
    draw(&Chart {
        x_desc: "time since start (s)",
        y_desc: "errors per second",
        x_range: time_range(points),
        series,
        hovers,
        x_labels: time_labels(points),
        x_format: &seconds,
        y_format: &per_second,
        empty: kinds.is_empty().then_some("no errors"),
    })
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

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The text without its terminal colours (the table is coloured when stdout is a terminal).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Flags whose value is a secret (the next argument, or after `=`).
const SECRET_FLAGS: [&str; 2] = ["--auth", "--api-key"];

/// The command line as the report shows it: shell-quoted, with the values of `--auth`
/// and `--api-key`, secret-looking headers (`-H 'Authorization: …'`) and URL
/// credentials (passwords, `?token=…`) redacted unless `show_secrets`.
pub(crate) fn command_line(args: &[String], show_secrets: bool) -> String {
    use wsprobe_core::secret::{REDACTED, header_looks_secret};
    let redact_header = |header: &str| match header.split_once(':') {
        Some((name, _)) if header_looks_secret(name) => format!("{name}: {REDACTED}"),
        _ => header.to_owned(),
    };
    let redact_url = |arg: &str| match url::Url::parse(arg) {
        Ok(url) if url.has_host() => wsprobe_core::client::redacted_url(&url),
        _ => arg.to_owned(),
    };
    let mut shown = Vec::with_capacity(args.len());
    let mut next_is: Option<&str> = None;
    for (i, arg) in args.iter().enumerate() {
        let text = if i == 0 {
            // The program as people call it, not the path it was found at.
            std::path::Path::new(arg)
                .file_name()
                .map_or_else(|| arg.clone(), |name| name.to_string_lossy().into_owned())
        } else if show_secrets {
            arg.clone()
        } else if let Some(flag) = next_is.take() {
            if flag == "header" {
                redact_header(arg)
            } else {
                REDACTED.to_owned()
            }
        } else if SECRET_FLAGS.contains(&arg.as_str()) {
            next_is = Some("secret");
            arg.clone()
        } else if arg == "-H" || arg == "--header" {
            next_is = Some("header");
            arg.clone()
        } else if let Some(flag) = SECRET_FLAGS
            .iter()
            .find(|flag| arg.starts_with(&format!("{flag}=")))
        {
            format!("{flag}={REDACTED}")
        } else if let Some(header) = arg.strip_prefix("--header=") {
            format!("--header={}", redact_header(header))
        } else if let Some(header) = arg.strip_prefix("-H").filter(|h| !h.is_empty()) {
            format!("-H{}", redact_header(header))
        } else if let Some((flag, value)) = arg.split_once('=').filter(|(f, _)| f.starts_with("--"))
        {
            format!("{flag}={}", redact_url(value))
        } else {
            redact_url(arg)
        };
        shown.push(shell_quote(&text));
    }
    shown.join(" ")
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::{ConnectionsReport, LatencySummary, MessagesReport, SCHEMA};
    use crate::load::timeline::{Interval, SparseHistogram};
    use std::time::Duration;

    fn timeline(seconds: usize) -> Timeline {
        let intervals = (0..seconds)
            .map(|i| {
                let mut histogram = new_histogram();
                for us in [400, 900, 1_500 + 100 * i as u64, 25_000] {
                    histogram.record(us).unwrap();
                }
                Interval {
                    start_s: i as f64,
                    length_s: 1.0,
                    round_trip: SparseHistogram::of(&histogram),
                    counts: IntervalCounts {
                        sent: 100,
                        echoed: 99,
                        lost: u64::from(i == 3),
                        opened: if i == 0 { 10 } else { 0 },
                        dropped: u64::from(i == 5),
                        ..IntervalCounts::default()
                    },
                    open: if i >= 5 { 9 } else { 10 },
                    close_codes: if i == 5 {
                        [(1006, 1)].into()
                    } else {
                        BTreeMap::new()
                    },
                    error_kinds: if i == 2 {
                        [("Forbidden".to_owned(), 2)].into()
                    } else {
                        BTreeMap::new()
                    },
                    ..Interval::default()
                }
            })
            .collect();
        Timeline {
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            intervals,
        }
    }

    fn report() -> LoadReport {
        LoadReport {
            schema: SCHEMA.into(),
            url: "ws://127.0.0.1:1/dev?token=<redacted>&x=\"<script>".into(),
            model: Model::Open,
            target_rate: Some(100.0),
            achieved_rate: 99.5,
            size: 64,
            route: "send".into(),
            echo: "body".into(),
            elapsed_s: 10.5,
            opening_s: 0.1,
            sending_s: 10.0,
            interrupted: false,
            interrupted_by: None,
            client_lag: None,
            connections: ConnectionsReport {
                requested: 10,
                opened: 10,
                dropped: 1,
                close_codes: [("1006".to_owned(), 1)].into(),
                reconnects: 3,
                reconnects_by_code: [("1001".to_owned(), 3)].into(),
                ..ConnectionsReport::default()
            },
            messages: MessagesReport {
                sent: 1000,
                echoed: 990,
                lost: 1,
                ..MessagesReport::default()
            },
            round_trip_ms: LatencySummary::default(),
            connect_ms: LatencySummary::default(),
            reconnect_ms: LatencySummary::default(),
            thresholds: vec![Verdict {
                threshold: "p99<50ms".into(),
                passed: true,
                actual: Some(25.0),
                line: "p99 25.0ms < 50ms".into(),
            }],
            started_at: "2027-01-15T08:00:00Z".into(),
            settings: None,
            shard: None,
            merged: None,
            histograms: None,
            intervals: Vec::new(),
        }
    }

    #[test]
    fn the_page_has_every_section_and_names_no_url() {
        let page = render(&report(), &timeline(10), "wsprobe load ws://h/dev", &[]);
        for id in [
            "header",
            "thresholds",
            "latency-over-time",
            "percentile-distribution",
            "throughput-over-time",
            "connections-over-time",
            "errors-over-time",
            "summary",
        ] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert_eq!(page.matches("<svg").count(), 5);
        for needle in [
            "round trip (ms)",
            "pings per second",
            "target 100/s",
            "threshold p99&lt;50ms",
            "99.9%",
            "error frame Forbidden /s",
            "lost /s",
            "close codes 1006: 1",
            "2027-01-15T08:00:00Z",
            "✓ pass",
            "Every threshold held.",
            "1000 sent, 990 echoed",
        ] {
            assert!(page.contains(needle), "{needle}");
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
        for external in ["<script", "<link", "<img", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
        assert!(!page.contains('\x1b'), "no terminal colours");
        assert!(
            !page.contains("id=\"shards\""),
            "a single run has no shards"
        );
    }

    #[test]
    fn a_merged_run_lists_its_shards() {
        let shard = |index, opened| Shard {
            index,
            of: 2,
            opened,
            requested: 5,
            started: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_250),
        };
        let page = render(
            &report(),
            &timeline(3),
            "wsprobe load merge a.json b.json",
            &[shard(0, 5), shard(1, 4)],
        );
        assert!(page.contains("id=\"shards\""));
        assert!(page.contains("merged from 2 shards"));
        assert!(
            page.contains("<tr><td>1/2</td><td>4 of 5</td><td>2027-01-15T08:00:00.250Z</td></tr>")
        );
    }

    #[test]
    fn text_from_the_command_line_is_escaped() {
        let page = render(&report(), &timeline(2), "wsprobe load '<b>&x'", &[]);
        assert!(page.contains("dev?token=&lt;redacted&gt;&amp;x=&quot;&lt;script&gt;"));
        assert!(page.contains("wsprobe load &#39;&lt;b&gt;&amp;x&#39;"));
        assert!(!page.contains("<b>"));
    }

    #[test]
    fn interrupted_and_failed_runs_say_so() {
        let mut report = report();
        report.interrupted = true;
        report.interrupted_by = Some("SIGTERM".into());
        report.connections.opened = 0;
        report.connections.failed = 10;
        report.connections.failures = [("refused".to_owned(), 10)].into();
        report.thresholds[0].passed = false;
        let empty = Timeline {
            started: SystemTime::UNIX_EPOCH,
            intervals: Vec::new(),
        };
        let page = render(&report, &empty, "wsprobe load", &[]);
        for needle in [
            "Interrupted by SIGTERM",
            "No connection could be opened (refused: 10)",
            "A threshold was breached.",
            "✗ fail",
            "no round trip was measured",
        ] {
            assert!(page.contains(needle), "{needle}");
        }
        assert_eq!(page.matches("<svg").count(), 5);
    }

    #[test]
    fn long_runs_are_down_sampled_exactly() {
        let timeline = timeline(3_600);
        let points = downsample(&timeline);
        assert_eq!(points.len(), 600);
        assert_eq!(points[0].counts.sent, 600);
        assert_eq!(points[0].end_s, 6.0);
        // p99 of 24 samples over six intervals: the largest, from the added histograms.
        let latency = points[0].latency.unwrap();
        assert_eq!(latency.count, 24);
        assert!((latency.max - 25.0).abs() < 0.1, "{latency:?}");
        let page = render(&report(), &timeline, "wsprobe load", &[]);
        assert!(page.len() < 5_000_000, "{}", page.len());
        assert!(page.contains("Each point covers 6 s"));
    }

    #[test]
    fn the_percentile_axis_counts_nines() {
        assert_eq!(percent(percentile_at(0.0)), "0%");
        assert_eq!(percent(percentile_at(1.0)), "90%");
        assert_eq!(percent(percentile_at(3.0)), "99.9%");
        assert_eq!(percent(percentile_at(4.0)), "99.99%");
    }

    #[test]
    fn command_lines_keep_their_secrets() {
        let args = |line: &[&str]| line.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let shown = command_line(
            &args(&[
                "/usr/local/bin/wsprobe",
                "load",
                "wss://u:pw@h/dev?token=abc",
                "--auth",
                "Bearer xyz",
                "--api-key=k123",
                "-H",
                "X-Api-Key: k123",
                "-H",
                "X-Trace: 1",
                "--proxy",
                "http://me:pw@proxy:3128",
                "-c",
                "5",
            ]),
            false,
        );
        assert_eq!(
            shown,
            "wsprobe load 'wss://u:<redacted>@h/dev?token=<redacted>' --auth '<redacted>' \
             '--api-key=<redacted>' -H 'X-Api-Key: <redacted>' -H 'X-Trace: 1' --proxy \
             'http://me:<redacted>@proxy:3128/' -c 5"
        );
        assert!(!shown.contains("xyz") && !shown.contains("k123") && !shown.contains("pw"));
        let shown = command_line(&args(&["wsprobe", "--auth", "Bearer xyz"]), true);
        assert_eq!(shown, "wsprobe --auth 'Bearer xyz'");
    }
}
