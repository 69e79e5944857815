//! The JUnit XML report (`--report junit=PATH`): one `<testsuite>` per script file, one
//! `<testcase>` per test, a `<failure>` whose message is the headline and whose text is
//! the failure rendered as on the terminal, without colour codes.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::run::result::ScriptResult;

/// The report as an XML document.
pub(crate) fn render(result: &ScriptResult) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("wsprobe run");
    report.set_time(result.duration);
    for file in &result.files {
        let mut suite = TestSuite::new(file.file.as_str());
        suite.set_time(file.duration);
        if let Some(signal) = result.interrupted_by {
            // JUnit has no word for a cut-short run; a property is what readers keep.
            suite.add_property(quick_junit::Property::new("wsprobe.interrupted", signal));
        }
        for test in &file.tests {
            let status = match &test.failure {
                None => TestCaseStatus::success(),
                Some(failure) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(failure.message.as_str())
                        .set_type(failure.kind.as_str())
                        .set_description(failure.render(false));
                    status
                }
            };
            let mut case = TestCase::new(test.name.as_str(), status);
            case.set_classname(file.file.as_str())
                .set_time(test.duration);
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::run::result::{Failure, FailureKind, FileResult, TestResult};
    use wsprobe_core::command::Span;

    #[test]
    fn a_suite_per_file_and_a_case_per_test() {
        let failure = Failure::new(
            FailureKind::Expectation,
            "expectation failed: text <b>",
            "a.wsp",
            Span::new(2, 1, 6),
            "expect text <b>",
        );
        let test = |name: &str, failure: Option<Failure>| TestResult {
            name: name.into(),
            line: 1,
            duration: Duration::from_millis(1),
            failure,
        };
        let result = ScriptResult {
            files: vec![
                FileResult {
                    file: "a.wsp".into(),
                    tests: vec![test("one", None), test("two", Some(failure))],
                    duration: Duration::from_millis(2),
                },
                FileResult {
                    file: "b.wsp".into(),
                    tests: vec![test("three", None)],
                    duration: Duration::from_millis(1),
                },
            ],
            duration: Duration::from_millis(3),
            interrupted_by: None,
        };
        let xml = render(&result).unwrap();
        assert!(
            xml.contains(r#"<testsuites name="wsprobe run" tests="3" failures="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testsuite name="a.wsp" tests="2""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testsuite name="b.wsp" tests="1""#),
            "{xml}"
        );
        assert!(xml.contains("expectation failed: text &lt;b&gt;"), "{xml}");
        assert!(
            xml.contains(" --&gt; a.wsp:2:1") || xml.contains(" --> a.wsp:2:1"),
            "{xml}"
        );
    }
}
