//! `$connect` authorization, in API Gateway's order: the API key first (the gateway's own
//! check, 403), then the bearer token (the sample app's connect Lambda, 401). Secrets are
//! compared in constant time and never appear in a reason.

use axum::http::HeaderMap;

use wsprobe_core::secret::Secret;

/// Why a handshake was refused: the status, the body API Gateway sends, and a reason for
/// the log (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: u16,
    /// The JSON body API Gateway answers with.
    pub body: &'static str,
    /// Why, for the REJECT log line.
    pub reason: &'static str,
}

pub const FORBIDDEN_BODY: &str = r#"{"message":"Forbidden"}"#;
pub const UNAUTHORIZED_BODY: &str = r#"{"message":"Unauthorized"}"#;

/// Checks the handshake headers against the configured API keys and tokens. With none
/// configured, every client is authorized.
pub fn authorize(
    headers: &HeaderMap,
    api_keys: &[Secret],
    tokens: &[Secret],
) -> Result<(), Refusal> {
    if !api_keys.is_empty() {
        let Some(key) = headers.get("x-api-key") else {
            return Err(Refusal {
                status: 403,
                body: FORBIDDEN_BODY,
                reason: "missing x-api-key",
            });
        };
        if !matches_any(api_keys, key.as_bytes()) {
            return Err(Refusal {
                status: 403,
                body: FORBIDDEN_BODY,
                reason: "x-api-key does not match",
            });
        }
    }
    if !tokens.is_empty() {
        let Some(authorization) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(Refusal {
                status: 401,
                body: UNAUTHORIZED_BODY,
                reason: "missing Authorization",
            });
        };
        let token = bearer_token(authorization.as_bytes()).ok_or(Refusal {
            status: 401,
            body: UNAUTHORIZED_BODY,
            reason: "Authorization is not a bearer token",
        })?;
        if !matches_any(tokens, token) {
            return Err(Refusal {
                status: 401,
                body: UNAUTHORIZED_BODY,
                reason: "bearer token does not match",
            });
        }
    }
    Ok(())
}

/// Compares against every secret, without stopping at the first match, so the time
/// taken does not tell which one (or whether any) matched.
fn matches_any(secrets: &[Secret], candidate: &[u8]) -> bool {
    secrets
        .iter()
        .fold(false, |found, secret| secret.matches(candidate) | found)
}

/// The token of `Bearer TOKEN` (the scheme is case-insensitive, as in RFC 6750).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then_some(token)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn nothing_configured_lets_everyone_in() {
        assert_eq!(authorize(&headers(&[]), &[], &[]), Ok(()));
    }

    #[test]
    fn api_key_is_checked_before_the_token() {
        let keys = [Secret::new("k1"), Secret::new("k2")];
        let tokens = [Secret::new("tok")];
        let status = |h: &[(&'static str, &'static str)]| {
            authorize(&headers(h), &keys, &tokens).map_err(|r| r.status)
        };
        assert_eq!(status(&[]), Err(403));
        assert_eq!(status(&[("x-api-key", "nope")]), Err(403));
        assert_eq!(status(&[("x-api-key", "k2")]), Err(401));
        assert_eq!(
            status(&[("x-api-key", "k2"), ("authorization", "tok")]),
            Err(401)
        );
        assert_eq!(
            status(&[("x-api-key", "k2"), ("authorization", "Bearer tak")]),
            Err(401)
        );
        assert_eq!(
            status(&[("x-api-key", "k1"), ("authorization", "Bearer tok")]),
            Ok(())
        );
        assert_eq!(
            status(&[("x-api-key", "k1"), ("authorization", "bearer tok")]),
            Ok(())
        );
    }

    #[test]
    fn bodies_are_api_gateway_s() {
        let refusal = authorize(&headers(&[]), &[], &[Secret::new("t")]).unwrap_err();
        assert_eq!(refusal.body, r#"{"message":"Unauthorized"}"#);
        let refusal = authorize(&headers(&[]), &[Secret::new("k")], &[]).unwrap_err();
        assert_eq!(refusal.body, r#"{"message":"Forbidden"}"#);
    }

    #[test]
    fn bearer_tokens_parse() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abcdefg"), None);
        assert_eq!(bearer_token(b"abc"), None);
    }
}
