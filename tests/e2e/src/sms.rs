//! A Twilio-compatible gateway peer for the SMS tests: webhooks signed with Twilio's own
//! Python library, and a REST Messages API that checks HTTP Basic auth and records what it is
//! asked to send (recipients starting `+1212555` are refused as unsubscribed, code 21610).
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token-1";

/// Signs like Twilio, with Twilio's library.
pub fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let python = crate::python_venv("twilio-venv", &Path::new(env!("CARGO_MANIFEST_DIR")).join("python/twilio-requirements.txt"));
    let mut child = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/twilio_sign.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let request = json!({"token": TOKEN, "url": url, "params": params});
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// What the gateway peer was asked to send.
pub type Sent = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

async fn messages_api(State(sent): State<Sent>, UrlPath(sid): UrlPath<String>, headers: HeaderMap, body: String) -> axum::response::Response {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}")));
    if sid != SID || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 20003, "message": "Authenticate"}))).into_response();
    }
    let form: BTreeMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    if form["To"].starts_with("+1212555") {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient"}))).into_response();
    }
    let mut sent = sent.lock().unwrap();
    sent.push(form);
    let sid = format!("SM{:032}", sent.len());
    (StatusCode::CREATED, axum::Json(json!({"sid": sid, "status": "queued"}))).into_response()
}


fn api(sent: Sent, extra: axum::Router) -> axum::Router {
    axum::Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", axum::routing::post(messages_api))
        .with_state(sent)
        .merge(extra)
}

/// Serves the Messages API (plus `extra` routes) on a free loopback port; returns the port.
pub async fn start(sent: Sent, extra: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let api = api(sent, extra);
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    port
}

/// [`start`] over https, with `tls`'s server certificate (for 127.0.0.1 and localhost), as a
/// real gateway serves its API and media.
pub async fn start_https(sent: Sent, extra: axum::Router, tls: &crate::tls::TestTls) -> u16 {
    use tokio_rustls::rustls::{self, pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject}};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) };
    let api = api(sent, extra);
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    port
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            // A failed handshake is that client's problem, not the server's.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Posts a webhook with its signature; `(status, body)`.
pub async fn post_webhook(http: &reqwest::Client, url: &str, params: &[(&str, &str)], signature: &str) -> (u16, String) {
    let r = http.post(url).header("X-Twilio-Signature", signature).form(params).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
