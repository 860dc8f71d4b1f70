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
}

struct Collector {
    tx: Arc<Mutex<Transaction>>,
    max_bytes: usize,
}

impl Handler for Collector {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        let mut t = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let from = from.trim_matches(['<', '>']);
        let from = if from == NULL_SENDER { "" } else { from };
        *t = Transaction { envelope_from: Some(from.to_owned()), ..Transaction::default() };
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
pub async fn serve(listener: TcpListener, domain: String, intake: Arc<Intake>, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "SMTP listener accepting mail");
    let mut connections = tokio::task::JoinSet::new();
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
                let (domain, intake, shutdown) = (domain.clone(), intake.clone(), shutdown.clone());
                connections.spawn(async move {
                    if let Err(e) = connection(stream, peer, &domain, &intake, shutdown).await {
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

async fn connection(stream: TcpStream, peer: SocketAddr, domain: &str, intake: &Intake, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let tx = Arc::new(Mutex::new(Transaction::default()));
    let collector = Collector { tx: tx.clone(), max_bytes: intake.limits.max_bytes };
    let mut session = SessionBuilder::new(domain).build(peer.ip(), collector);
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let idle_between_mails = tx.lock().unwrap_or_else(|p| p.into_inner()).envelope_from.is_none();
        let mut limited = (&mut reader).take(MAX_LINE);
        let read = tokio::select! {
            // Between mails only: a transaction in progress is finished first.
            () = shutdown.cancelled(), if idle_between_mails => {
                write.write_all(b"421 4.3.2 shutting down, try again later\r\n").await?;
                return Ok(());
            }
            read = tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)) => read,
        };
        let n = match read {
            Err(_) => {
                write.write_all(b"421 4.4.2 idle too long, closing\r\n").await?;
                return Ok(());
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
            write.write_all(b"500 5.5.6 line too long\r\n").await?;
            return Ok(());
        }
        // mailin expects CRLF; accept bare LF from lenient clients.
        if !line.ends_with(b"\r\n") {
            line.pop();
            line.extend_from_slice(b"\r\n");
        }
        let response = session.process(&null_sender_workaround(&line));
        let finished = {
            let mut t = tx.lock().unwrap_or_else(|p| p.into_inner());
            if t.complete { Some(std::mem::take(&mut *t)) } else { None }
        };
        let reply = match finished {
            Some(t) => answer(intake, t, peer).await,
            None => response.buffer()?,
        };
        if !reply.is_empty() {
            write.write_all(&reply).await?;
        }
        if response.action == mailin::Action::Close {
            return Ok(());
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
    use super::*;

    #[test]
    fn the_null_sender_gets_through_mailin() {
        assert_eq!(&*null_sender_workaround(b"MAIL FROM:<> BODY=8BITMIME\r\n"), format!("MAIL FROM:<{NULL_SENDER}> BODY=8BITMIME\r\n").as_bytes());
        assert_eq!(&*null_sender_workaround(b"mail from:<>\r\n"), format!("MAIL FROM:<{NULL_SENDER}>\r\n").as_bytes());
        assert_eq!(&*null_sender_workaround(b"MAIL FROM:<a@b>\r\n"), b"MAIL FROM:<a@b>\r\n");
    }
}
