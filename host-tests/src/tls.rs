//! Certificates and rustls configurations for tests.
//!
//! Everything uses the `ring` crypto provider (no system roots are ever
//! consulted). [`TestCa`] issues leaf certificates (like vCenter's VMCA signs
//! ESXi certificates); [`CertKey::self_signed`] makes a self-signed leaf
//! (like a stand-alone ESXi host).

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The crypto provider every config in this crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of `der` as lowercase hex without separators
/// (`"df6ff72f...9d1a"`), one of the two forms Envoy's
/// `verify_certificate_hash` accepts.
pub fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of `der` as uppercase hex pairs joined by colons
/// (`"DF:6F:F7:..."`), the other form Envoy's `verify_certificate_hash`
/// accepts (and the form `openssl x509 -fingerprint -sha256` prints).
pub fn sha256_colon(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A certificate with its private key, in the forms tests need.
#[derive(Clone, Debug)]
pub struct CertKey {
    /// Leaf certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// Issuer certificate (PEM) if the leaf was issued by a [`TestCa`].
    pub issuer_pem: Option<String>,
    /// PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl CertKey {
    /// A self-signed leaf certificate for `names` (DNS names or IP
    /// addresses), ECDSA P-256, with `names[0]` as common name.
    pub fn self_signed(names: &[&str]) -> Result<CertKey> {
        let key = KeyPair::generate()?;
        let params = leaf_params(names)?;
        let cert = params.self_signed(&key)?;
        Ok(CertKey {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer_pem: None,
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Lowercase hex SHA-256 of the leaf certificate (see [`sha256_hex`]).
    pub fn sha256_hex(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// Uppercase colon-separated SHA-256 of the leaf (see [`sha256_colon`]).
    pub fn sha256_colon(&self) -> String {
        sha256_colon(&self.cert_der)
    }

    /// The private key in the form rustls wants.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Leaf PEM followed by the issuer PEM (if any): what a server sends.
    pub fn chain_pem(&self) -> String {
        match &self.issuer_pem {
            Some(ca) => format!("{}{}", self.cert_pem, ca),
            None => self.cert_pem.clone(),
        }
    }

    /// A rustls server config presenting this certificate (no client auth,
    /// no ALPN: the server speaks HTTP/1.1 whatever the client offers).
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], self.private_key())
            .context("building rustls server config")?;
        Ok(cfg)
    }
}

fn leaf_params(names: &[&str]) -> Result<CertificateParams> {
    let first = names
        .first()
        .ok_or_else(|| anyhow!("a certificate needs at least one name"))?;
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, *first);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "mksgate tests");
    Ok(params)
}

/// A throw-away certificate authority for tests.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA with the given common name.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mksgate tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate, PEM (what Envoy's `trusted_ca` wants).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Issue a leaf certificate for `names`.
    pub fn issue(&self, names: &[&str]) -> Result<CertKey> {
        self.sign(leaf_params(names)?)
    }

    /// Issue a leaf certificate for `names` with no common name: what etcd
    /// asks of its JSON gateway's clients once access control is on (it
    /// refuses a certificate with one, CVE-2018-16886).
    pub fn issue_without_common_name(&self, names: &[&str]) -> Result<CertKey> {
        let mut params = leaf_params(names)?;
        params.distinguished_name.remove(DnType::CommonName);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<CertKey> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKey {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer_pem: Some(self.cert_pem()),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// How a client decides to trust the server certificate.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Accept exactly these certificates (compared byte for byte); no name
    /// or chain checks. Handy for self-signed stand-ins and gateways.
    Pinned(Vec<CertificateDer<'static>>),
    /// Normal WebPKI verification (chain + name = SNI) against these roots.
    Roots(Vec<CertificateDer<'static>>),
    /// Accept any certificate (signatures are still checked).
    InsecureAny,
}

/// A rustls client config for `trust`. `enable_sni = false` makes the client
/// send no SNI extension at all.
pub fn client_config(trust: &Trust, enable_sni: bool) -> Result<rustls::ClientConfig> {
    let prov = provider();
    let builder = rustls::ClientConfig::builder_with_provider(prov.clone())
        .with_safe_default_protocol_versions()?;
    let mut cfg = match trust {
        Trust::Roots(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store.add(r.clone()).context("adding trust root")?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        Trust::Pinned(certs) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pinned: Some(certs.clone()),
                provider: prov,
            }))
            .with_no_client_auth(),
        Trust::InsecureAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pinned: None,
                provider: prov,
            }))
            .with_no_client_auth(),
    };
    cfg.enable_sni = enable_sni;
    Ok(cfg)
}

#[derive(Debug)]
struct PinnedVerifier {
    /// `None` = accept anything.
    pinned: Option<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            None => Ok(ServerCertVerified::assertion()),
            Some(list) if list.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_have_both_forms() {
        let ck = CertKey::self_signed(&["vesxi01.sec.lab"]).unwrap();
        let hex = ck.sha256_hex();
        let colon = ck.sha256_colon();
        assert_eq!(hex.len(), 64);
        assert_eq!(colon.len(), 95);
        assert_eq!(colon.replace(':', "").to_lowercase(), hex);
    }

    #[test]
    fn ca_issues_leaf() {
        let ca = TestCa::new("test ca").unwrap();
        let leaf = ca.issue(&["vesxi02.sec.lab"]).unwrap();
        assert!(leaf.chain_pem().contains(&ca.cert_pem()));
        leaf.server_config().unwrap();
    }
}
