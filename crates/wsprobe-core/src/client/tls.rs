//! TLS for `wss://`: the rustls configuration (platform roots plus `--cacert`, a client
//! certificate for mutual TLS, or no verification at all with `-k`), built once and shared
//! by every connection, and plain-words explanations of TLS failures.
//!
//! A certificate listed in `--cacert` is also trusted as the server's own certificate when
//! the server presents exactly it, even when it is marked `CA:TRUE` (as `openssl req -x509`
//! makes it), which webpki refuses as an end entity; its name and dates are still checked.
//! curl, Python and Node accept such a certificate, and so do we.
//!
//! The files are read and checked up front ([`read_material`]), so a bad `--cacert` is a
//! usage error before anything connects; the configuration itself, with the platform's
//! roots, is built by [`build`] when the first `wss://` connection needs it.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::TlsProblem;

/// Where the TLS trust and identity come from.
#[derive(Debug, Default)]
pub(crate) struct TlsOptions<'a> {
    /// Extra PEM roots (`--cacert`), trusted besides the platform's.
    pub cacert: Option<&'a Path>,
    /// Client certificate chain and key (`--cert`, `--key`) for mutual TLS.
    pub client_identity: Option<(&'a Path, &'a Path)>,
    /// `-k`: accept any server certificate.
    pub insecure: bool,
}

/// The files of a TLS configuration, read and checked: everything but the platform's
/// roots, which [`build`] loads only when a `wss://` connection needs them.
#[derive(Default)]
pub(crate) struct TlsMaterial {
    /// Roots from `--cacert`, trusted besides the platform's.
    extra_roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and key (`--cert`, `--key`), and the certificate's path.
    client_identity: Option<(
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        PathBuf,
    )>,
    /// `-k`: accept any server certificate.
    insecure: bool,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("TlsMaterial")
            .field("extra_roots", &self.extra_roots.len())
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|(_, _, path)| path),
            )
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// Reads the files `options` name and checks that they make a configuration (a bad
/// certificate, a key that does not fit: the errors of [`build`], found now), without
/// loading the platform's roots. Errors name the file at fault and say what is wrong with
/// it, in words fit for the terminal.
pub(crate) fn read_material(options: &TlsOptions<'_>) -> Result<TlsMaterial, String> {
    let extra_roots = match options.cacert {
        Some(path) => {
            let certificates = read_certificates(path)?;
            let mut check = RootCertStore::empty();
            for certificate in &certificates {
                check
                    .add(certificate.clone())
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
            }
            certificates
        }
        None => Vec::new(),
    };
    let client_identity = match options.client_identity {
        Some((cert, key)) => Some((
            read_certificates(cert)?,
            read_private_key(key)?,
            cert.to_path_buf(),
        )),
        None => None,
    };
    let material = TlsMaterial {
        extra_roots,
        client_identity,
        insecure: options.insecure,
    };
    // Everything but the platform's roots, so that a key that does not suit is reported
    // before anything connects.
    build(&material, false)?;
    Ok(material)
}

/// Builds the rustls configuration from checked files, with the platform's trusted roots
/// when `platform_roots` (they take milliseconds to load: done once, on the first `wss://`
/// connection).
pub(crate) fn build(
    material: &TlsMaterial,
    platform_roots: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = if material.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if platform_roots {
            // Unreadable platform certificates are skipped: one bad file in /etc/ssl must
            // not stop a connection that --cacert (or another root) can still verify.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        for certificate in &material.extra_roots {
            roots
                .add(certificate.clone())
                .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        }
        if material.extra_roots.is_empty() {
            builder.with_root_certificates(roots)
        } else {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("cannot set up TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ListedCertificates {
                    webpki,
                    listed: material.extra_roots.clone(),
                }))
        }
    };
    let mut config = match &material.client_identity {
        Some((chain, key, path)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("cannot use client certificate {}: {e}", path.display()))?,
        None => builder.with_no_client_auth(),
    };
    // A WebSocket upgrade is HTTP/1.1; saying so keeps HTTP/2-capable servers from choosing h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate in a PEM file; an error if there is none.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    match rustls_pemfile::private_key(&mut open(path)?) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(format!(
            "{}: no PEM private key found (expected -----BEGIN PRIVATE KEY-----)",
            path.display()
        )),
        Err(e) => Err(format!("{}: not a PEM key file: {e}", path.display())),
    }
}

/// `--cacert`: webpki's verification, plus the server's own certificate when `--cacert`
/// lists exactly it and webpki refused it only for being marked `CA:TRUE`. webpki checks
/// the dates before that mark, so they have been checked; the name is checked here.
#[derive(Debug)]
struct ListedCertificates {
    webpki: Arc<WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ListedCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refusal = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(refusal) => refusal,
        };
        let listed = self
            .listed
            .iter()
            .any(|certificate| certificate.as_ref() == end_entity.as_ref());
        if !listed || webpki_error(&refusal) != Some(&webpki::Error::CaUsedAsEndEntity) {
            return Err(refusal);
        }
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The webpki error inside a certificate refusal that rustls has no variant for.
fn webpki_error(error: &rustls::Error) -> Option<&webpki::Error> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<webpki::Error>()
        }
        _ => None,
    }
}

/// `-k`: accepts whatever certificate the server shows, but still checks that the server
/// holds its key (signatures), so the handshake itself stays well-formed.
#[derive(Debug)]
struct AcceptAnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Says in plain words why a TLS handshake with `host` failed, and what kind of problem
/// it is.
pub(crate) fn explain(error: &rustls::Error, host: &str) -> (String, TlsProblem) {
    use rustls::AlertDescription as A;
    use rustls::Error as E;
    match error {
        E::InvalidCertificate(certificate) => explain_certificate(certificate, host),
        E::AlertReceived(A::CertificateRequired) => (
            "the server requires a client certificate".into(),
            TlsProblem::ClientCertificate,
        ),
        E::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateUnknown) => (
            "the server refused our client certificate".into(),
            TlsProblem::ClientCertificate,
        ),
        E::AlertReceived(A::ProtocolVersion) => (
            "the server supports no TLS version we accept (TLS 1.2 or 1.3)".into(),
            TlsProblem::Other,
        ),
        E::AlertReceived(A::UnrecognisedName) => (
            format!("the server does not know the name `{host}` (SNI)"),
            TlsProblem::Other,
        ),
        E::AlertReceived(A::HandshakeFailure) => (
            "the server and wsprobe share no cipher suite or protocol".into(),
            TlsProblem::Other,
        ),
        E::AlertReceived(other) => (
            format!(
                "the server aborted the handshake (TLS alert: {})",
                words(&format!("{other:?}"))
            ),
            TlsProblem::Other,
        ),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => (
            "the server's reply is not TLS (is it a plain ws:// endpoint?)".into(),
            TlsProblem::NotTls,
        ),
        E::NoCertificatesPresented => (
            "the server presented no certificate".into(),
            TlsProblem::Other,
        ),
        E::PeerIncompatible(why) => (
            format!(
                "the server's TLS is incompatible ({})",
                words(&format!("{why:?}"))
            ),
            TlsProblem::Other,
        ),
        E::PeerMisbehaved(why) => (
            format!(
                "the server broke the TLS protocol ({})",
                words(&format!("{why:?}"))
            ),
            TlsProblem::Other,
        ),
        E::NoApplicationProtocol => (
            "the server does not offer HTTP/1.1 over TLS (ALPN)".into(),
            TlsProblem::Other,
        ),
        other => (other.to_string(), TlsProblem::Other),
    }
}

fn explain_certificate(error: &CertificateError, host: &str) -> (String, TlsProblem) {
    use CertificateError as C;
    let other = |text: &str| (text.to_owned(), TlsProblem::Other);
    match error {
        C::UnknownIssuer => (
            "the certificate is signed by an unknown issuer (self-signed, or by a private CA \
             we do not trust)"
                .into(),
            TlsProblem::UnknownIssuer,
        ),
        C::ExpiredContext { not_after, .. } => (
            format!("the certificate expired on {}", date(*not_after)),
            TlsProblem::Expired,
        ),
        C::Expired => ("the certificate has expired".into(), TlsProblem::Expired),
        C::NotValidYetContext { not_before, .. } => (
            format!(
                "the certificate is not valid before {} (check the clocks)",
                date(*not_before)
            ),
            TlsProblem::Expired,
        ),
        C::NotValidYet => (
            "the certificate is not valid yet (check the clocks)".into(),
            TlsProblem::Expired,
        ),
        C::NotValidForNameContext { presented, .. }
            if presented.iter().any(|name| presented_name(name).is_some()) =>
        {
            let names: Vec<String> = presented
                .iter()
                .filter_map(|name| presented_name(name))
                .map(|name| format!("`{name}`"))
                .collect();
            (
                format!(
                    "the certificate is not valid for the name `{host}` (it is for {})",
                    names.join(", ")
                ),
                TlsProblem::NameMismatch,
            )
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            format!("the certificate is not valid for the name `{host}`"),
            TlsProblem::NameMismatch,
        ),
        C::Revoked => other("the certificate has been revoked"),
        C::BadSignature => other("the certificate's signature is invalid"),
        C::BadEncoding => other("the certificate is malformed"),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            other("the certificate is not meant for TLS servers")
        }
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            other("the certificate uses a signature algorithm we do not support")
        }
        C::UnknownRevocationStatus => other("the certificate's revocation status is unknown"),
        C::Other(inner) => match inner.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => (
                "the server's certificate is a CA certificate (CA:TRUE, as `openssl req -x509` \
                 makes it) that we do not trust"
                    .into(),
                TlsProblem::UnknownIssuer,
            ),
            Some(webpki::Error::EndEntityUsedAsCa) => {
                other("the chain uses a server certificate as a CA (CA:FALSE)")
            }
            Some(webpki::Error::PathLenConstraintViolated) => {
                other("the chain is longer than one of its CAs allows (pathlen)")
            }
            Some(webpki::Error::NameConstraintViolation) => {
                other("the certificate's names break one of its CA's name constraints")
            }
            Some(webpki::Error::UnsupportedCertVersion) => {
                other("the certificate is not an X.509 v3 certificate")
            }
            Some(
                webpki::Error::MaximumSignatureChecksExceeded
                | webpki::Error::MaximumPathBuildCallsExceeded
                | webpki::Error::MaximumPathDepthExceeded,
            ) => other("the certificate chain is too long or too tangled to verify"),
            Some(e) => (
                format!("the certificate was refused ({})", words(&format!("{e:?}"))),
                TlsProblem::Other,
            ),
            None => (
                format!("the certificate was refused ({inner})"),
                TlsProblem::Other,
            ),
        },
        e => (
            format!("the certificate was refused ({})", words(&format!("{e:?}"))),
            TlsProblem::Other,
        ),
    }
}

/// An enum variant's name as lower-case words (`CaUsedAsEndEntity` → `ca used as end
/// entity`), dropping any fields: the last resort for a refusal we have no sentence for,
/// so that no debug dump reaches the user.
fn words(debug: &str) -> String {
    let name = debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or(debug);
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out.replace('_', " ")
}

/// A DNS name or IP address from webpki's list of the names a certificate presents
/// (`DnsName("example.com")`, `IpAddress(10.0.0.1)`); `None` for other kinds of name.
fn presented_name(debug: &str) -> Option<&str> {
    debug
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            debug
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
}

/// A certificate time as an RFC 3339 date and time, in UTC.
fn date(time: UnixTime) -> String {
    let system = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(system).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_are_unwrapped() {
        assert_eq!(presented_name("DnsName(\"a.example\")"), Some("a.example"));
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), Some("10.0.0.1"));
        assert_eq!(presented_name("DirectoryName"), None);
    }

    #[test]
    fn variant_names_become_words() {
        assert_eq!(words("CaUsedAsEndEntity"), "ca used as end entity");
        assert_eq!(words("Other(OtherError(X))"), "other");
        assert_eq!(words("DecryptError"), "decrypt error");
    }

    #[test]
    fn missing_files_are_named() {
        let options = TlsOptions {
            cacert: Some(Path::new("/nonexistent/ca.pem")),
            ..TlsOptions::default()
        };
        let error = read_material(&options).unwrap_err();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
