//! AWS Signature Version 4 for API Gateway (service `execute-api`): signing the WebSocket
//! upgrade and `@connections` calls on the client side ([`sign`]), credentials from the
//! standard places ([`credentials`]), and checking signatures in `serve` ([`verify`]).
//!
//! Signatures are computed by the `aws-sigv4` crate, on both sides: the server recomputes
//! the signature over the request it received and compares.

pub mod credentials;
mod ini;
pub mod sign;
pub mod verify;

pub use credentials::{Credentials, CredentialsError};
pub use sign::{SignError, SignatureMode, Signer};
pub use verify::{IamKey, Rejection, Verified};

use crate::options::{ConfigError, SigningChoice};

/// The service name API Gateway signs with, for `$connect` and `@connections` alike.
pub const SERVICE: &str = "execute-api";

/// The signer `choice` asks for. Credentials are read here, once; a missing key or
/// profile is an error that names the profile and the files, never a key.
pub fn signer_for(choice: &SigningChoice) -> Result<Signer, ConfigError> {
    if let Some(region) = &choice.region
        && !is_region_name(region)
    {
        return Err(ConfigError::new(format!(
            "region `{region}` is not an AWS region name; write e.g. eu-west-1"
        )));
    }
    Signer::from_options(choice).map_err(|e| ConfigError::new(format!("SigV4: {e}")))
}

/// The region an API Gateway host names: `abc123.execute-api.eu-west-1.amazonaws.com`
/// (or `.amazonaws.com.cn`) → `eu-west-1`. Custom domains name none.
pub fn region_of_host(host: &str) -> Option<&str> {
    let host = host.split(':').next().unwrap_or(host).trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    let position = labels
        .iter()
        .position(|label| label.eq_ignore_ascii_case(SERVICE))?;
    let region = labels.get(position + 1)?;
    let rest = &labels[position + 2..];
    let aws_suffix = matches!(rest, ["amazonaws", "com"] | ["amazonaws", "com", "cn"]);
    (position > 0 && aws_suffix && is_region_name(region)).then_some(*region)
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`: lower-case letters, digits and dashes.
fn is_region_name(text: &str) -> bool {
    !text.is_empty()
        && text.contains('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Percent-encodes everything but SigV4's unreserved characters (`A-Z a-z 0-9 - _ . ~`).
fn uri_encode(text: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_inferred_from_execute_api_hosts() {
        for (host, region) in [
            (
                "abc123.execute-api.eu-west-1.amazonaws.com",
                Some("eu-west-1"),
            ),
            (
                "abc123.execute-api.us-gov-west-1.amazonaws.com:443",
                Some("us-gov-west-1"),
            ),
            (
                "abc123.execute-api.cn-north-1.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            (
                "ABC.EXECUTE-API.ap-south-1.amazonaws.com.",
                Some("ap-south-1"),
            ),
            ("execute-api.eu-west-1.amazonaws.com", None),
            ("abc.execute-api.eu-west-1.example.com", None),
            ("abc.execute-api.amazonaws.com", None),
            ("ws.example.com", None),
            ("127.0.0.1", None),
            ("", None),
        ] {
            assert_eq!(region_of_host(host), region, "{host}");
        }
    }

    #[test]
    fn region_names() {
        assert!(is_region_name("eu-west-1"));
        assert!(!is_region_name("EU-WEST-1"));
        assert!(!is_region_name("eu west"));
        assert!(!is_region_name("local"));
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(uri_encode("a/b+c=d e"), "a%2Fb%2Bc%3Dd%20e");
    }
}
