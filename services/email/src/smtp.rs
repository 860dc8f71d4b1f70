//! The SMTP listener the enterprise mail server relays to. The protocol state machine is the
//! `mailin` crate's; this module only does the I/O around it and answers the end of DATA
//! itself, after the [`Intake`] has the mail on Kafka: `250` with the interaction id, `5xx`
//! with the reason for a mail that cannot be accepted (the sending server bounces it, so it
//! is not lost), `451` when UCS or Kafka cannot take it now (the sender retries).
//!
//! One workaround: mailin 0.6 refuses the null reverse-path `MAIL FROM:<>` with a syntax
//! error, but RFC 5321 (4.5.5) requires accepting it: bounces and auto-replies use it. The
//! line is rewritten to a reserved placeholder before the state machine sees it, and the
//! placeholder read back as the null sender (which marks the mail automatic, never answered).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin::{Handler, Response, SessionBuilder};
use runtime::CancellationToken;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::intake::{Intake, IntakeError, Source};

/// A client silent this long is disconnected (RFC 5321 suggests 5 minutes).
const IDLE: Duration = Duration::from_secs(300);
/// Longest command or text line read; RFC 5321 allows 1000 octets, real mail sometimes more.
const MAX_LINE: u64 = 64 * 1024;

/// Stands for the null reverse-path inside mailin (`.invalid` is reserved, RFC 2606).
const NULL_SENDER: &str = "null-reverse-path@switchboard.invalid";

/// `MAIL FROM:<>...` → `MAIL FROM:<NULL_SENDER>...`; other lines unchanged.
fn null_sender_workaround(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const PREFIX: &[u8] = b"MAIL FROM:<>";
    if line.len() >= PREFIX.len() && line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        let mut rewritten = b"MAIL FROM:<".to_vec();
        rewritten.extend_from_slice(NULL_SENDER.as_bytes());
        rewritten.extend_from_slice(&line[PREFIX.len() - 1..]);
        std::borrow::Cow::Owned(rewritten)
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

/// What one transaction collected; `mailin` calls the handler synchronously.
#[derive(Default)]
struct Transaction {
    envelope_from: Option<String>,
    data: Vec<u8>,
    overflow: bool,
    complete: bool,
    /// The connection runs over TLS (after STARTTLS); kept across transactions.
    tls: bool,
}

struct Collector {
    tx: Arc<Mutex<Transaction>>,
    max_bytes: usize,
    recipient_domains: Arc<[String]>,
    /// `[email] smtp_require_tls`: no `MAIL` before STARTTLS.
    tls_required: bool,
}

/// Who may hand mail to the listener, for whom, and how many at once: the listener is an
/// inbound door for the company's domains, never a relay to anywhere else.
#[derive(Clone)]
pub struct Policy {
    pub domain: String,
    pub max_connections: usize,
    pub relay_networks: Vec<ipnet::IpNet>,
    pub recipient_domains: Arc<[String]>,
    /// STARTTLS offered with this certificate (`[email] smtp_tls_cert_file`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// No mail before STARTTLS.
    pub require_tls: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("domain", &self.domain)
            .field("max_connections", &self.max_connections)
            .field("relay_networks", &self.relay_networks)
            .field("recipient_domains", &self.recipient_domains)
            .field("starttls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

/// The STARTTLS acceptor of `cert_file` and `key_file` (PEM), or why it cannot be made.
fn tls_acceptor(cert_file: &std::path::Path, key_file: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::{self, pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject}};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("[email] smtp_tls_cert_file {}: {e}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| anyhow::anyhow!("[email] smtp_tls_key_file {}: {e}", key_file.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("[email] smtp_tls_cert_file and smtp_tls_key_file do not make a certificate: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Policy {
    pub fn from_settings(email: &crate::EmailSettings) -> anyhow::Result<Self> {
        let relay_networks = runtime::config::networks(&email.smtp_relay_networks, "[email] smtp_relay_networks").map_err(anyhow::Error::msg)?;
        let domains = if email.smtp_recipient_domains.is_empty() { std::slice::from_ref(&email.domain) } else { email.smtp_recipient_domains.as_slice() };
        Ok(Self {
            domain: email.domain.clone(),
            max_connections: email.smtp_max_connections.max(1),
            relay_networks,
            recipient_domains: domains.iter().map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase()).collect(),
            tls: match (&email.smtp_tls_cert_file, &email.smtp_tls_key_file) {
                (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
                (None, None) => None,
                _ => anyhow::bail!("[email] smtp_tls_cert_file and smtp_tls_key_file go together"),
            },
            require_tls: email.smtp_require_tls,
        })
    }

    fn may_relay(&self, peer: IpAddr) -> bool {
        let peer = runtime::http::canonical_ip(peer);
        self.relay_networks.iter().any(|n| n.contains(&peer))
    }
}

/// Whether `to` (a `RCPT TO` path) is for one of `domains`.
fn for_our_domains(to: &str, domains: &[String]) -> bool {
    let address = to.trim().trim_matches(['<', '>']);
    address.rsplit_once('@').is_some_and(|(_, domain)| domains.iter().any(|d| domain.eq_ignore_ascii_case(d)))
}

impl Handler for Collector {
    fn rcpt(&mut self, to: &str) -> Response {
        if for_our_domains(to, &self.recipient_domains) {
            mailin::response::OK
        } else {
            Response::custom(550, "5.7.1 relaying denied: not a domain of this service".to_owned())
        }
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        let mut t = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if self.tls_required && !t.tls {
            return Response::custom(530, "5.7.0 must issue a STARTTLS command first".to_owned());
        }
        let from = from.trim_matches(['<', '>']);
        let from = if from == NULL_SENDER { "" } else { from };
        *t = Transaction { envelope_from: Some(from.to_owned()), tls: t.tls, ..Transaction::default() };
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut t = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if t.data.len() + buf.len() > self.max_bytes {
            // Keep reading to the end of DATA, keep nothing more: the answer is 552.
            t.overflow = true;
        } else {
            t.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).complete = true;
        // Replaced by the intake's answer before anything is written.
        mailin::response::OK
    }
}

/// Accepts connections on `listener` until `shutdown`; each connection is served in its own
/// task, and a connection in the middle of a mail finishes it before the listener stops.
pub async fn serve(listener: TcpListener, policy: Policy, intake: Arc<Intake>, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, max_connections = policy.max_connections, "SMTP listener accepting mail");
    let mut connections = tokio::task::JoinSet::new();
    let policy = Arc::new(policy);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "SMTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if !policy.may_relay(peer.ip()) {
                    tracing::warn!(%peer, "SMTP connection refused: not in [email] smtp_relay_networks");
                    refuse(stream, b"554 5.7.1 this address may not send mail here\r\n");
                    continue;
                }
                if connections.len() >= policy.max_connections {
                    tracing::warn!(%peer, limit = policy.max_connections, "SMTP connection refused: too many at once");
                    refuse(stream, b"421 4.7.0 too many connections; try again later\r\n");
                    continue;
                }
                let (policy, intake, shutdown) = (policy.clone(), intake.clone(), shutdown.clone());
                connections.spawn(async move {
                    if let Err(e) = connection(stream, peer, &policy, &intake, shutdown).await {
                        tracing::debug!(%peer, error = %e, "SMTP connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Answers `reply` and closes, without holding up the accept loop.
fn refuse(mut stream: TcpStream, reply: &'static [u8]) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = stream.write_all(reply).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}

/// How a conversation on one stream ended.
enum Ended {
    Closed,
    /// The client asked for STARTTLS and got `220`: go on over TLS.
    StartTls,
}

async fn connection(stream: TcpStream, peer: SocketAddr, policy: &Policy, intake: &Intake, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tx = Arc::new(Mutex::new(Transaction::default()));
    let collector = Collector { tx: tx.clone(), max_bytes: intake.limits.max_bytes, recipient_domains: policy.recipient_domains.clone(), tls_required: policy.require_tls && policy.tls.is_some() };
    let mut builder = SessionBuilder::new(&policy.domain);
    if policy.tls.is_some() {
        builder.enable_start_tls();
    }
    let mut session = builder.build(peer.ip(), collector);
    let mut stream = stream;
    stream.write_all(&session.greeting().buffer()?).await?;
    let (ended, stream) = converse(stream, &mut session, &tx, peer, intake, shutdown.clone()).await?;
    let (Ended::StartTls, Some(acceptor)) = (ended, &policy.tls) else { return Ok(()) };
    let tls = tokio::time::timeout(IDLE, acceptor.accept(stream)).await.map_err(|_| anyhow::anyhow!("TLS handshake timed out"))??;
    session.tls_active();
    tx.lock().unwrap_or_else(|p| p.into_inner()).tls = true;
    converse(tls, &mut session, &tx, peer, intake, shutdown).await?;
    Ok(())
}

/// Reads commands and answers them on `stream` until the client leaves, the listener stops,
/// or STARTTLS hands the stream back for the handshake (whatever the client sent after the
/// STARTTLS line is dropped, never read as commands: RFC 3207, 4.2).
async fn converse<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    session: &mut mailin::Session<Collector>,
    tx: &Arc<Mutex<Transaction>>,
    peer: SocketAddr,
    intake: &Intake,
    shutdown: CancellationToken,
) -> anyhow::Result<(Ended, S)> {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let idle_between_mails = tx.lock().unwrap_or_else(|p| p.into_inner()).envelope_from.is_none();
        let mut limited = (&mut reader).take(MAX_LINE);
        let read = tokio::select! {
            // Between mails only: a transaction in progress is finished first.
            () = shutdown.cancelled(), if idle_between_mails => {
                write.write_all(b"421 4.3.2 shutting down, try again later\r\n").await?;
                return Ok((Ended::Closed, reader.into_inner().unsplit(write)));
            }
            read = tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)) => read,
        };
        let n = match read {
            Err(_) => {
                write.write_all(b"421 4.4.2 idle too long, closing\r\n").await?;
                return Ok((Ended::Closed, reader.into_inner().unsplit(write)));
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok((Ended::Closed, reader.into_inner().unsplit(write)));
        }
        if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
            write.write_all(b"500 5.5.6 line too long\r\n").await?;
            return Ok((Ended::Closed, reader.into_inner().unsplit(write)));
        }
        // mailin expects CRLF; accept bare LF from lenient clients.
        if !line.ends_with(b"\r\n") {
            line.pop();
            line.extend_from_slice(b"\r\n");
        }
        let response = session.process(&null_sender_workaround(&line));
        let finished = {
            let mut t = tx.lock().unwrap_or_else(|p| p.into_inner());
            let tls = t.tls;
            if t.complete { Some(std::mem::replace(&mut *t, Transaction { tls, ..Transaction::default() })) } else { None }
        };
        let reply = match finished {
            Some(t) => answer(intake, t, peer).await,
            None => response.buffer()?,
        };
        if !reply.is_empty() {
            write.write_all(&reply).await?;
        }
        match response.action {
            mailin::Action::Close => return Ok((Ended::Closed, reader.into_inner().unsplit(write))),
            mailin::Action::UpgradeTls => {
                write.flush().await?;
                return Ok((Ended::StartTls, reader.into_inner().unsplit(write)));
            }
            _ => {}
        }
    }
}

/// The reply to the end of DATA: the intake's verdict.
async fn answer(intake: &Intake, t: Transaction, peer: SocketAddr) -> Vec<u8> {
    if t.overflow {
        let limit = intake.limits.max_bytes;
        tracing::warn!(%peer, limit, "SMTP mail refused: too large");
        return format!("552 5.3.4 message exceeds the limit of {limit} bytes\r\n").into_bytes();
    }
    let source = Source { channel: "smtp", envelope_from: t.envelope_from, detail: peer.to_string() };
    match intake.accept(&t.data, &source).await {
        Ok(accepted) => format!("250 2.0.0 queued as interaction {}\r\n", accepted.interaction_id).into_bytes(),
        Err(IntakeError::Refused(refusal)) => {
            let (code, status) = refusal.smtp_status();
            tracing::warn!(%peer, reason = %refusal, "SMTP mail refused");
            format!("{code} {status} {}\r\n", single_line(&refusal.to_string())).into_bytes()
        }
        Err(IntakeError::Unavailable(detail)) => {
            tracing::error!(%peer, %detail, "SMTP mail deferred");
            b"451 4.3.0 temporarily unable to store the message; try again later\r\n".to_vec()
        }
    }
}

fn single_line(text: &str) -> String {
    crate::parse::clean_header_text(text).chars().take(400).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_relay_networks_may_send_and_only_for_our_domains() {
        let settings = crate::EmailSettings {
            smtp_relay_networks: vec!["10.1.0.0/16".into(), "127.0.0.1".into()],
            smtp_recipient_domains: vec!["shop.example".into(), "@Help.Shop.Example".into()],
            ..crate::EmailSettings::default()
        };
        let policy = Policy::from_settings(&settings).unwrap();
        for (peer, may) in [("10.1.2.3", true), ("127.0.0.1", true), ("::ffff:10.1.9.9", true), ("10.2.0.1", false), ("127.0.0.2", false), ("::1", false)] {
            assert_eq!(policy.may_relay(peer.parse().unwrap()), may, "{peer}");
        }
        for (to, ours) in [("<support@shop.example>", true), ("a@SHOP.example", true), ("<b@help.shop.example>", true), ("<victim@elsewhere.example>", false), ("<x@shop.example.evil>", false), ("<postmaster>", false)] {
            assert_eq!(for_our_domains(to, &policy.recipient_domains), ours, "{to}");
        }
        let default = Policy::from_settings(&crate::EmailSettings::default()).unwrap();
        assert!(default.may_relay("127.0.0.1".parse().unwrap()) && default.may_relay("::1".parse().unwrap()) && !default.may_relay("192.0.2.1".parse().unwrap()));
        assert_eq!(&*default.recipient_domains, ["switchboard.localhost".to_owned()]);
        let bad = crate::EmailSettings { smtp_relay_networks: vec!["10.0.0.0/33".into()], ..crate::EmailSettings::default() };
        assert!(Policy::from_settings(&bad).unwrap_err().to_string().contains("smtp_relay_networks"));
    }

    #[test]
    fn with_tls_required_no_mail_is_taken_before_starttls() {
        let tx = Arc::new(Mutex::new(Transaction::default()));
        let mut collector = Collector { tx: tx.clone(), max_bytes: 1024, recipient_domains: Arc::from(["shop.example".to_owned()]), tls_required: true };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(collector.mail(ip, "client", "a@example.com").code, 530);
        tx.lock().unwrap().tls = true;
        assert_eq!(collector.mail(ip, "client", "a@example.com").code, 250);
        assert!(tx.lock().unwrap().tls, "a new transaction keeps the connection's TLS");
        let half = crate::EmailSettings { smtp_tls_cert_file: Some("cert.pem".into()), ..crate::EmailSettings::default() };
        assert!(Policy::from_settings(&half).is_err_and(|e| e.to_string().contains("go together")));
    }

    #[test]
    fn the_null_sender_gets_through_mailin() {
        assert_eq!(&*null_sender_workaround(b"MAIL FROM:<> BODY=8BITMIME\r\n"), format!("MAIL FROM:<{NULL_SENDER}> BODY=8BITMIME\r\n").as_bytes());
        assert_eq!(&*null_sender_workaround(b"mail from:<>\r\n"), format!("MAIL FROM:<{NULL_SENDER}>\r\n").as_bytes());
        assert_eq!(&*null_sender_workaround(b"MAIL FROM:<a@b>\r\n"), b"MAIL FROM:<a@b>\r\n");
    }
}
