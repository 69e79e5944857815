//! A reader for the INI dialect of the AWS shared files (`~/.aws/credentials`,
//! `~/.aws/config`): `[section]` headers, `key = value` lines, `#` and `;` comment
//! lines, and indented sub-property lines (`s3 =` followed by `  max_concurrent_requests = 10`),
//! which belong to the key above them and are skipped, as no credential lives there.
//!
//! Hand-written rather than a crate: the dialect is tiny, and the parser must never echo a
//! line back in an error (a line may hold a secret key), which a general INI crate's
//! messages do not promise.

/// One `[section]` of a file, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// The text between the brackets, trimmed (`default`, `profile dev`, `dev`).
    pub name: String,
    /// `key = value` pairs: keys lower-cased, both sides trimmed, in file order.
    pub entries: Vec<(String, String)>,
}

impl Section {
    /// The value of `key` (lower-case); the last one wins when a key is repeated.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// A line that is not INI; says where, never what (it may hold a secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is neither `[section]`, `key = value` nor a comment")]
pub struct IniError {
    /// 1-based line number.
    pub line: usize,
}

/// Parses a whole file. Lines before the first section are an error, as the AWS tools
/// treat them.
pub fn parse(text: &str) -> Result<Vec<Section>, IniError> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .split_once(']')
                .map(|(name, _)| name.trim())
                .filter(|name| !name.is_empty())
                .ok_or(IniError { line: line_number })?;
            sections.push(Section {
                name: name.to_owned(),
                entries: Vec::new(),
            });
            continue;
        }
        let section = sections.last_mut().ok_or(IniError { line: line_number })?;
        // An indented line continues the key above it (a nested `s3 =` block).
        if raw.starts_with([' ', '\t']) && !section.entries.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(IniError { line: line_number })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(IniError { line: line_number });
        }
        section
            .entries
            .push((key.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_and_comments() {
        let text = "\
# a comment
[default]
aws_access_key_id = AKIDEFAULT
aws_secret_access_key=secret/with=equals

; another comment
[profile dev]
Region = eu-west-1
s3 =
    max_concurrent_requests = 10
output = json
";
        let sections = parse(text).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].name, "default");
        assert_eq!(sections[0].get("aws_access_key_id"), Some("AKIDEFAULT"));
        assert_eq!(
            sections[0].get("aws_secret_access_key"),
            Some("secret/with=equals")
        );
        assert_eq!(sections[1].name, "profile dev");
        assert_eq!(sections[1].get("region"), Some("eu-west-1"));
        assert_eq!(sections[1].get("max_concurrent_requests"), None);
        assert_eq!(sections[1].get("output"), Some("json"));
        assert_eq!(sections[1].get("s3"), Some(""));
    }

    #[test]
    fn repeated_keys_keep_the_last() {
        let sections = parse("[a]\nk = 1\nk = 2\n").unwrap();
        assert_eq!(sections[0].get("k"), Some("2"));
    }

    #[test]
    fn errors_name_the_line_and_not_its_text() {
        assert_eq!(
            parse("key = before any section\n"),
            Err(IniError { line: 1 })
        );
        assert_eq!(
            parse("[ok]\nno equals sign here\n"),
            Err(IniError { line: 2 })
        );
        assert_eq!(parse("[ok]\n= value\n"), Err(IniError { line: 2 }));
        assert_eq!(parse("[ok]\n[]\n"), Err(IniError { line: 2 }));
        let message = parse("[ok]\nAKIASECRETLINE\n").unwrap_err().to_string();
        assert!(!message.contains("AKIASECRETLINE"), "{message}");
    }

    #[test]
    fn crlf_and_empty_files() {
        let sections = parse("[a]\r\nk = v\r\n").unwrap();
        assert_eq!(sections[0].get("k"), Some("v"));
        assert!(parse("").unwrap().is_empty());
    }
}
