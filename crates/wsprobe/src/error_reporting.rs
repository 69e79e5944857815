//! The only place that inspects errors to choose an exit code and to add hints.

use std::io::Write;

use colored::Colorize;

use crate::error::{Credentials, Error, Outcome};
use crate::exit;
use wsprobe_core::client::ConnectError;

/// The exit code of a finished job.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => exit::SUCCESS,
        Outcome::ChecksFailed => exit::CHECK_FAILED,
        Outcome::Interrupted => exit::INTERRUPTED,
    }
}

/// Prints `error` to stderr (with a hint where one helps) and returns its exit code.
pub fn report(error: &Error) -> u8 {
    let mut stderr = std::io::stderr().lock();
    let code = match error {
        Error::Syntax { rendered } => {
            // Already rendered with its own `error:` headings and carets.
            let _ = write!(stderr, "{rendered}");
            if !rendered.ends_with('\n') {
                let _ = writeln!(stderr);
            }
            return exit::USAGE;
        }
        Error::Usage(_) => exit::USAGE,
        Error::Connect(ConnectError::InvalidUrl { .. })
        | Error::ConnectWith {
            error: ConnectError::InvalidUrl { .. },
            ..
        } => exit::USAGE,
        Error::Connect(_) | Error::ConnectWith { .. } => exit::CONNECT_FAILED,
        Error::Other(_) => exit::CHECK_FAILED,
    };
    let _ = writeln!(stderr, "{} {}", "error:".red().bold(), message_of(error));
    if let Some(hint) = hint(error) {
        let _ = writeln!(stderr, "{} {hint}", "hint:".cyan().bold());
    }
    code
}

fn message_of(error: &Error) -> String {
    match error {
        // `{:#}` prints anyhow's context chain on one line.
        Error::Other(inner) => format!("{inner:#}"),
        other => other.to_string(),
    }
}

fn hint(error: &Error) -> Option<String> {
    match error {
        Error::Connect(connect) => connect.hint(),
        Error::ConnectWith { error, given } => connect_hint(error, *given),
        _ => None,
    }
}

/// The hint after a failed connection, knowing which credentials it carried: a 401 or
/// 403 does not suggest what was already given, and says what else to check instead.
pub(crate) fn connect_hint(error: &ConnectError, given: Credentials) -> Option<String> {
    let status = match error {
        ConnectError::Rejected { status, .. } => *status,
        other => return other.hint(),
    };
    let Credentials {
        auth,
        api_key,
        sigv4,
    } = given;
    match status {
        401 if sigv4 => Some(
            "the SigV4 signature was refused: check that the AWS credentials are valid and not \
             expired (--profile), the --region, and the stage in the URL"
                .into(),
        ),
        401 if auth => Some(
            "the Authorization value was refused: check that the token is valid and not \
             expired, that it is for this stage, and what the authorizer expects"
                .into(),
        ),
        403 if sigv4 => {
            let mut hint = "the signed request was refused: check that the IAM policy allows \
                            execute-api:Invoke on this stage, the --region, and the stage in \
                            the URL"
                .to_owned();
            if !api_key {
                hint.push_str("; a route may also want an API key (--api-key)");
            }
            Some(hint)
        }
        403 if api_key || auth => {
            let refused = match (auth, api_key) {
                (true, true) => "the token and the API key were refused",
                (false, true) => "the API key was refused",
                _ => "the token was refused",
            };
            let mut checks = Vec::new();
            if auth {
                checks.push("that the token is valid and not expired");
            }
            if api_key {
                checks.push("that the key is in the stage's usage plan");
            }
            checks.push("the stage in the URL");
            if auth {
                checks.push("the authorizer's policy");
            }
            let also = if api_key {
                "an IAM-protected stage wants a signed request (--sigv4)"
            } else {
                "the stage may want an API key (--api-key) or IAM (--sigv4)"
            };
            let last = checks.pop().unwrap_or_default();
            let checks = if checks.is_empty() {
                last.to_owned()
            } else {
                format!("{}, and {last}", checks.join(", "))
            };
            Some(format!("{refused}: check {checks}; {also}"))
        }
        _ => error.hint(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> ConnectError {
        ConnectError::Rejected {
            status,
            reason: String::new(),
            body: String::new(),
            headers: Box::default(),
        }
    }

    fn given(auth: bool, api_key: bool, sigv4: bool) -> Credentials {
        Credentials {
            auth,
            api_key,
            sigv4,
        }
    }

    #[test]
    fn hints_after_401_and_403_do_not_suggest_what_was_given() {
        let hint = |status, g| connect_hint(&rejected(status), g).unwrap();
        assert!(hint(401, given(false, false, false)).contains("pass --auth"));
        let with_auth = hint(401, given(true, false, false));
        assert!(!with_auth.contains("pass --auth"), "{with_auth}");
        assert!(with_auth.contains("token is valid"), "{with_auth}");
        assert!(with_auth.contains("authorizer"), "{with_auth}");

        let signed = hint(403, given(false, false, true));
        assert!(!signed.contains("(--sigv4)"), "{signed}");
        assert!(signed.contains("execute-api:Invoke"), "{signed}");
        assert!(signed.contains("--api-key"), "{signed}");
        let signed_with_key = hint(403, given(false, true, true));
        assert!(!signed_with_key.contains("--api-key"), "{signed_with_key}");

        let keyed = hint(403, given(false, true, false));
        assert!(!keyed.contains("(--api-key"), "{keyed}");
        assert!(keyed.contains("usage plan"), "{keyed}");
        assert!(keyed.contains("--sigv4"), "{keyed}");
        let token = hint(403, given(true, false, false));
        assert!(token.contains("(--api-key)"), "{token}");

        // Other statuses keep their hints.
        assert_eq!(
            connect_hint(&rejected(404), given(true, true, true)),
            rejected(404).hint()
        );
    }
}
