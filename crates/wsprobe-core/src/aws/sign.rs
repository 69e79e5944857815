//! Signing requests for service `execute-api` with the `aws-sigv4` crate: the WebSocket
//! upgrade of `connect`, `run` and `load`, and `@connections` calls.
//!
//! Only `host` is signed (plus `x-amz-date` and the session token, which the signer adds):
//! the other upgrade headers are hop-by-hop or chosen per connection, and a proxy or CDN
//! in front of a stage may rewrite them. The payload is hashed (not `UNSIGNED-PAYLOAD`),
//! as the SDKs do for `execute-api`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningParams, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use http::{HeaderValue, Request, Uri, header};

use super::credentials::{self, Credentials, Source};
use super::{SERVICE, region_of_host};

/// Where the signature goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureMode {
    /// `Authorization`, `X-Amz-Date`, `X-Amz-Security-Token` headers (`--sigv4`).
    Headers,
    /// A presigned URL: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
    /// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` and
    /// `X-Amz-Security-Token` query parameters (`--sigv4-query`), as browsers must.
    Query,
}

/// How long a presigned URL stays valid: it is used at once, so a few minutes cover clock
/// skew and slow networks.
pub const PRESIGN_EXPIRY: Duration = Duration::from_secs(300);

/// Signs requests with one set of credentials. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Signer {
    credentials: Arc<Credentials>,
    /// Where the credentials came from (for messages).
    source: Source,
    /// `--region`.
    region: Option<String>,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's `region`: used when neither
    /// `--region` nor the host names one.
    default_region: Option<String>,
    mode: SignatureMode,
    /// `X-Amz-Expires` of presigned URLs.
    expiry: Duration,
}

/// Why a request could not be signed. Holds no key and no signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Nothing says which region the stage is in.
    #[error(
        "cannot tell the AWS region of `{host}` for SigV4: pass --region REGION, or set AWS_REGION (or `region` in the profile)"
    )]
    NoRegion {
        /// The host of the request.
        host: String,
    },
    /// The request cannot be signed (a header or URL the signer refuses).
    #[error("cannot sign the request: {0}")]
    Invalid(String),
}

impl Signer {
    /// A signer with these credentials; the region comes from the host, else from
    /// `default_region`.
    pub fn new(credentials: Credentials, mode: SignatureMode) -> Self {
        Self {
            credentials: Arc::new(credentials),
            source: Source::Environment,
            region: None,
            default_region: None,
            mode,
            expiry: PRESIGN_EXPIRY,
        }
    }

    /// Reads credentials from the standard places (see [`credentials`]) for `options`.
    pub fn from_options(
        options: &crate::options::SigningChoice,
    ) -> Result<Self, credentials::CredentialsError> {
        let loaded = credentials::load_from_environment(options.profile.as_deref())?;
        Ok(Self {
            source: loaded.source,
            default_region: loaded.default_region,
            region: options.region.clone(),
            ..Self::new(
                loaded.credentials,
                if options.query {
                    SignatureMode::Query
                } else {
                    SignatureMode::Headers
                },
            )
        })
    }

    /// Uses `region` whatever the host says (`--region`).
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Uses `region` when the host names none.
    pub fn with_default_region(mut self, region: impl Into<String>) -> Self {
        self.default_region = Some(region.into());
        self
    }

    /// Presigned URLs expire after `expiry` (default [`PRESIGN_EXPIRY`]).
    pub fn with_expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// Headers or query string.
    pub fn mode(&self) -> SignatureMode {
        self.mode
    }

    /// Where the credentials came from, for messages.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The region requests to `host` are signed for: `--region`, else the one an
    /// `execute-api` host names, else the default region.
    pub fn region_for(&self, host: &str) -> Result<String, SignError> {
        self.region
            .clone()
            .or_else(|| region_of_host(host).map(str::to_owned))
            .or_else(|| self.default_region.clone())
            .ok_or_else(|| SignError::NoRegion {
                host: host.to_owned(),
            })
    }

    /// Signs `request` (whose body is `body`) now: adds the signature headers, or the
    /// presigning query parameters to its URI.
    pub fn sign<B>(&self, request: &mut Request<B>, body: &[u8]) -> Result<(), SignError> {
        self.sign_at(request, body, SystemTime::now())
    }

    /// [`Signer::sign`] as if the time were `time` (tests sign in the past with it).
    pub fn sign_at<B>(
        &self,
        request: &mut Request<B>,
        body: &[u8],
        time: SystemTime,
    ) -> Result<(), SignError> {
        let invalid = |e: &dyn std::fmt::Display| SignError::Invalid(e.to_string());
        let host = host_of(request)
            .ok_or_else(|| SignError::Invalid("the request names no host to sign".to_owned()))?;
        let region_host = request
            .uri()
            .host()
            .map_or_else(|| host.clone(), str::to_owned);
        let region = self.region_for(&region_host)?;

        let identity = aws_credential_types::Credentials::new(
            self.credentials.access_key_id.clone(),
            self.credentials.secret_access_key.expose(),
            self.credentials
                .session_token
                .as_ref()
                .map(|token| token.expose().to_owned()),
            None,
            "wsprobe",
        )
        .into();
        let mut settings = SigningSettings::default();
        if self.mode == SignatureMode::Query {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(self.expiry);
        }
        let params: SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name(SERVICE)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| invalid(&e))?
            .into();
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let signable = SignableRequest::new(
            request.method().as_str(),
            Cow::Borrowed(path_and_query.as_str()),
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| invalid(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| invalid(&e))?
            .into_parts();
        let (headers, query) = instructions.into_parts();
        for signed in headers {
            let mut value = HeaderValue::from_str(signed.value()).map_err(|e| invalid(&e))?;
            value.set_sensitive(signed.sensitive() || signed.name() == "authorization");
            request.headers_mut().insert(signed.name(), value);
        }
        if !query.is_empty() {
            let uri = request.uri().to_string();
            let mut presigned = uri.clone();
            let mut separator = if request.uri().query().is_some() {
                '&'
            } else {
                '?'
            };
            for (name, value) in query {
                presigned.push(separator);
                presigned.push_str(name);
                presigned.push('=');
                presigned.push_str(&super::uri_encode(&value));
                separator = '&';
            }
            *request.uri_mut() = presigned.parse::<Uri>().map_err(|e| invalid(&e))?;
        }
        Ok(())
    }
}

/// The `Host` the request will carry: its header, else its URI's authority without a
/// default port (as HTTP clients send it).
fn host_of<B>(request: &Request<B>) -> Option<String> {
    if let Some(value) = request.headers().get(header::HOST) {
        return value.to_str().ok().map(str::to_owned);
    }
    let uri = request.uri();
    let host = uri.host()?;
    let default_port = match uri.scheme_str() {
        Some("https" | "wss") => Some(443),
        Some("http" | "ws") => Some(80),
        _ => None,
    };
    Some(match uri.port_u16() {
        Some(port) if Some(port) != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn signer(mode: SignatureMode, token: Option<&str>) -> Signer {
        Signer::new(
            Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: token.map(Secret::new),
            },
            mode,
        )
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn header_signatures_are_sigv4_for_execute_api() {
        let mut request = Request::get("wss://abc123.execute-api.eu-west-1.amazonaws.com/dev")
            .body(())
            .unwrap();
        // 2015-08-30T12:36:00Z, the date of AWS's own SigV4 examples.
        signer(SignatureMode::Headers, Some("the-token"))
            .sign_at(&mut request, b"", at(1_440_938_160))
            .unwrap();
        let header = |name: &str| request.headers().get(name).unwrap().to_str().unwrap();
        let authorization = header("authorization");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/execute-api/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{authorization}"
        );
        assert_eq!(header("x-amz-date"), "20150830T123600Z");
        assert_eq!(header("x-amz-security-token"), "the-token");
        assert!(
            request
                .headers()
                .get("authorization")
                .unwrap()
                .is_sensitive()
        );
        assert_eq!(request.uri().query(), None);
    }

    /// The signature in `request` (header or query form).
    fn signature_of<B>(request: &Request<B>) -> String {
        let text = match request.headers().get("authorization") {
            Some(value) => value.to_str().unwrap().to_owned(),
            None => request.uri().query().unwrap().to_owned(),
        };
        let start = text.find("Signature=").unwrap() + "Signature=".len();
        text[start..start + 64].to_owned()
    }

    /// Signatures computed independently of aws-sigv4 (by a few lines of Python with
    /// hashlib/hmac, following AWS's SigV4 documentation for a non-S3 service: paths
    /// encoded twice, the payload hashed), so that what this module asks of the crate is
    /// what AWS computes.
    #[test]
    fn signatures_match_an_independent_computation() {
        let host = "abc123.execute-api.eu-west-1.amazonaws.com";
        let time = at(1_440_938_160);

        let mut upgrade = Request::get(format!("wss://{host}/dev")).body(()).unwrap();
        signer(SignatureMode::Headers, Some("the-token"))
            .sign_at(&mut upgrade, b"", time)
            .unwrap();
        assert_eq!(
            signature_of(&upgrade),
            "2fce5274fa2f42fc81bfe73b125df161f98795ccb04a0234987c673b75d28e13"
        );

        let mut presigned = Request::get(format!("wss://{host}/dev?room=7"))
            .body(())
            .unwrap();
        signer(SignatureMode::Query, Some("the-token"))
            .sign_at(&mut presigned, b"", time)
            .unwrap();
        assert_eq!(
            signature_of(&presigned),
            "2c883a72ce3c4ae7843f8f15cf643e4d46b75d207972f98915a12fe6e2f10c00"
        );

        let mut post = Request::post(format!(
            "https://{host}/dev/@connections/R0oXAdfD0kwCH6w%3D"
        ))
        .body(())
        .unwrap();
        signer(SignatureMode::Headers, None)
            .sign_at(&mut post, b"hello", time)
            .unwrap();
        assert_eq!(
            signature_of(&post),
            "455f78e6b0facd5b88b83fbfcb6eca0ff28c6e7a7105663a04f036c3478adcb0"
        );
    }

    #[test]
    fn presigned_urls_carry_everything_in_the_query() {
        let mut request = Request::get("ws://127.0.0.1:9/dev?room=7")
            .body(())
            .unwrap();
        signer(SignatureMode::Query, Some("to+k/en="))
            .with_region("us-east-1")
            .sign_at(&mut request, b"", at(1_440_938_160))
            .unwrap();
        let query = request.uri().query().unwrap();
        assert!(query.starts_with("room=7&"), "{query}");
        for expected in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fexecute-api%2Faws4_request",
            "X-Amz-Date=20150830T123600Z",
            "X-Amz-Expires=300",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=to%2Bk%2Fen%3D",
            "X-Amz-Signature=",
        ] {
            assert!(query.contains(expected), "{expected} not in {query}");
        }
        assert!(request.headers().get("authorization").is_none());
    }

    #[test]
    fn regions_come_from_the_flag_the_host_then_the_default() {
        let plain = signer(SignatureMode::Headers, None);
        assert_eq!(
            plain.region_for("abc.execute-api.ap-south-1.amazonaws.com"),
            Ok("ap-south-1".into())
        );
        assert!(matches!(
            plain.region_for("127.0.0.1"),
            Err(SignError::NoRegion { .. })
        ));
        let message = plain.region_for("example.com").unwrap_err().to_string();
        assert!(message.contains("--region"), "{message}");
        let with_default = plain.clone().with_default_region("us-west-2");
        assert_eq!(with_default.region_for("127.0.0.1"), Ok("us-west-2".into()));
        assert_eq!(
            with_default.region_for("abc.execute-api.ap-south-1.amazonaws.com"),
            Ok("ap-south-1".into())
        );
        let flagged = with_default.with_region("eu-north-1");
        assert_eq!(
            flagged.region_for("abc.execute-api.ap-south-1.amazonaws.com"),
            Ok("eu-north-1".into())
        );
    }

    #[test]
    fn the_host_header_wins_over_the_uri() {
        let request = Request::get("ws://127.0.0.1:80/dev")
            .header("host", "stage.example:8443")
            .body(())
            .unwrap();
        assert_eq!(host_of(&request).as_deref(), Some("stage.example:8443"));
        let request = Request::get("https://h:443/x").body(()).unwrap();
        assert_eq!(host_of(&request).as_deref(), Some("h"));
        let request = Request::get("http://h:8080/x").body(()).unwrap();
        assert_eq!(host_of(&request).as_deref(), Some("h:8080"));
    }
}
