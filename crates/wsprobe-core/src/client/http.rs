//! A small HTTP/1.1 client for the `@connections` management API and for `serve`'s
//! Lambda integrations: hyper's connection API over the same DNS, TCP, proxy and TLS
//! stack as WebSocket connections, so `--cacert`, `-k`, proxies and timeouts apply alike.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper_util::rt::TokioIo;
use url::Url;

use super::{ClientConfig, ConnectError, open_transport, redacted_url};

/// The most of a response body kept: management and integration answers are small.
const MAX_BODY: usize = 1024 * 1024;

/// An HTTP response, read whole.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code, e.g. 200 or 410.
    pub status: u16,
    /// The status's canonical reason phrase ("Gone"), or empty.
    pub reason: String,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body (at most 1 MiB).
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as text, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// AWS's error type (`x-amzn-ErrorType: GoneException`), if the response names one.
    pub fn aws_error_type(&self) -> Option<&str> {
        let value = self.headers.get("x-amzn-errortype")?.to_str().ok()?;
        // The header may carry a suffix after a colon (`GoneException:http://…`).
        Some(value.split(':').next().unwrap_or(value))
    }
}

/// Sends one request to `url` (http:// or https://) and reads the whole response, all of it
/// within `config.connect_timeout`. `headers` are sent as given; `Host`, `Content-Length`
/// and `Connection: close` are added.
pub async fn request(
    method: Method,
    url: &Url,
    headers: HeaderMap,
    body: impl Into<Bytes>,
    config: &ClientConfig,
) -> Result<HttpResponse, ConnectError> {
    let started = Instant::now();
    let exchange = exchange(method, url, headers, body.into(), config, started);
    match tokio::time::timeout(config.connect_timeout, exchange).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ConnectError::Timeout {
            url: redacted_url(url),
            after: config.connect_timeout,
        }),
    }
}

async fn exchange(
    method: Method,
    url: &Url,
    headers: HeaderMap,
    body: Bytes,
    config: &ClientConfig,
    started: Instant,
) -> Result<HttpResponse, ConnectError> {
    let failed = |reason: String| ConnectError::Other {
        url: redacted_url(url),
        reason,
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(origin_form(url))
        .body(Full::new(body))
        .map_err(|e| failed(e.to_string()))?;
    *request.headers_mut() = headers;
    let host = host_header(url).map_err(|e| failed(e.to_string()))?;
    let request_headers = request.headers_mut();
    request_headers.insert(header::HOST, host);
    request_headers.insert(header::CONNECTION, HeaderValue::from_static("close"));

    let (transport, _peer) = open_transport(url, config, started).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(transport))
        .await
        .map_err(|e| failed(e.to_string()))?;
    // The connection future drives the socket; it ends when the response is read.
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(format!("the server did not answer: {e}")))?;
    let (head, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| failed(format!("reading the response body: {e}")))?
        .to_bytes();
    driver.abort();
    Ok(HttpResponse {
        status: head.status.as_u16(),
        reason: head.status.canonical_reason().unwrap_or("").to_owned(),
        headers: head.headers,
        body,
    })
}

/// `/path?query` of `url`, as the request target.
fn origin_form(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// `host[:port]`, with the port only when it is not the scheme's default.
fn host_header(url: &Url) -> Result<HeaderValue, header::InvalidHeaderValue> {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
        None => HeaderValue::from_str(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets_and_hosts() {
        let url = Url::parse("http://127.0.0.1:8080/dev/@connections/abc%3D?x=1").unwrap();
        assert_eq!(origin_form(&url), "/dev/@connections/abc%3D?x=1");
        assert_eq!(host_header(&url).unwrap(), "127.0.0.1:8080");
        let url = Url::parse("https://example.invalid/dev").unwrap();
        assert_eq!(origin_form(&url), "/dev");
        assert_eq!(host_header(&url).unwrap(), "example.invalid");
    }
}
