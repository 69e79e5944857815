//! The `@connections` API calls of a script (`post`, `get`, `delete`): one HTTP/1.1
//! request per call over a fresh tokio `TcpStream` (`http://`), or through rustls with the
//! client's TLS configuration (`https://`). A dozen lines of HTTP do not justify an HTTP
//! client crate: the request is fixed-shape and the response is read to its end
//! (`Content-Length`, chunked, or until the server closes).
//!
//! The real API Gateway wants these calls signed with SigV4; `wsprobe serve` does not.
//! Signing is not implemented, so against AWS the calls get 403.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// Largest response body kept (the rest is dropped): a GET answer is a few hundred bytes.
const MAX_BODY: usize = 1024 * 1024;

/// An HTTP method of the `@connections` API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Send a message to the connection.
    Post,
    /// Read the connection's details.
    Get,
    /// Disconnect the client.
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        }
    }
}

/// The answer to a management call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

/// Why a management call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// The URL is not `http://` or `https://`, or has no host.
    #[error("invalid @connections URL `{0}`")]
    InvalidUrl(String),
    /// Connecting, TLS, writing or reading failed.
    #[error("{method} {url} failed: {reason}")]
    Io {
        /// The method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No complete answer within the timeout.
    #[error("{method} {url} got no answer within {}", humantime::format_duration(*after))]
    Timeout {
        /// The method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The answer is not HTTP/1.1.
    #[error("{method} {url}: the answer is not HTTP: {reason}")]
    Malformed {
        /// The method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `base/{id}`, with the id percent-encoded as one path segment.
pub fn connection_url(base: &Url, connection_id: &str) -> Result<Url, ManagementError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ManagementError::InvalidUrl(base.to_string()))?
        .pop_if_empty()
        .push(connection_id);
    Ok(url)
}

/// Calls `method url` with `body` (POST only), within `timeout` for the whole exchange.
pub async fn call(
    method: Method,
    url: &Url,
    body: Option<&[u8]>,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Response, ManagementError> {
    let shown = url.to_string();
    let exchange = exchange(method, url, body, tls);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ManagementError::Timeout {
            method: method.as_str(),
            url: shown,
            after: timeout,
        }),
    }
}

async fn exchange(
    method: Method,
    url: &Url,
    body: Option<&[u8]>,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Response, ManagementError> {
    let secure = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(ManagementError::InvalidUrl(url.to_string())),
    };
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| ManagementError::InvalidUrl(url.to_string()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| ManagementError::InvalidUrl(url.to_string()))?;
    let io_error = |reason: String| ManagementError::Io {
        method: method.as_str(),
        url: url.to_string(),
        reason,
    };
    // `host_str` keeps IPv6 brackets, which a socket address does not want.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| io_error(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let request = build_request(method, url, host, body);
    let raw = if secure {
        let name = rustls::pki_types::ServerName::try_from(connect_host.to_owned())
            .map_err(|e| io_error(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| io_error(format!("TLS: {e}")))?;
        send_and_read(stream, &request).await
    } else {
        send_and_read(tcp, &request).await
    }
    .map_err(|e| io_error(e.to_string()))?;
    parse_response(&raw).map_err(|reason| ManagementError::Malformed {
        method: method.as_str(),
        url: url.to_string(),
        reason,
    })
}

fn build_request(method: Method, url: &Url, host: &str, body: Option<&[u8]>) -> Vec<u8> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let mut request = format!(
        "{} {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: wsprobe/{}\r\nConnection: close\r\n",
        method.as_str(),
        env!("CARGO_PKG_VERSION")
    );
    if method == Method::Post {
        let length = body.map_or(0, <[u8]>::len);
        request.push_str(&format!("Content-Length: {length}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    if method == Method::Post {
        bytes.extend_from_slice(body.unwrap_or_default());
    }
    bytes
}

/// Writes the request, then reads until the server closes (the request says
/// `Connection: close`), keeping at most [`MAX_BODY`] bytes beyond the head.
async fn send_and_read<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(read) => read,
            // A TLS server that closes without close_notify: the answer is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..read]);
        if complete(&raw) || raw.len() > MAX_BODY + 64 * 1024 {
            break;
        }
    }
    Ok(raw)
}

/// Whether `raw` holds a whole response per its `Content-Length` (so a server that keeps
/// the connection open despite `Connection: close` does not make us wait).
fn complete(raw: &[u8]) -> bool {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status_has_no_body = head
        .split(' ')
        .nth(1)
        .is_some_and(|status| status == "204" || status == "304");
    if status_has_no_body {
        return true;
    }
    content_length(&head).is_some_and(|length| raw.len() >= head_end + 4 + length)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn is_chunked(head: &str) -> bool {
    head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Parses a whole HTTP/1.1 response: status line, headers, and a body framed by
/// `Content-Length`, chunked encoding, or the end of the stream.
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("the answer ends before its headers do")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unexpected status line `{status_line}`"));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("unexpected status line `{status_line}`"))?;
    let rest = &raw[head_end + 4..];
    let body = if is_chunked(&head) {
        dechunk(rest)?
    } else if let Some(length) = content_length(&head) {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    let body = &body[..body.len().min(MAX_BODY)];
    Ok(Response {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("a chunk size line is cut short")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("a chunk is cut short")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_urls_encode_the_id_as_one_segment() {
        let base = Url::parse("http://127.0.0.1:9/dev/@connections").unwrap();
        assert_eq!(
            connection_url(&base, "ab=/c").unwrap().as_str(),
            "http://127.0.0.1:9/dev/@connections/ab=%2Fc"
        );
        let slash = Url::parse("http://h/dev/@connections/").unwrap();
        assert_eq!(
            connection_url(&slash, "x").unwrap().as_str(),
            "http://h/dev/@connections/x"
        );
    }

    #[test]
    fn requests_carry_host_length_and_body() {
        let url = Url::parse("http://127.0.0.1:8080/dev/@connections/abc").unwrap();
        let request = build_request(Method::Post, &url, "127.0.0.1", Some(b"{\"a\":1}"));
        let text = String::from_utf8(request).unwrap();
        assert!(
            text.starts_with("POST /dev/@connections/abc HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"a\":1}"));
        let get = String::from_utf8(build_request(Method::Get, &url, "127.0.0.1", None)).unwrap();
        assert!(!get.contains("Content-Length"));
    }

    #[test]
    fn responses_by_length_chunks_and_end_of_stream() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
        assert_eq!(
            parse_response(by_length).unwrap(),
            Response {
                status: 200,
                body: "ok".into()
            }
        );
        assert!(complete(by_length));
        let chunked = b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap().body, "abcde");
        let to_end = b"HTTP/1.0 204 No Content\r\n\r\n";
        assert_eq!(parse_response(to_end).unwrap().status, 204);
        assert!(complete(to_end));
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200").is_err());
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"));
    }
}
