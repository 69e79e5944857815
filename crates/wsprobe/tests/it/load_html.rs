//! Integration tests: `wsprobe load --report-html`, the real binary against the real
//! `serve` on port 0: the page's sections and numbers (against the JSON report), the
//! usage error for a path that cannot be written, a run where nothing connects, and the
//! page in headless Chromium when it is installed (skipped, saying so, when not).

use std::path::Path;

use serde_json::Value;

use super::{describe, load};
use crate::support;

fn path(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

const SECTIONS: [&str; 7] = [
    "header",
    "latency-over-time",
    "percentile-distribution",
    "throughput-over-time",
    "connections-over-time",
    "errors-over-time",
    "summary",
];

#[tokio::test]
async fn the_html_report_shows_the_run_and_matches_the_json() {
    let server = support::spawn_default_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (html, json) = (dir.path().join("load.html"), dir.path().join("load.json"));
    let url = server.ws_url() + "?token=query-token";
    let output = load(vec![
        url,
        "-c".into(),
        "4".into(),
        "--rate".into(),
        "200/s".into(),
        "-n".into(),
        "300".into(),
        "--api-key".into(),
        "key-on-the-command-line".into(),
        "--threshold".into(),
        "p99<5s".into(),
        "--report-html".into(),
        path(&html),
        "--report-json".into(),
        path(&json),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    for id in SECTIONS {
        assert!(page.contains(&format!("id=\"{id}\"")), "section {id}");
    }
    assert_eq!(page.matches("<svg").count(), 5, "five charts");
    assert!(!page.contains("http://") && !page.contains("https://"));
    assert!(!page.contains("<script") && !page.contains("<link"));
    // Secrets: the key given on the command line and the token in the URL.
    assert!(!page.contains("key-on-the-command-line"), "{page}");
    assert!(!page.contains("query-token"));
    assert!(page.contains("--api-key &#39;&lt;redacted&gt;&#39;"));
    // The numbers are the JSON report's.
    let messages = &report["messages"];
    assert!(page.contains(&format!(
        "{} sent, {} echoed",
        messages["sent"], messages["echoed"]
    )));
    let c = &report["connections"];
    assert!(page.contains(&format!(
        "{} requested, {} opened, {} failed",
        c["requested"], c["opened"], c["failed"]
    )));
    assert!(page.contains(&format!(
        "{:.1}/s",
        report["achieved_rate"].as_f64().unwrap()
    )));
    assert!(page.contains("✓ pass") && page.contains("Every threshold held."));
    // The table under the distribution: at 100 %, the longest round trip and every one.
    let row = page
        .split("<tr><td>100%</td>")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("the 100% row");
    let cells: Vec<&str> = row
        .split("<td>")
        .filter_map(|cell| cell.strip_suffix("</td>"))
        .collect();
    assert_eq!(
        cells.get(1).copied(),
        Some(report["round_trip_ms"]["count"].to_string().as_str()),
        "{row}"
    );
    let max_ms = report["round_trip_ms"]["max"].as_f64().unwrap();
    let shown_ms = match cells.first() {
        Some(text) if text.ends_with("ms") => text.trim_end_matches("ms").parse::<f64>().unwrap(),
        Some(text) => text.trim_end_matches('s').parse::<f64>().unwrap() * 1e3,
        None => panic!("{row}"),
    };
    assert!(
        (shown_ms - max_ms).abs() <= max_ms * 0.01,
        "{row} vs {max_ms}ms"
    );
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
    check_in_chromium(&html);
}

/// Renders the page with `scripts/check-html-report.sh` (sections, five charts, no
/// console error, a screenshot) when Chromium is installed.
fn check_in_chromium(html: &Path) {
    let installed = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        });
    if !installed {
        eprintln!("skipped the check in headless Chromium: chromium is not installed");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-html-report.sh");
    let output = std::process::Command::new(script)
        .arg(html)
        .output()
        .expect("running scripts/check-html-report.sh");
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        html.with_extension("png")
            .metadata()
            .is_ok_and(|m| m.len() > 0)
    );
}

#[tokio::test]
async fn an_unwritable_html_path_is_a_usage_error_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("no-such-dir").join("load.html");
    // Nothing listens on port 1: exit 2, not 3, shows nothing was tried.
    let output = load(vec![
        "ws://127.0.0.1:1/dev".into(),
        "-n".into(),
        "1".into(),
        "--report-html".into(),
        path(&html),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot write --report-html"));
}

#[tokio::test]
async fn a_run_where_nothing_connects_still_writes_a_report_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("load.html");
    let output = load(vec![
        "ws://127.0.0.1:1/dev".into(),
        "-c".into(),
        "2".into(),
        "-n".into(),
        "1".into(),
        "--report-html".into(),
        path(&html),
    ])
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("No connection could be opened (refused: 2)"));
    assert!(page.contains("no round trip was measured"));
    for id in SECTIONS {
        assert!(page.contains(&format!("id=\"{id}\"")), "section {id}");
    }
}

/// SIGTERM (as CI cancellation sends) ends the run; the page still comes, and says so.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_writes_a_report_that_says_so() {
    let server = support::spawn_default_server().await;
    let mut events = server.events();
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("load.html");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args([
            "load",
            &server.ws_url(),
            "-c",
            "2",
            "--rate",
            "200/s",
            "-d",
            "30s",
        ])
        .args(["--no-progress", "--report-html", &path(&html)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running wsprobe load");
    support::wait_event(&mut events, |event| {
        matches!(event, wsprobe_serve::ServeEvent::Message { .. }).then_some(())
    })
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success());
    let output = support::within(
        "wsprobe load to stop after SIGTERM",
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("waiting")),
    )
    .await
    .expect("the waiting thread");
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("Interrupted by SIGTERM"), "{page}");
    assert_eq!(page.matches("<svg").count(), 5);
}
