//! TLS to the database, set in the URL as for libpq: `sslmode` is `disable`, `prefer` (the default: TLS
//! when the server offers it), `require` (TLS, the certificate not checked), `verify-ca` (the certificate
//! must chain to a trusted root) or `verify-full` (and name the host); `sslrootcert` names a PEM file of
//! trusted roots, or `system` for the operating system's (also the roots when a verifying mode names
//! none). As with libpq, `require` with an `sslrootcert` checks the chain, and `sslrootcert=system`
//! alone means `verify-full`.
//!
//! tokio-postgres reads neither the verifying modes nor `sslrootcert`, so they are taken out of the URL
//! here and the checks done by the certificate verifier given to rustls.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use super::socket::Socket;
use crate::error::{Result, StoreError};

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Encryption only (`prefer`, `require`).
    Nothing,
    /// The chain to a trusted root (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// The TLS setup of every connection to one database.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
}

/// Splits the libpq TLS settings off `url`: the URL tokio-postgres reads (a verifying mode becomes
/// `require`, `sslrootcert` goes) and the TLS setup that checks what the URL asked for.
pub(crate) fn from_url(url: &str) -> Result<(String, Tls)> {
    let mut params = Params::parse(url);
    let mode = params.take("sslmode");
    let root = params.take("sslrootcert");
    let check = match (mode.as_deref(), root.as_deref()) {
        (Some("verify-full"), _) | (None, Some("system")) => Check::ChainAndName,
        (Some("verify-ca"), _) | (Some("require"), Some(_)) => Check::Chain,
        (None | Some("disable" | "prefer" | "require"), _) => Check::Nothing,
        (Some(other), _) => {
            return Err(StoreError::new(format!(
                "sslmode={other} is not supported: use disable, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    let mode = match (mode.as_deref(), check) {
        (Some(mode @ ("disable" | "prefer")), Check::Nothing) => Some(mode),
        (None, Check::Nothing) => None,
        _ => Some("require"),
    };
    if let Some(mode) = mode {
        params.set("sslmode", mode);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(roots(root.as_deref())?);
            let built = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider)).build();
            Some(built.map_err(|e| StoreError::new(format!("cannot check the database's certificate: {e}")))?)
        }
    };
    let verifier = Arc::new(Verifier { provider: Arc::clone(&provider), webpki, check });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::new(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((params.join(), Tls { config: Arc::new(config) }))
}

/// The roots `sslrootcert` names: a PEM file, or (`system`, or none given) the operating system's.
fn roots(root: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match root {
        None | Some("system") => rustls_native_certs::load_native_certs().certs,
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|e| StoreError::new(format!("cannot read sslrootcert {path}: {e}")))?,
    };
    let (added, _) = store.add_parsable_certificates(certificates);
    if added == 0 {
        let from = root.unwrap_or("system");
        return Err(StoreError::new(format!("sslrootcert {from} holds no certificate to trust")));
    }
    Ok(store)
}

impl Tls {
    /// The handshake for a connection to `host` (the name the certificate must hold).
    pub(crate) fn connect_to(&self, host: &str) -> Result<Connect> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| StoreError::new(format!("{host} cannot be checked against a certificate: {e}")))?;
        Ok(Connect { config: Arc::clone(&self.config), name })
    }
}

/// A TLS handshake over a connection's socket (run by tokio-postgres when the server agrees to TLS).
pub(crate) struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

type Handshake = Pin<Box<dyn Future<Output = io::Result<TlsStream>> + Send>>;

impl TlsConnect<Socket> for Connect {
    type Stream = TlsStream;
    type Error = io::Error;
    type Future = Handshake;

    fn connect(self, socket: Socket) -> Handshake {
        let connecting = tokio_rustls::TlsConnector::from(self.config).connect(self.name, socket);
        Box::pin(async move { connecting.await.map(|stream| TlsStream(Box::new(stream))) })
    }
}

/// A connection's socket with TLS on it.
pub(crate) struct TlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for TlsStream {
    /// None: SCRAM authenticates without channel binding (which needs the certificate's own hash).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

/// Checks the server's certificate as the URL asked: the chain to a root and the name with `webpki`
/// (`verify-ca` lets a wrong name pass), nothing without (`prefer`, `require`). The handshake must be
/// signed by the certificate presented either way.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check: Check,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The parameters of a database URL (`postgres://…?k=v&…`) or of a `key=value …` string, to take some
/// out and put the rest back as they were.
struct Params {
    /// The URL up to its parameters (empty for `key=value` form).
    base: String,
    url: bool,
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(text: &str) -> Self {
        let url = text.starts_with("postgres://") || text.starts_with("postgresql://");
        if !url {
            let pairs = text
                .split_whitespace()
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return Self { base: String::new(), url, pairs };
        }
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self { base: base.to_string(), url, pairs }
    }

    /// Removes `key` and answers its (decoded) value.
    fn take(&mut self, key: &str) -> Option<String> {
        let at = self.pairs.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.pairs.remove(at);
        Some(if self.url { percent_decode(&value) } else { value.trim_matches('\'').to_string() })
    }

    fn set(&mut self, key: &str, value: &str) {
        self.pairs.push((key.to_string(), value.to_string()));
    }

    fn join(&self) -> String {
        let pairs = self.pairs.iter().map(|(k, v)| format!("{k}={v}"));
        match self.url {
            true if self.pairs.is_empty() => self.base.clone(),
            true => format!("{}?{}", self.base, pairs.collect::<Vec<_>>().join("&")),
            false => pairs.collect::<Vec<_>>().join(" "),
        }
    }
}

fn percent_decode(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        let escaped =
            after.get(..2).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, escaped) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                rest = after.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(byte);
                rest = after;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> String {
        from_url(url).map(|(url, _)| url).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn verifying_modes_reach_tokio_postgres_as_require_and_sslrootcert_is_taken_out() {
        let roots = "/etc/ssl/certs/ca-certificates.crt";
        assert_eq!(split("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(split("postgres://u@h/db?sslmode=disable&x=1"), "postgres://u@h/db?x=1&sslmode=disable");
        assert_eq!(split("postgres://u@h/db?sslmode=verify-full"), "postgres://u@h/db?sslmode=require");
        assert_eq!(
            split(&format!("postgresql://u@h/db?sslrootcert={}&sslmode=verify-ca", roots.replace('/', "%2F"))),
            "postgresql://u@h/db?sslmode=require"
        );
        assert_eq!(split("postgres://u@h/db?sslrootcert=system"), "postgres://u@h/db?sslmode=require");
        assert_eq!(
            split(&format!("host=h user=u sslmode=verify-ca sslrootcert={roots}")),
            "host=h user=u sslmode=require"
        );
        assert!(split("postgres://u@h/db?sslmode=allow").contains("sslmode=allow is not supported"));
        assert!(split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
            .contains("cannot read sslrootcert"));
    }
}
