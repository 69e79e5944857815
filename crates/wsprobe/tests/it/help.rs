//! Integration tests: the help of the real binary fits a screen. `-h` of each subcommand is
//! at most 45 lines, with its own options first and the shared ones under the headings
//! Connection, TLS, AWS and Output; `--help` keeps the long text; examples fit 80 columns;
//! `manage` and `load` accept only the shared options that do something for them.

use std::process::Command;

fn wsprobe(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("WSPROBE_STAGE")
        .env_remove("WSPROBE_CONFIG")
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .output()
        .expect("running wsprobe");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The help of `args`, where a first argument of several words (`load merge`) is split.
fn help(args: &[&str]) -> String {
    let args: Vec<&str> = match args.split_first() {
        Some((first, rest)) => first.split(' ').chain(rest.iter().copied()).collect(),
        None => Vec::new(),
    };
    let (code, stdout, stderr) = wsprobe(&args);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    stdout
}

const SUBCOMMANDS: [&str; 6] = ["connect", "run", "load", "serve", "manage", "load merge"];

#[test]
fn short_help_fits_a_screen_and_long_help_keeps_the_details() {
    for subcommand in SUBCOMMANDS {
        let short = help(&[subcommand, "-h"]);
        let lines = short.lines().count();
        assert!(lines <= 45, "`{subcommand} -h` is {lines} lines:\n{short}");
        let long = help(&[subcommand, "--help"]);
        assert!(
            long.lines().count() > lines,
            "`{subcommand} --help` is no longer than -h"
        );
        for text in [&short, &long] {
            assert!(
                !text.contains("=]"),
                "an empty [env: …=] in {subcommand}:\n{text}"
            );
        }
    }
    // A detail only the long help gives.
    assert!(help(&["connect", "--help"]).contains("stays connected until the server closes"));
    assert!(!help(&["connect", "-h"]).contains("stays connected until the server closes"));
}

#[test]
fn own_options_come_first_and_shared_ones_under_headings() {
    for subcommand in ["connect", "run", "load", "manage"] {
        let short = help(&[subcommand, "-h"]);
        let at = |heading: &str| {
            short
                .lines()
                .position(|line| line == heading)
                .unwrap_or_else(|| panic!("no {heading} in `{subcommand} -h`:\n{short}"))
        };
        let order = [
            at("Options:"),
            at("Connection:"),
            at("TLS:"),
            at("AWS:"),
            at("Output:"),
        ];
        assert!(order.is_sorted(), "{subcommand}: {order:?}\n{short}");
        let connection = &short[short.find("Connection:").unwrap_or(0)..];
        assert!(connection.contains("--auth"), "{short}");
        let output = &short[short.find("Output:").unwrap_or(0)..];
        assert!(output.contains("--no-color"), "{short}");
    }
}

#[test]
fn examples_fit_80_columns() {
    let mut texts = vec![help(&["--help"])];
    // `load merge` shows its two examples in its own words, without a heading.
    texts.extend(
        SUBCOMMANDS
            .iter()
            .filter(|subcommand| **subcommand != "load merge")
            .map(|subcommand| help(&[subcommand, "--help"])),
    );
    for text in texts {
        let Some(examples) = text.split("Examples:").nth(1) else {
            panic!("no examples:\n{text}");
        };
        for line in examples.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
        }
    }
}

#[test]
fn manage_and_load_accept_only_what_does_something_for_them() {
    for flag in [
        &["-s", "chat"][..],
        &["-o", "https://example.com"],
        &["--route-field", "message"],
        &["--body-field", "data"],
        &["--echo", "full"],
    ] {
        let mut args = vec!["manage", "get", "abc=", "--url", "ws://127.0.0.1:9/dev"];
        args.extend_from_slice(flag);
        let (code, _, stderr) = wsprobe(&args);
        assert_eq!(code, Some(2), "{flag:?}: {stderr}");
        assert!(
            stderr.ends_with(
                "does nothing for `manage`, which makes one HTTP call to @connections\n"
            ),
            "{stderr}"
        );
    }
    let manage = help(&["manage", "--help"]);
    for hidden in [
        "--subprotocol",
        "--origin",
        "--route-field",
        "--body-field",
        "--echo",
    ] {
        assert!(
            !manage.contains(hidden),
            "{hidden}:
{manage}"
        );
    }
    let (code, _, stderr) = wsprobe(&["load", "ws://127.0.0.1:9/dev", "--echo", "off"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: `load` matches every ping with its echo, so --echo off"),
        "{stderr}"
    );
    let load = help(&["load", "--help"]);
    let echo = &load[load.find("--echo <POLICY>").unwrap_or(0)..];
    let echo = &echo[..echo.find("--proxy").unwrap_or(echo.len())];
    assert!(echo.contains("- full:"), "{echo}");
    assert!(!echo.contains("off"), "{echo}");
}
