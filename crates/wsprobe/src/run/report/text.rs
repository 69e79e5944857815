//! The human summary: `✓ name (12 ms)` / `✗ name (3.4 ms)` per test, each failure rendered
//! rustc-style under its test, then a totals line. Colour is decided by the caller.

use colored::Colorize;

use crate::run::result::{ScriptResult, TestResult};
use wsprobe_core::values::short_duration;

/// The line of one test: a mark, the name and the duration.
pub(crate) fn test_line(test: &TestResult, color: bool) -> String {
    let duration = format!("({})", short_duration(test.duration));
    let (mark, duration) = if color {
        let mark = if test.passed() {
            "✓".green().bold().to_string()
        } else {
            "✗".red().bold().to_string()
        };
        (mark, duration.dimmed().to_string())
    } else {
        let mark = if test.passed() { "✓" } else { "✗" };
        (mark.to_owned(), duration)
    };
    format!("  {mark} {} {duration}", test.name)
}

/// A test's line, and its failure rendered below it (followed by a blank line).
pub(crate) fn test_block(test: &TestResult, color: bool) -> String {
    let mut out = test_line(test, color);
    out.push('\n');
    if let Some(failure) = &test.failure {
        out.push('\n');
        out.push_str(&failure.render(color));
        out.push('\n');
    }
    out
}

/// The totals: `3 passed, 1 failed (4 tests in 2 files, 1.20 s)`.
pub(crate) fn totals(result: &ScriptResult, color: bool) -> String {
    let passed = format!("{} passed", result.passed());
    let failed_count = result.failed();
    let failed = format!("{failed_count} failed");
    let (passed, failed) = if color {
        let failed = if failed_count > 0 {
            failed.red().bold().to_string()
        } else {
            failed
        };
        (passed.green().to_string(), failed)
    } else {
        (passed, failed)
    };
    let tests = result.tests().count();
    let files = result.files.len();
    let interrupted = match result.interrupted_by {
        Some(signal) => format!("; interrupted by {signal}"),
        None => String::new(),
    };
    format!(
        "{passed}, {failed} ({tests} test{} in {files} file{}, {}{interrupted})",
        if tests == 1 { "" } else { "s" },
        if files == 1 { "" } else { "s" },
        short_duration(result.duration)
    )
}

/// The heading above a file's tests.
pub(crate) fn file_heading(file: &str, color: bool) -> String {
    if color {
        file.bold().to_string()
    } else {
        file.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::run::result::{Failure, FailureKind, FileResult};
    use wsprobe_core::command::Span;

    /// The pieces put together as `wsprobe run` prints them while tests finish: per file
    /// its name and its tests' blocks, then a blank line and the totals.
    fn render(result: &ScriptResult, color: bool) -> String {
        let mut out = String::new();
        for file in &result.files {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(&file_heading(&file.file, color));
            out.push('\n');
            for test in &file.tests {
                out.push_str(&test_block(test, color));
            }
        }
        // A failure block already ends with a blank line.
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&totals(result, color));
        out.push('\n');
        out
    }

    #[test]
    fn one_line_per_test_then_failures_then_totals() {
        let failure = Failure::new(
            FailureKind::Expectation,
            "expectation failed: pong",
            "a.wsp",
            Span::new(2, 1, 6),
            "expect pong",
        );
        let result = ScriptResult {
            files: vec![FileResult {
                file: "a.wsp".into(),
                tests: vec![
                    TestResult {
                        name: "first".into(),
                        line: 1,
                        duration: Duration::from_millis(12),
                        failure: None,
                    },
                    TestResult {
                        name: "second".into(),
                        line: 2,
                        duration: Duration::from_millis(3),
                        failure: Some(failure),
                    },
                ],
                duration: Duration::from_millis(15),
            }],
            duration: Duration::from_millis(16),
            interrupted_by: None,
        };
        assert_eq!(
            render(&result, false),
            "a.wsp
  ✓ first (12 ms)
  ✗ second (3.0 ms)

error: expectation failed: pong
 --> a.wsp:2:1
  |
2 | expect pong
  | ^^^^^^

1 passed, 1 failed (2 tests in 1 file, 16 ms)
"
        );
    }
}
