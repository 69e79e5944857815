//! The ping message and how its echo is read back.
//!
//! A ping is a route-tagged message whose body is one JSON string, a token:
//!
//! ```text
//! {"action":"send","body":"wsp1:7:42:klmnop…"}
//!                          ^^^^ ^ ^^ ^^^^^^^ padding up to --size, a pattern that starts at seq % 64
//!                          tag  connection, sequence
//! ```
//!
//! A string body survives every echo app unchanged (a JSON re-serialization of plain ASCII
//! is the same text), so under `--echo body` the echo is `"wsp1:7:42:…"` (quoted, or bare
//! from an app that echoes text), and under `--echo full` it is the whole message, in
//! whatever key order or spacing the app chose. Decoding finds the token and checks it
//! byte by byte: no JSON parse in the hot path. What is checked is the token (tag,
//! connection, sequence, every padding byte, its length) and, under `full`, that the echo
//! is an object (`{…}`); the other fields of a `full` echo are not compared, which is the
//! price of skipping the parse.
//!
//! Encoding writes into a reused [`BytesMut`]: once the previous ping has been written
//! out, its buffer is reclaimed, so steady-state sends allocate nothing.

use bytes::{BufMut, Bytes, BytesMut};

use wsprobe_core::message::RouteFields;
use wsprobe_core::options::EchoPolicy;

/// Marks a wsprobe ping token (version 1 of the format).
const TAG: &str = "wsp1:";

/// The padding alphabet; 64 bytes, all plain ASCII that JSON never escapes.
const PATTERN: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

/// The largest `--size`: 16 MiB, tungstenite's largest frame, so a ping and its echo
/// each go in one frame.
pub(crate) const MAX_SIZE: u64 = 16 << 20;

/// The largest message a connection accepts from the server when pings are `size`
/// bytes: twice the ping, and never under 64 KiB (an echo app may re-space or wrap the
/// message; gateway error frames are small). Anything larger is not an echo, and reading
/// it whole would let a server make each connection hold up to tungstenite's default of
/// 64 MiB.
pub(crate) fn incoming_limit(size: u64) -> usize {
    const FLOOR: u64 = 64 << 10;
    let size = size.min(MAX_SIZE);
    usize::try_from(size.saturating_mul(2).max(size + FLOOR)).unwrap_or(usize::MAX)
}

/// How pings of one run are written and their echoes read.
#[derive(Clone, Debug)]
pub(crate) struct PingFormat {
    /// `{"action":"ROUTE","body":"wsp1:` with the names JSON-escaped.
    prefix: Vec<u8>,
    /// Wanted size of a whole ping message, in bytes.
    size: usize,
    /// What the echo looks like.
    policy: EchoPolicy,
    /// [`PATTERN`] repeated, long enough to slice any padding from any offset.
    padding_source: Vec<u8>,
}

/// What an incoming text turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// The echo of ping `sequence` sent on `connection`, intact.
    Echo { connection: u64, sequence: u64 },
    /// The echo of ping `sequence` of `connection`, damaged: wrong padding or length.
    Damaged { connection: u64, sequence: u64 },
    /// A ping token, unreadable: bad numbers, wrong shape.
    Corrupted,
    /// No ping token at all (e.g. a gateway error frame); the caller looks closer.
    NotAnEcho,
}

impl Decoded {
    /// The same token, found in a message of the wrong shape: damaged if it was intact.
    fn damaged(self) -> Self {
        match self {
            Self::Echo {
                connection,
                sequence,
            } => Self::Damaged {
                connection,
                sequence,
            },
            other => other,
        }
    }
}

/// The bytes after the padding: the end of the body string and of the message.
const SUFFIX: &[u8] = b"\"}";

impl PingFormat {
    /// What the echo of a ping looks like.
    pub(crate) fn policy(&self) -> EchoPolicy {
        self.policy
    }
    /// The format for pings to `route`, `size` bytes long (never shorter than the
    /// envelope itself), echoed per `policy` (which must not be `off`).
    pub(crate) fn new(route: &str, fields: &RouteFields, size: u64, policy: EchoPolicy) -> Self {
        let json = |text: &str| serde_json::Value::from(text).to_string();
        let prefix = format!(
            "{{{}:{},{}:\"{TAG}",
            json(&fields.route_field),
            json(route),
            json(&fields.body_field)
        )
        .into_bytes();
        // `Plan::from_args` refuses more than MAX_SIZE; the cap keeps this total anyway.
        let size = usize::try_from(size.min(MAX_SIZE)).unwrap_or(usize::MAX);
        let longest_padding = size.saturating_sub(prefix.len());
        let padding_source = PATTERN
            .iter()
            .copied()
            .cycle()
            .take(longest_padding + PATTERN.len())
            .collect();
        Self {
            prefix,
            size,
            policy,
            padding_source,
        }
    }

    /// How much padding ping `sequence` of `connection` carries, so the message is
    /// `size` bytes (or none, when the envelope alone is that long).
    fn padding_len(&self, connection: u64, sequence: u64) -> usize {
        let fixed = self.prefix.len() + digits(connection) + digits(sequence) + 2 + SUFFIX.len();
        self.size
            .saturating_sub(fixed)
            .min(self.padding_source.len() - PATTERN.len())
    }

    /// The padding of ping `sequence` (its length depends on the numbers' digits).
    fn padding(&self, connection: u64, sequence: u64) -> &[u8] {
        // The pattern starts at `sequence % 64`, so a padding echoed for another
        // sequence does not pass for this one's.
        let start = (sequence % PATTERN.len() as u64) as usize;
        &self.padding_source[start..start + self.padding_len(connection, sequence)]
    }

    /// Writes ping `sequence` of `connection` into `buffer` and returns it as one
    /// frozen message; `buffer` keeps its (reclaimable) capacity for the next one.
    pub(crate) fn encode(&self, buffer: &mut BytesMut, connection: u64, sequence: u64) -> Bytes {
        buffer.clear();
        buffer.reserve(self.size.max(self.prefix.len() + 48));
        buffer.put_slice(&self.prefix);
        put_decimal(buffer, connection);
        buffer.put_u8(b':');
        put_decimal(buffer, sequence);
        buffer.put_u8(b':');
        buffer.put_slice(self.padding(connection, sequence));
        buffer.put_slice(SUFFIX);
        buffer.split().freeze()
    }

    /// Reads an incoming text message as the echo of a ping, under the run's policy.
    /// An echo of the wrong shape (a body echo under `--echo full`, a whole message
    /// under `body`, a lone quote) whose token is still readable is *damaged*: it names
    /// the ping it answers, so that ping is not also lost.
    pub(crate) fn decode(&self, text: &str) -> Decoded {
        let bytes = text.as_bytes();
        match self.policy {
            EchoPolicy::Full => {
                let trimmed = text.trim_ascii();
                let Some(at) = text.find("\"wsp1:") else {
                    return Decoded::NotAnEcho;
                };
                let decoded = self.token(&bytes[at + 1..], true);
                if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
                    return decoded.damaged();
                }
                decoded
            }
            // `Off` never reaches here (refused before the run); read it like `body`.
            EchoPolicy::Body | EchoPolicy::Off => {
                let trimmed = text.trim_ascii().as_bytes();
                let (inner, quoted) = match trimmed {
                    [b'"', inner @ .., b'"'] => (inner, true),
                    other => (other, false),
                };
                if !inner.starts_with(TAG.as_bytes()) {
                    let Some(at) = find(trimmed, TAG.as_bytes()) else {
                        return Decoded::NotAnEcho;
                    };
                    // A token inside something else, e.g. the whole message echoed.
                    let in_quotes = at > 0 && trimmed[at - 1] == b'"';
                    return self.token(&trimmed[at..], in_quotes).damaged();
                }
                let decoded = self.token(inner, false);
                // A bare token is fine (an app that echoes text), but a lone quote is not.
                if !quoted && (trimmed.first() == Some(&b'"') || trimmed.last() == Some(&b'"')) {
                    return decoded.damaged();
                }
                decoded
            }
        }
    }

    /// Checks a token that starts with the tag. With `closing_quote`, the token must be
    /// followed by `"` (it sits inside a larger message); otherwise it must end `rest`.
    fn token(&self, rest: &[u8], closing_quote: bool) -> Decoded {
        let rest = &rest[TAG.len()..];
        let Some((connection, rest)) = take_decimal(rest) else {
            return Decoded::Corrupted;
        };
        let Some(rest) = rest.strip_prefix(b":") else {
            return Decoded::Corrupted;
        };
        let Some((sequence, rest)) = take_decimal(rest) else {
            return Decoded::Corrupted;
        };
        let Some(rest) = rest.strip_prefix(b":") else {
            return Decoded::Corrupted;
        };
        let padding = self.padding(connection, sequence);
        let ends_right = rest.strip_prefix(padding).is_some_and(|rest| {
            if closing_quote {
                rest.first() == Some(&b'"')
            } else {
                rest.is_empty()
            }
        });
        if ends_right {
            Decoded::Echo {
                connection,
                sequence,
            }
        } else {
            Decoded::Damaged {
                connection,
                sequence,
            }
        }
    }
}

/// Number of decimal digits of `n`.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Appends `n` in decimal, without going through the formatting machinery.
fn put_decimal(buffer: &mut BytesMut, mut n: u64) {
    let mut scratch = [0u8; 20];
    let mut at = scratch.len();
    loop {
        at -= 1;
        scratch[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buffer.put_slice(&scratch[at..]);
}

/// Reads a canonical decimal (no sign, no leading zero unless it is `0`) that fits a u64.
fn take_decimal(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    if end == 0 || end > 20 || (end > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut value: u64 = 0;
    for &b in &bytes[..end] {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((value, &bytes[end..]))
}

/// First position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(size: u64, policy: EchoPolicy) -> PingFormat {
        PingFormat::new("send", &RouteFields::default(), size, policy)
    }

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn pings_are_route_tagged_json_of_the_asked_size() {
        let ping = format(64, EchoPolicy::Body);
        let mut buffer = BytesMut::new();
        for (connection, sequence) in [(0, 0), (7, 42), (12345, 9_999_999), (1, u64::MAX)] {
            let message = ping.encode(&mut buffer, connection, sequence);
            let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
            assert_eq!(value["action"], "send");
            let body = value["body"].as_str().unwrap();
            assert!(
                body.starts_with(&format!("wsp1:{connection}:{sequence}:")),
                "{body}"
            );
            if sequence != u64::MAX {
                assert_eq!(message.len(), 64, "{}", text(&message));
            }
        }
        let small = format(10, EchoPolicy::Body).encode(&mut buffer, 3, 4);
        assert_eq!(text(&small), r#"{"action":"send","body":"wsp1:3:4:"}"#);
    }

    #[test]
    fn the_incoming_limit_is_near_the_ping_size() {
        assert_eq!(incoming_limit(64), 64 + 65_536);
        assert_eq!(incoming_limit(1 << 20), 2 << 20);
        assert_eq!(incoming_limit(u64::MAX), 32 << 20);
    }

    #[test]
    fn names_are_json_escaped() {
        let fields = RouteFields {
            route_field: "a\"b".into(),
            body_field: "data".into(),
        };
        let ping = PingFormat::new("r\\", &fields, 0, EchoPolicy::Full);
        let message = ping.encode(&mut BytesMut::new(), 1, 2);
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        assert_eq!(value["a\"b"], "r\\");
        assert_eq!(value["data"], "wsp1:1:2:");
        assert_eq!(
            ping.decode(text(&message)),
            Decoded::Echo {
                connection: 1,
                sequence: 2
            }
        );
    }

    #[test]
    fn body_echoes_decode_quoted_or_bare() {
        let ping = format(100, EchoPolicy::Body);
        let message = ping.encode(&mut BytesMut::new(), 3, 77);
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        let body = value["body"].as_str().unwrap();
        let echo = serde_json::Value::from(body).to_string();
        let expected = Decoded::Echo {
            connection: 3,
            sequence: 77,
        };
        assert_eq!(ping.decode(&echo), expected);
        assert_eq!(ping.decode(&format!(" {echo}\n")), expected);
        assert_eq!(ping.decode(body), expected);
    }

    #[test]
    fn full_echoes_decode_in_any_layout() {
        let ping = format(80, EchoPolicy::Full);
        let message = ping.encode(&mut BytesMut::new(), 0, 5);
        let expected = Decoded::Echo {
            connection: 0,
            sequence: 5,
        };
        assert_eq!(ping.decode(text(&message)), expected);
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        let reordered = format!("{{ \"body\" : {}, \"action\": \"send\" }}", value["body"]);
        assert_eq!(ping.decode(&reordered), expected);
    }

    #[test]
    fn damage_is_corruption_and_strangers_are_not_echoes() {
        let ping = format(64, EchoPolicy::Body);
        let message = ping.encode(&mut BytesMut::new(), 2, 10);
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        let body = value["body"].as_str().unwrap().to_owned();
        let quoted = |s: &str| format!("\"{s}\"");
        // One padding byte changed, one dropped, one added.
        let mut changed = body.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = b'!';
        let changed = String::from_utf8(changed).unwrap();
        let damaged = Decoded::Damaged {
            connection: 2,
            sequence: 10,
        };
        // A readable token in a message of the wrong shape is damaged too: it answers
        // its ping, which is then not also lost.
        for bad in [
            quoted(&changed),
            quoted(&body[..body.len() - 1]),
            quoted(&format!("{body}x")),
            format!("\"{body}"),
            format!("[{}]", quoted(&body)),
            String::from_utf8(message.to_vec()).unwrap(),
        ] {
            assert_eq!(ping.decode(&bad), damaged, "{bad}");
        }
        for bad in [
            quoted("wsp1:2:x:"),
            quoted("wsp1:02:10:"),
            quoted("wsp1:2:99999999999999999999999:"),
        ] {
            assert_eq!(ping.decode(&bad), Decoded::Corrupted, "{bad}");
        }
        // Padding of another sequence (same length) does not pass.
        let other = ping.encode(&mut BytesMut::new(), 2, 11);
        let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
        let swapped = body.replacen(":10:", ":11:", 1);
        assert_ne!(other["body"].as_str().unwrap(), swapped);
        assert_eq!(
            ping.decode(&quoted(&swapped)),
            Decoded::Damaged {
                connection: 2,
                sequence: 11
            }
        );

        let error = r#"{"message": "Forbidden", "connectionId":"c=", "requestId":"r="}"#;
        assert_eq!(ping.decode(error), Decoded::NotAnEcho);
        assert_eq!(ping.decode("hello"), Decoded::NotAnEcho);
        assert_eq!(
            format(64, EchoPolicy::Full).decode(error),
            Decoded::NotAnEcho
        );
        assert_eq!(
            format(64, EchoPolicy::Full).decode(&quoted(&body)),
            damaged,
            "a body echo under --echo full"
        );
    }

    #[test]
    fn the_buffer_is_reused() {
        let ping = format(256, EchoPolicy::Body);
        let mut buffer = BytesMut::new();
        let first = ping.encode(&mut buffer, 1, 1);
        let first_address = first.as_ptr();
        drop(first);
        let second = ping.encode(&mut buffer, 1, 2);
        assert_eq!(
            second.as_ptr(),
            first_address,
            "the allocation was reclaimed"
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(u64::MAX), 20);
        assert_eq!(take_decimal(b"0:"), Some((0, &b":"[..])));
        assert_eq!(
            take_decimal(b"18446744073709551615"),
            Some((u64::MAX, &b""[..]))
        );
        assert_eq!(take_decimal(b"18446744073709551616"), None);
        assert_eq!(take_decimal(b":"), None);
    }
}
