//! Integration tests: sharded load (`--shard`, `--start-at`) and `wsprobe load merge`,
//! the real binary against the real `serve` on port 0. The merged percentiles are checked
//! against a union of the shards' histograms computed here, independently.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde_json::Value;

use super::{args, describe, read_report};
use crate::support::{self, TIMEOUT};

/// Runs `wsprobe ARGS…` off the async runtime, with `env` set and `stdin` given.
async fn wsprobe(args: Vec<String>, env: Vec<(String, String)>, stdin: Vec<u8>) -> Output {
    support::within(
        "wsprobe",
        tokio::task::spawn_blocking(move || {
            let mut command = assert_cmd::Command::cargo_bin("wsprobe").expect("the binary");
            command
                .args(&args)
                .env_remove("WSPROBE_AUTH")
                .env_remove("WSPROBE_API_KEY")
                .env_remove("JOB_COMPLETION_INDEX")
                .envs(env)
                .write_stdin(stdin)
                .timeout(TIMEOUT * 3);
            command.output().expect("running wsprobe")
        }),
    )
    .await
    .expect("the runner thread")
}

/// `wsprobe load URL ARGS… --no-progress --report-json FILE`; the output and the file.
async fn shard(url: &str, line: &[&str], json: &Path) -> Output {
    let mut all = args(&["load", url]);
    all.extend(args(line));
    all.extend(args(&[
        "--no-progress",
        "--report-json",
        json.to_str().unwrap(),
    ]));
    wsprobe(all, Vec::new(), Vec::new()).await
}

async fn merge(files: &[&Path], extra: &[&str]) -> Output {
    let mut all = args(&["load", "merge"]);
    all.extend(files.iter().map(|f| f.to_str().unwrap().to_owned()));
    all.extend(args(extra));
    wsprobe(all, Vec::new(), Vec::new()).await
}

fn decode(text: &Value) -> Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("a base64 histogram"))
        .expect("base64");
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("an HdrHistogram")
}

fn unix_seconds(at: SystemTime) -> String {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Three shards launched a second apart with one `--start-at` send together; their
/// merge is the sum of the shards, count for count, and its percentiles are those of the
/// union of the shards' histograms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_started_apart_merge_exactly() {
    let server = support::spawn_default_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let start_at = SystemTime::now() + Duration::from_secs(4);
    let start_at_text = unix_seconds(start_at);
    let files: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("shard-{i}.json")))
        .collect();
    let mut runs = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let shard_flag = format!("{i}/3");
        let line = [
            "-c",
            "7",
            "--rate",
            "210/s",
            "-n",
            "420",
            "--shard",
            &shard_flag,
            "--start-at",
            &start_at_text,
            "--threshold",
            "p99<1ms",
        ];
        let (url, line, file) = (
            url.clone(),
            line.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            file.clone(),
        );
        runs.push(tokio::spawn(async move {
            let line: Vec<&str> = line.iter().map(String::as_str).collect();
            shard(&url, &line, &file).await
        }));
        if i < 2 {
            // The scenario: shards launched apart (not a synchronisation).
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let mut reports = Vec::new();
    for (run, file) in runs.into_iter().zip(&files) {
        let output = run.await.unwrap();
        // A shard does not evaluate its thresholds (p99<1ms would fail), and says so.
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(
            stderr(&output).contains("--threshold is not evaluated by a shard"),
            "{}",
            describe(&output)
        );
        reports.push(read_report(file));
    }
    let mut union = Histogram::<u64>::new(3).unwrap();
    let mut connect_union = Histogram::<u64>::new(3).unwrap();
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report["shard"]["index"], i as u64, "{report}");
        assert_eq!(report["shard"]["count"], 3);
        assert_eq!(report["shard"]["run_id"], reports[0]["shard"]["run_id"]);
        assert_eq!(report["shard"]["first_connection"], [0, 3, 5][i]);
        assert_eq!(report["connections"]["requested"], [3, 2, 2][i]);
        assert_eq!(report["messages"]["sent"], 140, "{report}");
        assert_eq!(report["messages"]["echoed"], 140, "{report}");
        assert_eq!(report["target_rate"], 70.0);
        assert_eq!(report["thresholds"], Value::Array(Vec::new()));
        assert_eq!(report["settings"]["connections"], 7);
        assert_eq!(report["settings"]["thresholds"][0], "p99<1ms");
        // Sending began at --start-at, not when the shard's connections were open: the
        // first shard, launched two seconds before the others, waited for it.
        let started = humantime::parse_rfc3339(report["started_at"].as_str().unwrap()).unwrap();
        let sending_began =
            report["elapsed_s"].as_f64().unwrap() - report["sending_s"].as_f64().unwrap();
        let to_start_at = start_at.duration_since(started).unwrap().as_secs_f64();
        assert!(
            sending_began >= to_start_at - 0.01,
            "shard {i} sent {sending_began}s after its start, --start-at was {to_start_at}s after it"
        );
        let round_trips = decode(&report["histograms"]["round_trip_us"]);
        assert_eq!(round_trips.len(), 140);
        union.add(&round_trips).unwrap();
        connect_union
            .add(decode(&report["histograms"]["connect_us"]))
            .unwrap();
    }

    let merged_json = dir.path().join("merged.json");
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let output = merge(
        &paths,
        &[
            "--report-json",
            merged_json.to_str().unwrap(),
            "--threshold",
            "errors<1%",
        ],
    )
    .await;
    // The shards' p99<1ms is evaluated now, on the whole run: loopback echoes of a debug
    // build under a shared CPU take longer than 1 ms at the 99th percentile.
    let merged = read_report(&merged_json);
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(table.contains("3 shards of run"), "{}", describe(&output));
    assert!(
        table.contains("p99<1ms") || table.contains("p99 "),
        "{table}"
    );
    let breached = merged["thresholds"][0]["passed"] == false;
    assert_eq!(
        output.status.code(),
        Some(if breached { 1 } else { 0 }),
        "{}",
        describe(&output)
    );
    assert_eq!(merged["thresholds"][1]["threshold"], "errors<1%");
    assert_eq!(merged["thresholds"][1]["passed"], true, "{merged}");
    assert_eq!(merged["merged"]["shards"], 3);
    assert_eq!(merged["shard"], Value::Null);
    for (section, key) in [
        ("connections", "requested"),
        ("connections", "opened"),
        ("connections", "failed"),
        ("messages", "sent"),
        ("messages", "echoed"),
        ("messages", "lost"),
        ("messages", "errors"),
    ] {
        let sum: u64 = reports
            .iter()
            .map(|r| r[section][key].as_u64().unwrap())
            .sum();
        assert_eq!(merged[section][key], sum, "{section}.{key}");
    }
    assert_eq!(merged["messages"]["sent"], 420);
    assert_eq!(merged["connections"]["opened"], 7);
    assert_eq!(merged["target_rate"], 210.0);
    let ms = |us: u64| us as f64 / 1e3;
    let summary = &merged["round_trip_ms"];
    assert_eq!(summary["count"], union.len());
    for (key, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        assert_eq!(summary[key], ms(union.value_at_quantile(quantile)), "{key}");
    }
    assert_eq!(summary["max"], ms(union.max()));
    assert_eq!(summary["min"], ms(union.min()));
    assert_eq!(
        merged["connect_ms"]["p99"],
        ms(connect_union.value_at_quantile(0.99))
    );
    assert_eq!(union, decode(&merged["histograms"]["round_trip_us"]));

    // Second by second: each shard's intervals add up to its totals, the merge's are the
    // shards' added by wall-clock second, and the shards sent in the same seconds.
    let per_second = |report: &Value| -> std::collections::BTreeMap<u64, (u64, u64)> {
        report["intervals"]
            .as_array()
            .expect("intervals")
            .iter()
            .map(|i| {
                let round_trips = decode(&i["round_trip_us"]).len();
                (
                    i["unix_s"].as_u64().unwrap(),
                    (i["sent"].as_u64().unwrap(), round_trips),
                )
            })
            .collect()
    };
    let mut expected = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    let mut sending_seconds = Vec::new();
    for report in &reports {
        let seconds = per_second(report);
        assert_eq!(seconds.values().map(|v| v.0).sum::<u64>(), 140, "{report}");
        assert_eq!(seconds.values().map(|v| v.1).sum::<u64>(), 140, "{report}");
        sending_seconds.push(
            seconds
                .iter()
                .filter(|(_, v)| v.0 > 0)
                .map(|(s, _)| *s)
                .collect::<Vec<_>>(),
        );
        for (second, (sent, round_trips)) in seconds {
            let entry = expected.entry(second).or_default();
            entry.0 += sent;
            entry.1 += round_trips;
        }
    }
    assert_eq!(per_second(&merged), expected);
    let start_second = start_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for seconds in &sending_seconds {
        assert_eq!(seconds.first(), Some(&start_second), "{sending_seconds:?}");
    }

    // The same documents on stdin, among other log lines (as `kubectl logs` gives them).
    let mut log = b"note: shard 0 of 3: something\n".to_vec();
    for file in &files {
        log.extend(std::fs::read(file).unwrap());
        log.extend(b"load ws://127.0.0.1/dev\n  Model   open\n");
    }
    let from_stdin = dir.path().join("stdin.json");
    let output = wsprobe(
        args(&[
            "load",
            "merge",
            "-",
            "--report-json",
            from_stdin.to_str().unwrap(),
        ]),
        Vec::new(),
        log,
    )
    .await;
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        describe(&output)
    );
    let again = read_report(&from_stdin);
    assert_eq!(again["round_trip_ms"], merged["round_trip_ms"]);
    assert_eq!(again["messages"], merged["messages"]);
}

/// Two shards of a command and the command itself: the same totals, and rates close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_run_matches_an_unsharded_run() {
    let server = support::spawn_default_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let command = ["-c", "4", "--rate", "100/s", "-n", "200"];
    let single = dir.path().join("single.json");
    let output = shard(&url, &command, &single).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let single = read_report(&single);

    let start_at = unix_seconds(SystemTime::now() + Duration::from_secs(3));
    let files: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("{i}.json")))
        .collect();
    let runs: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let mut line = args(&command);
            line.extend(args(&[
                "--shard",
                &format!("{i}/2"),
                "--start-at",
                &start_at,
            ]));
            let (url, file) = (url.clone(), file.clone());
            tokio::spawn(async move {
                let line: Vec<&str> = line.iter().map(String::as_str).collect();
                shard(&url, &line, &file).await
            })
        })
        .collect();
    for run in runs {
        let output = run.await.unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    let merged_json = dir.path().join("merged.json");
    let merged_html = dir.path().join("merged.html");
    let output = merge(
        &[&files[0], &files[1]],
        &[
            "--report-json",
            merged_json.to_str().unwrap(),
            "--report-html",
            merged_html.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let merged = read_report(&merged_json);
    // The merged page: every section, the shards listed, the merged count, nothing fetched.
    let page = std::fs::read_to_string(&merged_html).expect("the merged HTML report");
    for id in [
        "shards",
        "latency-over-time",
        "percentile-distribution",
        "throughput-over-time",
        "errors-over-time",
        "summary",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "no section {id}");
    }
    assert!(page.contains("merged from 2 shards"), "{page}");
    // The per-second series say when connections opened, so the page can plot it.
    let opened: u64 = merged["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .map(|interval| interval["opened"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(Some(opened), merged["connections"]["opened"].as_u64());
    assert!(page.contains("<td>0/2</td>") && page.contains("<td>1/2</td>"));
    assert!(page.contains(&merged["messages"]["sent"].to_string()));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    for (section, key) in [
        ("connections", "requested"),
        ("connections", "opened"),
        ("messages", "sent"),
        ("messages", "echoed"),
        ("messages", "errors"),
    ] {
        assert_eq!(
            merged[section][key], single[section][key],
            "{section}.{key}"
        );
    }
    assert_eq!(merged["target_rate"], single["target_rate"]);
    let (a, b) = (
        merged["achieved_rate"].as_f64().unwrap(),
        single["achieved_rate"].as_f64().unwrap(),
    );
    assert!((a - b).abs() / b < 0.05, "merged {a}/s, single {b}/s");
}

/// Reports that are not the shards of one run are refused with exit 2, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_that_do_not_belong_together_are_refused() {
    let server = support::spawn_default_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let quick = ["-c", "3", "-n", "6"];
    for (name, extra) in [
        ("a0.json", &["--shard", "0/3", "--run-id", "r1"][..]),
        ("a1.json", &["--shard", "1/3", "--run-id", "r1"]),
        ("a2.json", &["--shard", "2/3", "--run-id", "r1"]),
        ("other-run.json", &["--shard", "2/3", "--run-id", "another"]),
        (
            "other-size.json",
            &["--shard", "2/3", "--run-id", "r1", "--size", "100"],
        ),
        ("other-count.json", &["--shard", "1/2", "--run-id", "r1"]),
    ] {
        let mut line = args(&quick);
        line.extend(args(extra));
        let line: Vec<&str> = line.iter().map(String::as_str).collect();
        let output = shard(&url, &line, &path(name)).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            describe(&output)
        );
    }
    let whole = std::fs::read_to_string(path("a2.json")).unwrap();
    std::fs::write(path("cut.json"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(path("foreign.json"), r#"{"schema": "something-else/1"}"#).unwrap();
    let mut no_histograms: Value = serde_json::from_str(&whole).unwrap();
    no_histograms["histograms"] = Value::Null;
    std::fs::write(path("old.json"), no_histograms.to_string()).unwrap();

    let ok = merge(&[&path("a0.json"), &path("a1.json"), &path("a2.json")], &[]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    for (files, wanted) in [
        (
            vec!["a0.json", "a1.json", "cut.json"],
            "cut.json: the JSON ends too early",
        ),
        (
            vec!["a0.json", "foreign.json"],
            "foreign.json: not a wsprobe load report",
        ),
        (
            vec!["a0.json", "old.json"],
            "old.json: the report carries no histograms",
        ),
        (
            vec!["a0.json", "a1.json", "a1.json"],
            "a1.json are both shard 1 of 3",
        ),
        (vec!["a0.json", "a2.json"], "1 of 3 shards missing: 1"),
        (
            vec!["a0.json", "a1.json", "other-run.json"],
            "other-run.json is of run another",
        ),
        (
            vec!["a0.json", "a1.json", "other-size.json"],
            "different settings (size: 64 and 100)",
        ),
        (
            vec!["a0.json", "other-count.json"],
            "other-count.json is a shard of 2",
        ),
        (vec!["missing.json"], "cannot read"),
    ] {
        let paths: Vec<PathBuf> = files.iter().map(|f| path(f)).collect();
        let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let output = merge(&paths, &[]).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{files:?}: {}",
            describe(&output)
        );
        assert!(
            stderr(&output).contains(wanted),
            "{files:?}, wanted {wanted}: {}",
            describe(&output)
        );
    }
    // A document cut short on stdin.
    let output = wsprobe(
        args(&["load", "merge", "-"]),
        Vec::new(),
        whole.as_bytes()[..whole.len() - 20].to_vec(),
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        stderr(&output).contains("cut short"),
        "{}",
        describe(&output)
    );
}

/// `--shard N` takes the index from JOB_COMPLETION_INDEX; without it, or out of range,
/// or with nothing to do, a shard is a usage error before anything connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_index_comes_from_job_completion_index() {
    let server = support::spawn_default_server().await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let line = |extra: &[&str]| {
        let mut all = args(&["load", &url, "-c", "4", "-n", "8", "--no-progress"]);
        all.extend(args(extra));
        all
    };
    let env = |value: &str| vec![("JOB_COMPLETION_INDEX".to_owned(), value.to_owned())];
    let output = wsprobe(
        line(&["--shard", "2", "--report-json", json.to_str().unwrap()]),
        env("1"),
        Vec::new(),
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = read_report(&json);
    assert_eq!(report["shard"]["index"], 1);
    assert_eq!(report["shard"]["count"], 2);
    assert_eq!(report["messages"]["sent"], 4);

    for (extra, env, wanted) in [
        (&["--shard", "2"][..], Vec::new(), "JOB_COMPLETION_INDEX"),
        (&["--shard", "2"], env("2"), "out of range"),
        (&["--shard", "2"], env("x"), "not a shard index"),
        (&["--shard", "4/4"], Vec::new(), "out of range"),
        (
            &["--shard", "0/5"],
            Vec::new(),
            "cannot be split over 5 shards",
        ),
        (&["--shard", "0/0"], Vec::new(), "at least 1"),
        (
            &["--start-at", "2001-01-01T00:00:00Z"],
            Vec::new(),
            "in the past",
        ),
        (&["--start-at", "tomorrow"], Vec::new(), "not a time"),
    ] {
        let output = wsprobe(line(extra), env, Vec::new()).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            describe(&output)
        );
        assert!(
            stderr(&output).contains(wanted),
            "{extra:?}: {}",
            describe(&output)
        );
    }
    // Nothing connected for any of those.
    assert_eq!(server.state().connection_count(), 0);
}

/// `--report-json -`: the document alone on stdout, the table on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_on_stdout_is_the_whole_output() {
    let server = support::spawn_default_server().await;
    let output = wsprobe(
        args(&[
            "load",
            &server.ws_url(),
            "-c",
            "2",
            "-n",
            "4",
            "--no-progress",
            "--shard",
            "0/1",
            "--report-json",
            "-",
        ]),
        Vec::new(),
        Vec::new(),
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(report["messages"]["sent"], 4);
    assert!(
        stderr(&output).contains("Round trip"),
        "{}",
        describe(&output)
    );
    let merged = wsprobe(args(&["load", "merge", "-"]), Vec::new(), output.stdout).await;
    assert_eq!(merged.status.code(), Some(0), "{}", describe(&merged));
    assert!(String::from_utf8_lossy(&merged.stdout).contains("4 sent, 4 echoed"));
}

/// The Kubernetes manifest (which cannot be run here: no cluster) holds what a sharded
/// run needs. No YAML parser is a dependency, so this reads the few fields by their
/// `key: value` lines (comments stripped), which the file keeps one a line.
#[test]
fn the_indexed_job_manifest_runs_every_shard_at_once() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/load-job.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/kubernetes/load-job.yaml");
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':').map(str::trim))
            .unwrap_or_else(|| panic!("{key} in {}", path.display()))
    };
    assert_eq!(value("apiVersion"), "batch/v1");
    assert_eq!(value("kind"), "Job");
    assert_eq!(value("completionMode"), "Indexed");
    assert_eq!(value("restartPolicy"), "Never");
    assert_eq!(value("backoffLimit"), "0");
    let n = value("completions");
    assert_eq!(value("parallelism"), n, "every shard at once");
    let args_at = lines.iter().position(|l| *l == "args:").expect("args:");
    let args: Vec<&str> = lines[args_at + 1..]
        .iter()
        .map_while(|l| l.strip_prefix("- "))
        .collect();
    assert_eq!(args.first(), Some(&"load"));
    assert!(args.contains(&format!("--shard={n}").as_str()), "{args:?}");
    assert!(args.contains(&"--report-json=-"), "{args:?}");
    assert!(args.contains(&"--no-progress"), "{args:?}");
    assert!(
        args.iter().any(|a| a.starts_with("--start-at=")),
        "{args:?}"
    );
    // The flags are the binary's own: a dry parse of the same command line.
    let mut line: Vec<String> = args
        .iter()
        .map(|a| a.replace("__START_AT__", "2100-01-01T00:00:00Z"))
        .collect();
    line.retain(|a| !a.starts_with("--report-json"));
    line.push("--help".into());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(&line)
        .output()
        .expect("wsprobe --help");
    assert!(output.status.success(), "{}", describe(&output));
    let dockerfile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/Dockerfile");
    let dockerfile = std::fs::read_to_string(dockerfile).expect("the Dockerfile");
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/wsprobe\"]"));
}
