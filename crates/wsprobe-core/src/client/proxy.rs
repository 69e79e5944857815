//! HTTP proxies, as curl and most tools take them from the environment: `https_proxy` for
//! `wss://`, `http_proxy` for `ws://`, `all_proxy` for both (upper-case names too), and
//! `no_proxy` for hosts to reach directly. The connection goes through an HTTP `CONNECT`
//! tunnel; TLS and the WebSocket handshake then run inside it, end to end.
//!
//! Loopback hosts (`localhost`, `127.0.0.1`, `::1`) are always reached directly, so a
//! proxy set for the outside world never stands between wsprobe and a local server.

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::{Host, Url};

use super::ConnectError;
use crate::secret::Secret;

/// Largest proxy response head we read; a real one is a few hundred bytes.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// An HTTP proxy to tunnel through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyServer {
    /// Host name or address of the proxy.
    pub host: String,
    /// Its port (default 1080 for a URL without one, as curl does).
    pub port: u16,
    /// `user:password` for `Proxy-Authorization: Basic`, from the proxy URL.
    pub credentials: Option<Secret>,
}

impl ProxyServer {
    /// Parses `http://[user:pass@]host[:port]` (a bare `host:port` is taken as http).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|e| format!("`{}` is not a proxy URL: {e}", redact_userinfo(text)))?;
        if url.scheme() != "http" {
            return Err(format!(
                "`{}`: only http:// proxies are supported (HTTP CONNECT)",
                redact_userinfo(text)
            ));
        }
        let host = match url.host() {
            Some(Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            // Kept without brackets: it is joined with the port where it is used.
            Some(Host::Ipv6(ip)) => ip.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            _ => return Err(format!("`{}` has no host", redact_userinfo(text))),
        };
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |part: &str| {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Secret::new(format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or_default())
            ))
        });
        Ok(Self {
            host,
            port: url.port().unwrap_or(1080),
            credentials,
        })
    }

    /// `host:port` of the proxy, for messages (never with credentials).
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// Which proxy, if any, each kind of URL goes through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// For `ws://` URLs (`http_proxy`, else `all_proxy`).
    pub plain: Option<ProxyServer>,
    /// For `wss://` URLs (`https_proxy`, else `all_proxy`).
    pub secure: Option<ProxyServer>,
    /// Hosts reached directly (`no_proxy`): a name matches itself and its subdomains
    /// (`example.com` and `.example.com` both match `api.example.com`); `*` matches all.
    pub no_proxy: Vec<String>,
    /// Reach loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) directly. Always on when
    /// read from the environment.
    pub direct_loopback: bool,
}

impl ProxySettings {
    /// Reads the proxy variables through `lookup` (`std::env::var` in the program; a map
    /// in tests). Returns `None` when no proxy is set, and a warning for each variable
    /// that is set but unusable (such a proxy is ignored rather than failing every run).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Option<Self>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut read = |names: [&str; 2]| -> Option<ProxyServer> {
            let (name, value) = names.iter().find_map(|name| {
                lookup(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })?;
            match ProxyServer::parse(&value) {
                Ok(server) => Some(server),
                Err(why) => {
                    warnings.push(format!("ignoring {name}: {why}"));
                    None
                }
            }
        };
        let all = read(["all_proxy", "ALL_PROXY"]);
        let plain = read(["http_proxy", "HTTP_PROXY"]).or_else(|| all.clone());
        let secure = read(["https_proxy", "HTTPS_PROXY"]).or(all);
        if plain.is_none() && secure.is_none() {
            return (None, warnings);
        }
        let no_proxy = ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|name| lookup(name))
            .map(|list| {
                list.split(',')
                    .map(|entry| entry.trim().to_ascii_lowercase())
                    .filter(|entry| !entry.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        (
            Some(Self {
                plain,
                secure,
                no_proxy,
                direct_loopback: true,
            }),
            warnings,
        )
    }

    /// Every connection through `server`, loopback hosts included (`--proxy URL`: the
    /// user named the proxy, so it applies to whatever they connect to).
    pub fn everything_through(server: ProxyServer) -> Self {
        Self {
            plain: Some(server.clone()),
            secure: Some(server),
            no_proxy: Vec::new(),
            direct_loopback: false,
        }
    }

    /// The proxy to use for `url`, or `None` to connect directly.
    pub fn for_url(&self, url: &Url) -> Option<&ProxyServer> {
        let proxy = match url.scheme() {
            "wss" => self.secure.as_ref()?,
            _ => self.plain.as_ref()?,
        };
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let direct = (self.direct_loopback && is_loopback(&host)) || self.bypassed(&host);
        (!direct).then_some(proxy)
    }

    fn bypassed(&self, host: &str) -> bool {
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            // `host:port` entries: the port is not compared.
            let entry = match entry.rsplit_once(':') {
                Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
                _ => entry.as_str(),
            };
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            host == entry
                || host
                    .strip_suffix(entry)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn redact_userinfo(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!(
                "{}{}{}",
                &text[..scheme_end + 3],
                crate::secret::REDACTED,
                &text[at..]
            )
        }
        (None, Some(at)) => format!("{}{}", crate::secret::REDACTED, &text[at..]),
        _ => text.to_owned(),
    }
}

/// Asks the proxy on `tcp` to open a tunnel to `host:port` and checks that it did.
pub(crate) async fn open_tunnel(
    tcp: &mut TcpStream,
    proxy: &ProxyServer,
    host: &str,
    port: u16,
) -> Result<(), ConnectError> {
    let failed = |reason: String| ConnectError::Proxy {
        proxy: proxy.address(),
        reason,
    };
    let target = join_host_port(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(credentials.expose().as_bytes());
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| failed(format!("sending CONNECT failed: {e}")))?;

    // Read the response head only: after it, the bytes are the tunnel's. The proxy sends
    // nothing more until we do, so reading in chunks cannot swallow tunnel data.
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(failed("its answer to CONNECT is too long".into()));
        }
        match tcp.read(&mut buffer).await {
            Ok(0) => {
                return Err(failed(
                    "it closed the connection instead of answering CONNECT".into(),
                ));
            }
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(failed(format!("reading its answer failed: {e}"))),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, status) = (parts.next().unwrap_or_default(), parts.next());
    match status.and_then(|s| s.parse::<u16>().ok()) {
        Some(200..=299) if version.starts_with("HTTP/") => Ok(()),
        Some(status) if version.starts_with("HTTP/") => {
            let reason = parts.next().unwrap_or_default().trim();
            Err(failed(format!(
                "it refused the tunnel to {target}: {status} {reason}"
            )))
        }
        _ => Err(failed(format!(
            "its answer to CONNECT is not HTTP: `{}`",
            status_line.chars().take(80).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> (Option<ProxySettings>, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxySettings::from_lookup(|name| vars.get(name).cloned())
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn no_variables_no_proxy() {
        assert_eq!(settings(&[]), (None, vec![]));
        assert_eq!(settings(&[("NO_PROXY", "*")]), (None, vec![]));
    }

    #[test]
    fn schemes_pick_their_variables() {
        let (found, warnings) = settings(&[
            ("https_proxy", "http://u%40x:p%3Aw@secure.proxy:3128"),
            ("HTTP_PROXY", "plain.proxy:8080"),
        ]);
        assert!(warnings.is_empty());
        let found = found.unwrap();
        let secure = found.for_url(&url("wss://api.example.com/dev")).unwrap();
        assert_eq!(secure.address(), "secure.proxy:3128");
        assert_eq!(secure.credentials.as_ref().unwrap().expose(), "u@x:p:w");
        let plain = found.for_url(&url("ws://api.example.com/dev")).unwrap();
        assert_eq!(plain.address(), "plain.proxy:8080");
        assert_eq!(plain.credentials, None);
    }

    #[test]
    fn all_proxy_is_the_fallback() {
        let (found, _) = settings(&[("ALL_PROXY", "http://[::1]:9")]);
        let found = found.unwrap();
        assert_eq!(
            found.for_url(&url("wss://a.example/")).unwrap().address(),
            "[::1]:9"
        );
        assert!(found.for_url(&url("ws://a.example/")).is_some());
    }

    #[test]
    fn loopback_and_no_proxy_hosts_go_direct() {
        let (found, _) = settings(&[
            ("http_proxy", "http://p:1"),
            (
                "no_proxy",
                "internal.example, .corp.example,10.1.2.3,svc.example:8443",
            ),
        ]);
        let found = found.unwrap();
        for direct in [
            "ws://localhost:8080/dev",
            "ws://127.0.0.1/dev",
            "ws://[::1]:9/dev",
            "ws://internal.example/dev",
            "ws://api.internal.example/dev",
            "ws://x.corp.example/dev",
            "ws://10.1.2.3/dev",
            "ws://svc.example/dev",
        ] {
            assert_eq!(found.for_url(&url(direct)), None, "{direct}");
        }
        for proxied in ["ws://example.com/dev", "ws://notinternal.example/dev"] {
            assert!(found.for_url(&url(proxied)).is_some(), "{proxied}");
        }
    }

    #[test]
    fn unusable_proxies_are_ignored_with_a_warning_that_hides_credentials() {
        let (found, warnings) = settings(&[("https_proxy", "socks5://user:hunter2@p:1080")]);
        assert_eq!(found, None);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("only http://"), "{}", warnings[0]);
        assert!(!warnings[0].contains("hunter2"), "{}", warnings[0]);
    }
}
