//! Checking SigV4 signatures in `serve --iam-key ACCESS_KEY:SECRET`, as an IAM-protected
//! stage does on `$connect` and on every `@connections` call.
//!
//! The signature is recomputed with `aws-sigv4` over the request as received (method,
//! path, query without the signature itself, the headers the client listed as signed, the
//! body) with the key its credential names, for service `execute-api` and whatever region
//! it names, and compared in constant time. Both forms are accepted: `Authorization`
//! headers, and presigned query strings (which expire after their `X-Amz-Expires`). The
//! signing time must be within 5 minutes of the server's clock. A session token is taken
//! as signed (there is no STS to ask whether it is real).

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningParams, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http::{HeaderMap, Uri};

use super::SERVICE;
use crate::secret::Secret;

/// How far the signing time may be from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// The longest `X-Amz-Expires` AWS accepts (7 days).
pub const MAX_PRESIGN_EXPIRY: u64 = 7 * 24 * 60 * 60;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The query parameters of a presigned URL, which are not part of what it signs.
const SIGNING_PARAMETERS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// A key `serve` accepts signatures by (`--iam-key ACCESS_KEY:SECRET`). `Debug` shows
/// neither part.
#[derive(Clone, PartialEq, Eq)]
pub struct IamKey {
    /// The access key id a signature's credential names.
    pub access_key_id: String,
    /// The secret access key.
    pub secret: Secret,
}

impl IamKey {
    /// Parses `ACCESS_KEY:SECRET`. The error never repeats the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (id, secret) = text
            .split_once(':')
            .ok_or("--iam-key must be ACCESS_KEY:SECRET (the value has no `:`)")?;
        if id.trim().is_empty() || secret.is_empty() {
            return Err("--iam-key must be ACCESS_KEY:SECRET (one side is empty)".to_owned());
        }
        Ok(Self {
            access_key_id: id.trim().to_owned(),
            secret: Secret::new(secret),
        })
    }
}

impl fmt::Debug for IamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IamKey(<redacted>)")
    }
}

/// Why a request's signature was refused; [`Rejection::reason`] is for log lines (no
/// signature, key or token in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Neither an `Authorization: AWS4-HMAC-SHA256 …` header nor a presigned query.
    Unsigned,
    /// The signature parts are missing, malformed or inconsistent.
    Malformed(&'static str),
    /// The credential is for another service than `execute-api`.
    WrongService,
    /// No `--iam-key` has the access key id of the credential.
    UnknownKey,
    /// The signing time is more than 5 minutes from now, or a presigned URL expired.
    Expired,
    /// The signature is not the one the key makes for this request.
    Mismatch,
}

impl Rejection {
    /// Why, in words, for the REJECT log line.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "SigV4: the request is not signed",
            Self::Malformed(why) => why,
            Self::WrongService => "SigV4: the credential is not for service execute-api",
            Self::UnknownKey => "SigV4: unknown access key",
            Self::Expired => "SigV4: the signing time is too far from now, or the URL expired",
            Self::Mismatch => "SigV4: the signature does not match",
        }
    }
}

/// What a valid signature told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The region the signature was made for.
    pub region: String,
    /// Presigned query string (true) or headers (false).
    pub presigned: bool,
}

/// The parts of a signature, from either form.
struct Claimed {
    access_key_id: String,
    scope_date: String,
    region: String,
    service: String,
    date: String,
    signed_headers: Vec<String>,
    signature: String,
    session_token: Option<String>,
    /// Presigned: its `X-Amz-Expires` in seconds.
    expires: Option<u64>,
}

/// Checks the SigV4 signature of a request against `keys` at time `now`.
pub fn verify(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    keys: &[IamKey],
    now: SystemTime,
) -> Result<Verified, Rejection> {
    let query_pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let presigned = query_pairs
        .iter()
        .any(|(name, _)| name == "X-Amz-Algorithm");
    let claimed = if presigned {
        from_query(&query_pairs)?
    } else {
        from_headers(headers)?
    };
    if claimed.service != SERVICE {
        return Err(Rejection::WrongService);
    }
    if !claimed.date.starts_with(&claimed.scope_date) {
        return Err(Rejection::Malformed(
            "SigV4: the credential's date is not the signing date",
        ));
    }
    let signed_at = parse_amz_date(&claimed.date).ok_or(Rejection::Malformed(
        "SigV4: X-Amz-Date is not yyyyMMddTHHmmssZ",
    ))?;
    let earliest = signed_at.checked_sub(MAX_CLOCK_SKEW).unwrap_or(signed_at);
    let latest = signed_at + claimed.expires.map_or(MAX_CLOCK_SKEW, Duration::from_secs);
    if now < earliest || now > latest {
        return Err(Rejection::Expired);
    }
    let key = keys
        .iter()
        .find(|key| key.access_key_id == claimed.access_key_id)
        .ok_or(Rejection::UnknownKey)?;
    if !claimed.signed_headers.iter().any(|name| name == "host") {
        return Err(Rejection::Malformed("SigV4: `host` is not a signed header"));
    }

    // What the client signed: the headers it lists, as received.
    let mut signed_headers: Vec<(&str, &str)> = Vec::new();
    for name in &claimed.signed_headers {
        let values = headers.get_all(name.as_str());
        let mut any = false;
        for value in values {
            let value = value
                .to_str()
                .map_err(|_| Rejection::Malformed("SigV4: a signed header is not text"))?;
            signed_headers.push((name.as_str(), value));
            any = true;
        }
        if !any {
            return Err(Rejection::Malformed("SigV4: a signed header is missing"));
        }
    }
    let path = uri.path();
    let signed_uri = if presigned {
        // The query without the signing parameters, as sent.
        let rest: Vec<&str> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|piece| {
                let name = piece.split('=').next().unwrap_or_default();
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                !piece.is_empty() && !SIGNING_PARAMETERS.contains(&name.as_ref())
            })
            .collect();
        if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", rest.join("&"))
        }
    } else {
        uri.path_and_query().map_or(path, |p| p.as_str()).to_owned()
    };

    let identity = aws_credential_types::Credentials::new(
        key.access_key_id.clone(),
        key.secret.expose(),
        claimed.session_token.clone(),
        None,
        "wsprobe-serve",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign exactly what the client listed, whatever it is.
    settings.excluded_headers = Some(Vec::new());
    if let Some(expires) = claimed.expires {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(expires));
    }
    let malformed = |_| Rejection::Malformed("SigV4: the request cannot be canonicalized");
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(&claimed.region)
        .name(SERVICE)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| Rejection::Malformed("SigV4: the credential scope is not usable"))?
        .into();
    let signable = SignableRequest::new(
        method,
        signed_uri,
        signed_headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(malformed)?;
    let (_, expected) = sign(signable, &params).map_err(malformed)?.into_parts();
    if constant_time_equal(expected.as_bytes(), claimed.signature.as_bytes()) {
        Ok(Verified {
            region: claimed.region,
            presigned,
        })
    } else {
        Err(Rejection::Mismatch)
    }
}

fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Signatures are 64 hex digits; a length difference tells nothing about the key.
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
/// and the `X-Amz-Date` / `X-Amz-Security-Token` headers.
fn from_headers(headers: &HeaderMap) -> Result<Claimed, Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization").ok_or(Rejection::Unsigned)?;
    let fields = authorization
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or(Rejection::Unsigned)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", value)) => credential = Some(value),
            Some(("SignedHeaders", value)) => signed_headers = Some(value),
            Some(("Signature", value)) => signature = Some(value),
            _ => {}
        }
    }
    let missing = Rejection::Malformed("SigV4: the Authorization header lacks a part");
    let date = header("x-amz-date").ok_or(Rejection::Malformed("SigV4: X-Amz-Date is missing"))?;
    claimed(
        credential.ok_or(missing)?,
        date,
        signed_headers.ok_or(missing)?,
        signature.ok_or(missing)?,
        header("x-amz-security-token"),
        None,
    )
}

/// The parts of a presigned query string.
fn from_query(pairs: &[(String, String)]) -> Result<Claimed, Rejection> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    };
    let missing = Rejection::Malformed("SigV4: the presigned URL lacks a parameter");
    if get("X-Amz-Algorithm") != Some(ALGORITHM) {
        return Err(Rejection::Malformed(
            "SigV4: the algorithm is not AWS4-HMAC-SHA256",
        ));
    }
    let expires = get("X-Amz-Expires")
        .ok_or(missing)?
        .parse::<u64>()
        .ok()
        .filter(|seconds| (1..=MAX_PRESIGN_EXPIRY).contains(seconds))
        .ok_or(Rejection::Malformed(
            "SigV4: X-Amz-Expires is not 1 to 604800 seconds",
        ))?;
    claimed(
        get("X-Amz-Credential").ok_or(missing)?,
        get("X-Amz-Date").ok_or(missing)?,
        get("X-Amz-SignedHeaders").ok_or(missing)?,
        get("X-Amz-Signature").ok_or(missing)?,
        get("X-Amz-Security-Token"),
        Some(expires),
    )
}

fn claimed(
    credential: &str,
    date: &str,
    signed_headers: &str,
    signature: &str,
    session_token: Option<&str>,
    expires: Option<u64>,
) -> Result<Claimed, Rejection> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, scope_date, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(Rejection::Malformed(
            "SigV4: the credential is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if access_key_id.is_empty() || region.is_empty() || signature.is_empty() {
        return Err(Rejection::Malformed("SigV4: an empty credential part"));
    }
    Ok(Claimed {
        access_key_id: (*access_key_id).to_owned(),
        scope_date: (*scope_date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        date: date.to_owned(),
        signed_headers: signed_headers
            .split(';')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect(),
        signature: signature.to_owned(),
        session_token: session_token.map(str::to_owned),
        expires,
    })
}

/// `20150830T123600Z` → that instant.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .filter(|part| part.iter().all(u8::is_ascii_digit))
            .and_then(|part| std::str::from_utf8(part).ok())
    };
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{Credentials, SignatureMode, Signer};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn keys() -> Vec<IamKey> {
        vec![
            IamKey::parse("AKIDOTHER:other-secret").unwrap(),
            IamKey::parse(&format!("AKIDEXAMPLE:{SECRET}")).unwrap(),
        ]
    }

    fn signer(mode: SignatureMode, secret: &str, token: Option<&str>) -> Signer {
        Signer::new(
            Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new(secret),
                session_token: token.map(Secret::new),
            },
            mode,
        )
        .with_default_region("eu-west-1")
    }

    fn signed(
        mode: SignatureMode,
        secret: &str,
        token: Option<&str>,
        url: &str,
        body: &[u8],
        at: SystemTime,
    ) -> http::Request<()> {
        let mut request = http::Request::post(url)
            .header("host", "127.0.0.1:8080")
            .header("user-agent", "test")
            .body(())
            .unwrap();
        signer(mode, secret, token)
            .sign_at(&mut request, body, at)
            .unwrap();
        request
    }

    fn check(
        request: &http::Request<()>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, Rejection> {
        verify(
            request.method().as_str(),
            request.uri(),
            request.headers(),
            body,
            &keys(),
            now,
        )
    }

    const URL: &str = "http://127.0.0.1:8080/dev/%40connections/R0oXAdfD0kwCH6w%3D?a=1&b=x+y";

    #[test]
    fn what_the_signer_signs_verifies() {
        let now = SystemTime::now();
        for mode in [SignatureMode::Headers, SignatureMode::Query] {
            for token in [None, Some("session/token+=")] {
                let request = signed(mode, SECRET, token, URL, b"hello", now);
                let verified = check(&request, b"hello", now)
                    .unwrap_or_else(|e| panic!("{mode:?} {token:?}: {e:?}"));
                assert_eq!(verified.region, "eu-west-1");
                assert_eq!(verified.presigned, mode == SignatureMode::Query);
            }
        }
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let now = SystemTime::now();
        for mode in [SignatureMode::Headers, SignatureMode::Query] {
            let request = signed(mode, SECRET, Some("tok"), URL, b"hello", now);
            assert_eq!(check(&request, b"hellO", now), Err(Rejection::Mismatch));

            let wrong = signed(mode, "not-the-secret", None, URL, b"", now);
            assert_eq!(check(&wrong, b"", now), Err(Rejection::Mismatch));

            let mut moved = request.clone();
            *moved.uri_mut() = request
                .uri()
                .to_string()
                .replace("/dev/", "/prod/")
                .parse()
                .unwrap();
            assert_eq!(check(&moved, b"hello", now), Err(Rejection::Mismatch));

            let mut other_host = request.clone();
            other_host
                .headers_mut()
                .insert("host", "evil.example".parse().unwrap());
            assert_eq!(check(&other_host, b"hello", now), Err(Rejection::Mismatch));
        }
        // A changed session token (header form).
        let mut request = signed(SignatureMode::Headers, SECRET, Some("tok"), URL, b"", now);
        request
            .headers_mut()
            .insert("x-amz-security-token", "other".parse().unwrap());
        assert_eq!(check(&request, b"", now), Err(Rejection::Mismatch));
    }

    #[test]
    fn times_outside_the_window_are_refused() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        let old = signed(
            SignatureMode::Headers,
            SECRET,
            None,
            URL,
            b"",
            now - 6 * minute,
        );
        assert_eq!(check(&old, b"", now), Err(Rejection::Expired));
        let future = signed(
            SignatureMode::Headers,
            SECRET,
            None,
            URL,
            b"",
            now + 6 * minute,
        );
        assert_eq!(check(&future, b"", now), Err(Rejection::Expired));
        let recent = signed(
            SignatureMode::Headers,
            SECRET,
            None,
            URL,
            b"",
            now - 4 * minute,
        );
        assert!(check(&recent, b"", now).is_ok());
        // Presigned: valid for X-Amz-Expires (300 s) after signing.
        let presigned = signed(
            SignatureMode::Query,
            SECRET,
            None,
            URL,
            b"",
            now - 4 * minute,
        );
        assert!(check(&presigned, b"", now).is_ok());
        let expired = signed(
            SignatureMode::Query,
            SECRET,
            None,
            URL,
            b"",
            now - 6 * minute,
        );
        assert_eq!(check(&expired, b"", now), Err(Rejection::Expired));
    }

    #[test]
    fn unsigned_unknown_and_malformed() {
        let now = SystemTime::now();
        let plain = http::Request::get(URL).body(()).unwrap();
        assert_eq!(check(&plain, b"", now), Err(Rejection::Unsigned));
        let bearer = http::Request::get(URL)
            .header("authorization", "Bearer x")
            .body(())
            .unwrap();
        assert_eq!(check(&bearer, b"", now), Err(Rejection::Unsigned));

        let mut request = signed(SignatureMode::Headers, SECRET, None, URL, b"", now);
        let authorization = request.headers()["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut set = |value: String| {
            request
                .headers_mut()
                .insert("authorization", value.parse().unwrap());
            check(&request, b"", now)
        };
        assert_eq!(
            set(authorization.replace("AKIDEXAMPLE", "AKIDNOBODY")),
            Err(Rejection::UnknownKey)
        );
        assert_eq!(
            set(authorization.replace("execute-api", "s3")),
            Err(Rejection::WrongService)
        );
        assert!(matches!(
            set(authorization.replace("SignedHeaders=host;", "SignedHeaders=")),
            Err(Rejection::Malformed(_))
        ));
        for odd in [
            "host;bad header;x-amz-date",
            "host;x-amz-date;\u{e9}",
            "host;;;x-amz-date;:",
        ] {
            // Refused, whichever way: never a panic.
            assert!(
                set(authorization.replace("host;x-amz-date", odd)).is_err(),
                "{odd}"
            );
        }
        assert!(matches!(
            set("AWS4-HMAC-SHA256 Credential=x".into()),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            set(authorization.replace("Credential=AKIDEXAMPLE/", "Credential=AKIDEXAMPLE/1999")),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn iam_keys_parse_without_echoing() {
        let key = IamKey::parse("AKID:se:cret").unwrap();
        assert_eq!(key.access_key_id, "AKID");
        assert_eq!(key.secret.expose(), "se:cret");
        assert_eq!(format!("{key:?}"), "IamKey(<redacted>)");
        let error = IamKey::parse("justasecretvalue").unwrap_err();
        assert!(!error.contains("justasecretvalue"), "{error}");
        assert!(IamKey::parse("AKID:").is_err());
        assert!(IamKey::parse(":secret").is_err());
    }

    #[test]
    fn amz_dates() {
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        );
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
        assert_eq!(parse_amz_date("2015083OT123600Z"), None);
        assert_eq!(parse_amz_date("é015083OT123600Z"), None);
    }
}
