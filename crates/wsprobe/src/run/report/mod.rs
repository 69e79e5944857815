//! Reports of a script run: each is a pure function of the [`ScriptResult`](super::ScriptResult).
//!
//! - [`text`]: the human summary on stdout (one line per test, failures, totals);
//! - [`junit`]: JUnit XML, one testsuite per file and one testcase per test;
//! - [`json`]: the JSON result whose schema docs/run.md documents.

pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod text;
