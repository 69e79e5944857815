//! AWS credentials from the standard places, without the AWS SDK's `aws-config` (which
//! brings an HTTP stack, SSO and STS: a long build for what is, here, reading two small
//! files and three variables).
//!
//! Precedence, as the AWS CLI and SDKs have it:
//! 1. `--profile NAME` given: that profile of the shared files (the key variables are
//!    ignored, as an explicit choice wins).
//! 2. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`).
//! 3. The profile `AWS_PROFILE` names, else `default`, of the shared files.
//!
//! The shared files are `~/.aws/credentials` (`[NAME]` sections) and `~/.aws/config`
//! (`[profile NAME]`, and `[default]`); `AWS_SHARED_CREDENTIALS_FILE` and
//! `AWS_CONFIG_FILE` move them. Keys in the credentials file win over keys in the config
//! file. Profiles that get their keys some other way (`role_arn`, `sso_*`,
//! `credential_process`, …) are refused with a way out (`aws configure
//! export-credentials`), as resolving them needs the network.
//!
//! The default region comes from `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's
//! `region` in the config file. Errors name the profile and the files, never a key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::ini;
use crate::secret::Secret;

/// One set of AWS credentials. `Debug` shows none of it.
#[derive(Clone)]
pub struct Credentials {
    /// `AKIA…` or `ASIA…`: names the key. Not printed either, as users treat it as private.
    pub access_key_id: String,
    /// The secret the signature is made with.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials, sent with every signed request.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &crate::secret::REDACTED)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

/// Where credentials were found, for messages (`--sigv4` says what it signs with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    Environment,
    /// A profile of a shared file.
    Profile {
        /// The profile name.
        name: String,
        /// The file the keys were read from.
        file: PathBuf,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("the AWS_ACCESS_KEY_ID environment variables"),
            Self::Profile { name, file } => {
                write!(f, "profile `{name}` of {}", file.display())
            }
        }
    }
}

/// What [`load`] found.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The keys.
    pub credentials: Credentials,
    /// Where they came from.
    pub source: Source,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's `region`, if any.
    pub default_region: Option<String>,
}

/// Why no credentials could be had. No variant holds a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing anywhere.
    #[error(
        "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and profile `{profile}` is in neither {} nor {}",
        credentials_file.display(),
        config_file.display()
    )]
    NotFound {
        profile: String,
        credentials_file: PathBuf,
        config_file: PathBuf,
    },
    /// `--profile NAME` (or `AWS_PROFILE`) names a profile no file has.
    #[error("AWS profile `{profile}` is in neither {} nor {}", credentials_file.display(), config_file.display())]
    NoSuchProfile {
        profile: String,
        credentials_file: PathBuf,
        config_file: PathBuf,
    },
    /// The profile has one key but not the other.
    #[error("AWS profile `{profile}` in {} has no {missing}", file.display())]
    Incomplete {
        profile: String,
        file: PathBuf,
        missing: &'static str,
    },
    /// The profile gets its keys in a way that needs the AWS SDK (role, SSO, process).
    #[error(
        "AWS profile `{profile}` in {} gets its credentials through `{mechanism}`, which wsprobe does not resolve; \
         export them first: eval \"$(aws configure export-credentials --profile {profile} --format env)\"",
        file.display()
    )]
    Unsupported {
        profile: String,
        file: PathBuf,
        mechanism: String,
    },
    /// One of the two key variables is set without the other.
    #[error("{set} is set but {missing} is not")]
    HalfEnvironment {
        set: &'static str,
        missing: &'static str,
    },
    /// A shared file exists but cannot be read.
    #[error("cannot read {}: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    /// A shared file is not INI.
    #[error("{}: {source}", file.display())]
    Malformed {
        file: PathBuf,
        source: ini::IniError,
    },
    /// No home directory to find `~/.aws` in, and no variable naming the files.
    #[error(
        "cannot find the home directory (for ~/.aws/credentials); set HOME or AWS_SHARED_CREDENTIALS_FILE"
    )]
    NoHome,
}

/// Loads credentials from the process environment and the user's home directory.
pub fn load_from_environment(profile_flag: Option<&str>) -> Result<Loaded, CredentialsError> {
    load(
        profile_flag,
        &|name| std::env::var(name).ok(),
        dirs::home_dir().as_deref(),
    )
}

/// Loads credentials with `lookup` standing for the environment and `home` for the home
/// directory (so tests need not touch the real ones).
pub fn load(
    profile_flag: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Loaded, CredentialsError> {
    let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    let env_region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
    let profile_name = profile_flag
        .map(str::to_owned)
        .or_else(|| var("AWS_PROFILE"))
        .or_else(|| var("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());

    if profile_flag.is_none() {
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret)) => {
                let credentials = Credentials {
                    access_key_id,
                    secret_access_key: Secret::new(secret),
                    session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
                };
                // The region may still come from the profile's config.
                let default_region = match env_region {
                    Some(region) => Some(region),
                    None => SharedFiles::locate(lookup, home)
                        .ok()
                        .and_then(|files| files.read().ok())
                        .and_then(|profiles| profiles.region(&profile_name)),
                };
                return Ok(Loaded {
                    credentials,
                    source: Source::Environment,
                    default_region,
                });
            }
            (Some(_), None) => {
                return Err(CredentialsError::HalfEnvironment {
                    set: "AWS_ACCESS_KEY_ID",
                    missing: "AWS_SECRET_ACCESS_KEY",
                });
            }
            (None, Some(_)) => {
                return Err(CredentialsError::HalfEnvironment {
                    set: "AWS_SECRET_ACCESS_KEY",
                    missing: "AWS_ACCESS_KEY_ID",
                });
            }
            (None, None) => {}
        }
    }

    let files = SharedFiles::locate(lookup, home)?;
    let profiles = files.read()?;
    let (credentials, file) = profiles.credentials(&profile_name)?.ok_or_else(|| {
        let explicit = profile_flag.is_some() || var("AWS_PROFILE").is_some();
        if explicit {
            CredentialsError::NoSuchProfile {
                profile: profile_name.clone(),
                credentials_file: files.credentials.clone(),
                config_file: files.config.clone(),
            }
        } else {
            CredentialsError::NotFound {
                profile: profile_name.clone(),
                credentials_file: files.credentials.clone(),
                config_file: files.config.clone(),
            }
        }
    })?;
    Ok(Loaded {
        credentials,
        source: Source::Profile {
            name: profile_name.clone(),
            file,
        },
        default_region: env_region.or_else(|| profiles.region(&profile_name)),
    })
}

/// Where the two shared files are.
struct SharedFiles {
    credentials: PathBuf,
    config: PathBuf,
}

impl SharedFiles {
    fn locate(
        lookup: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Self, CredentialsError> {
        let path = |variable: &str, default: &str| -> Result<PathBuf, CredentialsError> {
            match lookup(variable).filter(|value| !value.is_empty()) {
                Some(given) => Ok(expand_home(&given, home)),
                None => home
                    .map(|home| home.join(".aws").join(default))
                    .ok_or(CredentialsError::NoHome),
            }
        };
        Ok(Self {
            credentials: path("AWS_SHARED_CREDENTIALS_FILE", "credentials")?,
            config: path("AWS_CONFIG_FILE", "config")?,
        })
    }

    fn read(&self) -> Result<Profiles, CredentialsError> {
        Ok(Profiles {
            credentials: read_sections(&self.credentials)?,
            config: read_sections(&self.config)?,
            credentials_file: self.credentials.clone(),
            config_file: self.config.clone(),
        })
    }
}

/// `~/x` → `HOME/x`, as the AWS tools expand the file variables.
fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The sections of a file; a missing file has none.
fn read_sections(path: &Path) -> Result<Vec<ini::Section>, CredentialsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                file: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    ini::parse(&text).map_err(|source| CredentialsError::Malformed {
        file: path.to_owned(),
        source,
    })
}

/// Both files, parsed.
struct Profiles {
    credentials: Vec<ini::Section>,
    config: Vec<ini::Section>,
    credentials_file: PathBuf,
    config_file: PathBuf,
}

/// Keys that mean "the credentials come from somewhere else".
const INDIRECT_KEYS: [&str; 6] = [
    "role_arn",
    "source_profile",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

impl Profiles {
    /// The `[NAME]` section of the credentials file.
    fn in_credentials(&self, name: &str) -> Option<&ini::Section> {
        self.credentials.iter().rev().find(|s| s.name == name)
    }

    /// The `[profile NAME]` section of the config file (`[default]` for the default).
    fn in_config(&self, name: &str) -> Option<&ini::Section> {
        self.config.iter().rev().find(|section| {
            let words: Vec<&str> = section.name.split_whitespace().collect();
            match words.as_slice() {
                ["profile", profile] => *profile == name,
                [profile] => *profile == name && name == "default",
                _ => false,
            }
        })
    }

    fn region(&self, name: &str) -> Option<String> {
        self.in_config(name)
            .and_then(|section| section.get("region"))
            .filter(|region| !region.is_empty())
            .map(str::to_owned)
    }

    /// The keys of profile `name`: `Ok(None)` when neither file has the profile.
    fn credentials(&self, name: &str) -> Result<Option<(Credentials, PathBuf)>, CredentialsError> {
        let candidates = [
            (self.in_credentials(name), &self.credentials_file),
            (self.in_config(name), &self.config_file),
        ];
        let mut seen_in = None;
        for (section, file) in candidates {
            let Some(section) = section else { continue };
            seen_in.get_or_insert((section, file));
            let key = |k: &str| section.get(k).filter(|v| !v.is_empty());
            match (key("aws_access_key_id"), key("aws_secret_access_key")) {
                (Some(id), Some(secret)) => {
                    let credentials = Credentials {
                        access_key_id: id.to_owned(),
                        secret_access_key: Secret::new(secret),
                        session_token: key("aws_session_token").map(Secret::new),
                    };
                    return Ok(Some((credentials, file.clone())));
                }
                (Some(_), None) => {
                    return Err(CredentialsError::Incomplete {
                        profile: name.to_owned(),
                        file: file.clone(),
                        missing: "aws_secret_access_key",
                    });
                }
                (None, Some(_)) => {
                    return Err(CredentialsError::Incomplete {
                        profile: name.to_owned(),
                        file: file.clone(),
                        missing: "aws_access_key_id",
                    });
                }
                (None, None) => {}
            }
        }
        let Some((_, first_file)) = seen_in else {
            return Ok(None);
        };
        for (section, file) in candidates {
            let Some(section) = section else { continue };
            if let Some(mechanism) = INDIRECT_KEYS
                .iter()
                .find(|k| section.get(k).is_some())
                .or_else(|| {
                    section
                        .entries
                        .iter()
                        .find(|(k, _)| k.starts_with("sso_"))
                        .map(|_| &"sso_start_url")
                })
            {
                return Err(CredentialsError::Unsupported {
                    profile: name.to_owned(),
                    file: file.clone(),
                    mechanism: (*mechanism).to_owned(),
                });
            }
        }
        Err(CredentialsError::Incomplete {
            profile: name.to_owned(),
            file: first_file.clone(),
            missing: "aws_access_key_id and aws_secret_access_key",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fixture {
        dir: tempfile::TempDir,
        vars: HashMap<String, String>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                vars: HashMap::new(),
            }
        }
        fn var(mut self, name: &str, value: &str) -> Self {
            self.vars.insert(name.into(), value.into());
            self
        }
        fn file(self, name: &str, text: &str) -> Self {
            let aws = self.dir.path().join(".aws");
            std::fs::create_dir_all(&aws).unwrap();
            std::fs::write(aws.join(name), text).unwrap();
            self
        }
        fn load(&self, profile: Option<&str>) -> Result<Loaded, CredentialsError> {
            let vars = self.vars.clone();
            load(
                profile,
                &move |n| vars.get(n).cloned(),
                Some(self.dir.path()),
            )
        }
    }

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[dev]
aws_access_key_id = AKIDDEV
aws_secret_access_key = dev-secret
aws_session_token = dev-token
";
    const CONFIG: &str = "\
[default]
region = us-east-1

[profile dev]
region = eu-west-1

[profile from-config]
aws_access_key_id = AKIDCONFIG
aws_secret_access_key = config-secret

[profile role]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = default

[profile sso]
sso_account_id = 123
";

    fn fixture() -> Fixture {
        Fixture::new()
            .file("credentials", CREDENTIALS)
            .file("config", CONFIG)
    }

    #[test]
    fn environment_keys_come_first() {
        let loaded = fixture()
            .var("AWS_ACCESS_KEY_ID", "AKIDENV")
            .var("AWS_SECRET_ACCESS_KEY", "env-secret")
            .var("AWS_SESSION_TOKEN", "env-token")
            .load(None)
            .unwrap();
        assert_eq!(loaded.source, Source::Environment);
        assert_eq!(loaded.credentials.access_key_id, "AKIDENV");
        assert_eq!(loaded.credentials.secret_access_key.expose(), "env-secret");
        assert_eq!(
            loaded
                .credentials
                .session_token
                .as_ref()
                .map(Secret::expose),
            Some("env-token")
        );
        // The region still comes from the default profile's config.
        assert_eq!(loaded.default_region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn an_explicit_profile_beats_the_environment() {
        let loaded = fixture()
            .var("AWS_ACCESS_KEY_ID", "AKIDENV")
            .var("AWS_SECRET_ACCESS_KEY", "env-secret")
            .load(Some("dev"))
            .unwrap();
        assert_eq!(loaded.credentials.access_key_id, "AKIDDEV");
        assert_eq!(
            loaded
                .credentials
                .session_token
                .as_ref()
                .map(Secret::expose),
            Some("dev-token")
        );
        assert_eq!(loaded.default_region.as_deref(), Some("eu-west-1"));
        assert!(matches!(&loaded.source, Source::Profile { name, .. } if name == "dev"));
    }

    #[test]
    fn aws_profile_then_default() {
        let loaded = fixture().var("AWS_PROFILE", "dev").load(None).unwrap();
        assert_eq!(loaded.credentials.access_key_id, "AKIDDEV");
        let loaded = fixture().load(None).unwrap();
        assert_eq!(loaded.credentials.access_key_id, "AKIDDEFAULT");
        assert!(loaded.credentials.session_token.is_none());
        // --profile beats AWS_PROFILE.
        let loaded = fixture()
            .var("AWS_PROFILE", "dev")
            .load(Some("default"))
            .unwrap();
        assert_eq!(loaded.credentials.access_key_id, "AKIDDEFAULT");
    }

    #[test]
    fn region_variables_beat_the_profile() {
        let loaded = fixture()
            .var("AWS_DEFAULT_REGION", "ap-south-1")
            .load(Some("dev"))
            .unwrap();
        assert_eq!(loaded.default_region.as_deref(), Some("ap-south-1"));
        let loaded = fixture()
            .var("AWS_DEFAULT_REGION", "ap-south-1")
            .var("AWS_REGION", "sa-east-1")
            .load(Some("dev"))
            .unwrap();
        assert_eq!(loaded.default_region.as_deref(), Some("sa-east-1"));
    }

    #[test]
    fn keys_in_the_config_file_count() {
        let loaded = fixture().load(Some("from-config")).unwrap();
        assert_eq!(loaded.credentials.access_key_id, "AKIDCONFIG");
        assert!(matches!(&loaded.source, Source::Profile { file, .. } if file.ends_with("config")));
    }

    #[test]
    fn file_variables_move_the_files() {
        let other = tempfile::tempdir().unwrap();
        let path = other.path().join("creds");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id=AKIDMOVED\naws_secret_access_key=s\n",
        )
        .unwrap();
        let loaded = fixture()
            .var("AWS_SHARED_CREDENTIALS_FILE", path.to_str().unwrap())
            .load(None)
            .unwrap();
        assert_eq!(loaded.credentials.access_key_id, "AKIDMOVED");
    }

    #[test]
    fn errors_name_profile_and_files_but_no_key() {
        let error = fixture().load(Some("nope")).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, CredentialsError::NoSuchProfile { .. }));
        assert!(
            message.contains("`nope`") && message.contains(".aws"),
            "{message}"
        );

        let error = Fixture::new().load(None).unwrap_err();
        assert!(
            matches!(error, CredentialsError::NotFound { .. }),
            "{error}"
        );

        let error = fixture().load(Some("role")).unwrap_err();
        assert!(error.to_string().contains("role_arn"), "{error}");
        assert!(error.to_string().contains("export-credentials"), "{error}");
        let error = fixture().load(Some("sso")).unwrap_err();
        assert!(
            matches!(error, CredentialsError::Unsupported { .. }),
            "{error}"
        );

        let half = Fixture::new()
            .file("credentials", "[x]\naws_access_key_id = AKIDHALF\n")
            .load(Some("x"))
            .unwrap_err();
        assert!(!half.to_string().contains("AKIDHALF"), "{half}");
        assert!(half.to_string().contains("aws_secret_access_key"), "{half}");

        let error = Fixture::new()
            .var("AWS_ACCESS_KEY_ID", "AKIDENV")
            .load(None)
            .unwrap_err();
        assert!(matches!(error, CredentialsError::HalfEnvironment { .. }));

        let error = Fixture::new()
            .file("credentials", "[x]\nthe-secret-line\n")
            .load(Some("x"))
            .unwrap_err();
        assert!(!error.to_string().contains("the-secret-line"), "{error}");
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn debug_shows_no_key() {
        let loaded = fixture().load(Some("dev")).unwrap();
        let shown = format!("{loaded:?}");
        for secret in ["AKIDDEV", "dev-secret", "dev-token"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
