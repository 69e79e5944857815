//! The JSON report (`--report json=PATH`). Its schema, version 1, is documented in
//! docs/run.md; every duration is in milliseconds (a float), and every text is redacted.

use serde_json::{Value, json};

use crate::run::result::{Failure, ScriptResult, TestResult};

/// Version of the report's schema; bumped on an incompatible change.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// The report as a JSON value.
pub(crate) fn render(result: &ScriptResult) -> Value {
    let files: Vec<Value> = result
        .files
        .iter()
        .map(|file| {
            json!({
                "file": file.file,
                "duration_ms": millis(file.duration),
                "passed": file.tests.iter().filter(|t| t.passed()).count(),
                "failed": file.tests.iter().filter(|t| !t.passed()).count(),
                "tests": file.tests.iter().map(test).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "version": SCHEMA_VERSION,
        "success": result.failed() == 0 && result.interrupted_by.is_none(),
        "interrupted": result.interrupted_by.is_some(),
        "interrupted_by": result.interrupted_by,
        "passed": result.passed(),
        "failed": result.failed(),
        "duration_ms": millis(result.duration),
        "files": files,
    })
}

fn test(test: &TestResult) -> Value {
    json!({
        "name": test.name,
        "line": test.line,
        "status": if test.passed() { "passed" } else { "failed" },
        "duration_ms": millis(test.duration),
        "failure": test.failure.as_ref().map(failure),
    })
}

fn failure(failure: &Failure) -> Value {
    json!({
        "kind": failure.kind.as_str(),
        "message": failure.message,
        "line": failure.span.line,
        "column": failure.span.column,
        "detail": failure.label,
        "expected": failure.expected,
        "connection": failure.connection,
        "received": failure.received,
        "received_more": failure.received_more,
        "hint": failure.hint,
        "rendered": failure.render(false),
    })
}

fn millis(duration: std::time::Duration) -> f64 {
    // Three decimals: microseconds are the most a loopback test can tell apart.
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::run::result::{FailureKind, FileResult};
    use wsprobe_core::command::Span;

    #[test]
    fn counts_tests_and_describes_failures() {
        let failure = Failure::new(
            FailureKind::Connect,
            "could not connect: handshake rejected: 401 Unauthorized",
            "a.wsp",
            Span::new(4, 3, 7),
            "  connect",
        );
        let result = ScriptResult {
            files: vec![FileResult {
                file: "a.wsp".into(),
                tests: vec![
                    TestResult {
                        name: "ok".into(),
                        line: 1,
                        duration: Duration::from_micros(1500),
                        failure: None,
                    },
                    TestResult {
                        name: "bad".into(),
                        line: 3,
                        duration: Duration::from_millis(2),
                        failure: Some(failure),
                    },
                ],
                duration: Duration::from_millis(4),
            }],
            duration: Duration::from_millis(5),
            interrupted_by: None,
        };
        let report = render(&result);
        assert_eq!(report["version"], 1);
        assert_eq!(report["success"], false);
        assert_eq!(report["passed"], 1);
        assert_eq!(report["failed"], 1);
        let tests = &report["files"][0]["tests"];
        assert_eq!(tests[0]["status"], "passed");
        assert_eq!(tests[0]["duration_ms"], 1.5);
        assert_eq!(tests[0]["failure"], Value::Null);
        assert_eq!(tests[1]["failure"]["kind"], "connect");
        assert_eq!(tests[1]["failure"]["line"], 4);
        assert_eq!(tests[1]["failure"]["column"], 3);
        assert_eq!(tests[1]["failure"]["received"], Value::Null);
        assert!(
            tests[1]["failure"]["rendered"]
                .as_str()
                .unwrap()
                .contains(" --> a.wsp:4:3")
        );
    }
}
