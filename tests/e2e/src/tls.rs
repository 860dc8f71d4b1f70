//! A test certificate authority and a server certificate it signed, for 127.0.0.1 and
//! localhost (librdkafka and rustls check the host name), written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub struct TestTls {
    /// The CA certificate clients trust.
    pub ca_file: PathBuf,
    /// The server's certificate and PKCS#8 private key, as PEM text and as files.
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestTls {
    /// librdkafka settings for a SCRAM-SHA-512 user over SASL_SSL, trusting this CA.
    pub fn scram_client(&self, user: &str, password: &str) -> std::collections::BTreeMap<String, String> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", user),
            ("sasl.password", password),
            ("ssl.ca.location", &self.ca_file.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Switchboard test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        let tls = Self {
            ca_file: dir.join("ca.pem"),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
        };
        std::fs::write(&tls.ca_file, ca.pem())?;
        std::fs::write(&tls.cert_file, &tls.cert_pem)?;
        std::fs::write(&tls.key_file, &tls.key_pem)?;
        Ok(tls)
    }
}
