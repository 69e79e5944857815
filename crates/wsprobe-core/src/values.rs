//! Parsers for the values users type on the command line and in scripts: durations
//! (`500ms`, `10s`, `2m`), sizes (`32KiB`), rates (`100/s`), `Name: value` headers and
//! `KEY=VALUE` pairs. Each returns a message that says what was expected.

use std::time::Duration;

/// A measured duration as people read it at a glance: `0.4 ms`, `12 ms`, `1.25 s`.
pub fn short_duration(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis < 10.0 {
        format!("{millis:.1} ms")
    } else if millis < 1000.0 {
        format!("{millis:.0} ms")
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}

/// Parses a humane duration: `500ms`, `10s`, `2m`, `1h 30m`. A bare number is refused
/// because `5` could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "`{text}` has no unit; write e.g. `{text}s` or `{text}ms`"
        ));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `500ms`, `10s` or `2m`"))
}

/// Parses a size in bytes: `128`, `32KiB`, `1MB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("`{text}` is not a size; write e.g. `512`, `32KiB` or `1MiB`"))
}

/// Parses a rate: `100`, `100/s`, `6000/m`, `2.5/s`. Returns events per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, per_seconds) = match text.split_once('/') {
        None => (text, 1.0),
        Some((number, "s")) => (number, 1.0),
        Some((number, "m")) | Some((number, "min")) => (number, 60.0),
        Some((number, "h")) => (number, 3600.0),
        Some(_) => {
            return Err(format!(
                "`{text}` is not a rate; write e.g. `100/s` or `6000/m`"
            ));
        }
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / per_seconds),
        _ => Err(format!(
            "`{text}` is not a positive rate; write e.g. `100/s`"
        )),
    }
}

/// A handshake header given as `Name: value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Parses `Name: value`, checking that the name is a valid HTTP token.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!(
            "`{text}` is not a header; write it as `Name: value`"
        ));
    };
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name {
        return Err(format!("`{name}` is not a valid header name"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "the value of header `{name}` contains a line break"
        ));
    }
    Ok(Header {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// Parses `KEY=VALUE`; the value may be empty and may contain `=`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(Duration::from_micros(420)), "0.4 ms");
        assert_eq!(short_duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(short_duration(Duration::from_millis(1250)), "1.25 s");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").unwrap_err().contains("`5s`"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128"), Ok(128));
        assert_eq!(parse_size("32KiB"), Ok(32 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(parse_size("big").unwrap_err().contains("not a size"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100"), Ok(100.0));
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("6000/m"), Ok(100.0));
        assert_eq!(parse_rate("2.5/s"), Ok(2.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("10/fortnight").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Api-Key:  abc: def "),
            Ok(Header {
                name: "X-Api-Key".into(),
                value: "abc: def".into()
            })
        );
        assert_eq!(parse_header("X-Empty:").map(|h| h.value), Ok(String::new()));
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("Name: value")
        );
        assert!(
            parse_header("Bad Name: x")
                .unwrap_err()
                .contains("not a valid header name")
        );
        assert!(parse_header(": x").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_key_value("A="), Ok(("A".into(), String::new())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }
}
