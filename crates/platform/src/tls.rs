//! TLS for every connection Herald opens (PostgreSQL, Redis, HTTP clients),
//! with rustls on ring: no OpenSSL in the image, one crypto provider per
//! process.
//!
//! How much a connection verifies follows libpq's `sslmode`:
//! [`Verify::Full`] checks the chain and the host name, [`Verify::Chain`]
//! the chain only, [`Verify::Nothing`] encrypts without checking who
//! answers (libpq's `require`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WantsClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {why}")]
    File {
        key: &'static str,
        path: String,
        why: String,
    },
    #[error("{key}: {path} holds no certificate")]
    NoCertificate { key: &'static str, path: String },
    #[error("no trusted CA certificates: the system has none and no CA file is set")]
    NoRoots,
    #[error("client certificate and key: {0}")]
    ClientAuth(String),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Installs ring as the process's rustls provider (what reqwest and every
/// other rustls user here then take). Idempotent; every binary calls it first.
pub fn install_crypto_provider() {
    // Err only when a provider is installed already: the same one, here.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted CA and the host name (`verify-full`, `rediss://`).
    Full,
    /// Chain to a trusted CA, any host name (`verify-ca`).
    Chain,
    /// Encrypt only (`require`, `prefer`).
    Nothing,
}

/// Certificate files of one connection; empty strings mean "not set".
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// Setting name of `ca_file`, for messages (`database.ca_file`).
    pub ca_key: &'static str,
    /// CA bundle (PEM) to trust instead of the system's roots.
    pub ca_file: &'a str,
    /// Client certificate chain and key (PEM), for servers that ask.
    pub cert_file: &'a str,
    pub key_file: &'a str,
}

/// A rustls client configuration for `verify` with these files.
pub fn client_config(verify: Verify, files: TlsFiles<'_>) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(
                provider.signature_verification_algorithms,
            ))),
        Verify::Full => builder.with_root_certificates(roots(files)?),
        Verify::Chain => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(files)?),
                provider.clone(),
            )
            .build()
            .map_err(|err| TlsError::Rustls(rustls::Error::General(err.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
        }
    };
    with_client_auth(builder, files)
}

fn with_client_auth(
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
    files: TlsFiles<'_>,
) -> Result<ClientConfig, TlsError> {
    match (files.cert_file.is_empty(), files.key_file.is_empty()) {
        (true, true) => Ok(builder.with_no_client_auth()),
        (false, false) => {
            let chain = certificates("client_cert_file", files.cert_file)?;
            let key = PrivateKeyDer::from_pem_file(files.key_file)
                .map_err(|err| TlsError::ClientAuth(format!("{}: {err}", files.key_file)))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| TlsError::ClientAuth(err.to_string()))
        }
        _ => Err(TlsError::ClientAuth(
            "client_cert_file and client_key_file go together".into(),
        )),
    }
}

/// The CA file's certificates, else the system's trusted roots.
fn roots(files: TlsFiles<'_>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    if files.ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(native.certs);
    } else {
        store.add_parsable_certificates(certificates(files.ca_key, files.ca_file)?);
    }
    if store.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(store)
}

fn certificates(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |why: String| TlsError::File {
        key,
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| file_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(err.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// `verify-ca`: the chain must lead to a trusted CA; the name may differ.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: encrypted, whoever answers (the handshake's signatures are
/// still checked against the certificate the server sent).
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
