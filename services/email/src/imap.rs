//! IMAP polling of a mailbox of the enterprise mail server (async-imap).
//!
//! Each poll logs in, selects the mailbox and takes the mails not yet handled (not
//! `\Deleted`, without our keywords), oldest first. A mail leaves the "not handled" set only
//! after Kafka has its outcome:
//! - accepted (the `Submit` is on Kafka): deleted and expunged, or given `$SwitchboardQueued`
//!   (`after_accept`);
//! - refused (too large, malformed, ...): there is no sender to refuse it to, so it is parked
//!   on the dead-letter topic with the reason, then given `$SwitchboardParked` (kept in the
//!   mailbox, never deleted);
//! - UCS or Kafka unavailable: left untouched; the next poll tries again.
//!
//! A crash between Kafka's acknowledgement and the flag means the mail is read again next
//! time: the interaction id comes from the Message-ID, so it is still one interaction.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use runtime::CancellationToken;
use crate::{AfterAccept, ImapSettings, MailTls};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::intake::{Intake, IntakeError, Source};

pub const QUEUED_KEYWORD: &str = "$SwitchboardQueued";
pub const PARKED_KEYWORD: &str = "$SwitchboardParked";

/// What a mail of an oversized message is parked with: its beginning, enough to identify it.
const OVERSIZED_HEAD_BYTES: u32 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS to {0}: {1}")]
    Tls(String, String),
    #[error("IMAP server {0} did not greet")]
    NoGreeting(String),
    #[error("logging in as {0}: {1}")]
    Login(String, async_imap::error::Error),
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
    #[error("{0}")]
    Intake(String),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Stream for T {}

type Session = async_imap::Session<Box<dyn Stream>>;

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    pub accepted: usize,
    pub parked: usize,
    /// Left for the next poll (UCS or Kafka unavailable).
    pub deferred: usize,
}

pub struct Poller {
    settings: ImapSettings,
    intake: Arc<Intake>,
}

impl Poller {
    pub fn new(settings: &ImapSettings, intake: Arc<Intake>) -> Option<Self> {
        settings.host.as_ref()?;
        Some(Self { settings: settings.clone(), intake })
    }

    fn host(&self) -> &str {
        self.settings.host.as_deref().unwrap_or_default()
    }

    /// Polls every `poll_interval_ms` until `shutdown` (a poll in progress finishes its mail).
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let s = &self.settings;
        tracing::info!(host = self.host(), port = s.port, mailbox = %s.mailbox, user = %s.username, "IMAP poller started");
        loop {
            match self.poll_once(&shutdown).await {
                Ok(report) if report != PollReport::default() => tracing::info!(?report, "IMAP poll"),
                Ok(_) => tracing::debug!("IMAP poll: nothing new"),
                Err(e) => tracing::warn!(error = %e, "IMAP poll failed; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(s.poll_interval_ms)) => {}
            }
        }
    }

    /// One poll: everything not yet handled, up to `batch` mails.
    pub async fn poll_once(&self, shutdown: &CancellationToken) -> Result<PollReport, ImapError> {
        let mut session = self.connect().await?;
        session.select(&self.settings.mailbox).await?;
        let query = format!("UNDELETED UNKEYWORD {QUEUED_KEYWORD} UNKEYWORD {PARKED_KEYWORD}");
        let mut uids: Vec<u32> = session.uid_search(&query).await?.into_iter().collect();
        uids.sort_unstable();
        uids.truncate(usize::try_from(self.settings.batch).unwrap_or(usize::MAX));
        let mut report = PollReport::default();
        let mut deleted = false;
        // Sizes of the whole batch in one round trip: oversized mail is never fetched whole.
        let mut sizes = std::collections::HashMap::new();
        if !uids.is_empty() {
            let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let fetched: Vec<_> = session.uid_fetch(set, "(UID RFC822.SIZE)").await?.try_collect().await?;
            sizes.extend(fetched.iter().filter_map(|f| Some((f.uid?, f.size?))));
        }
        for uid in uids {
            if shutdown.is_cancelled() {
                break;
            }
            let source = Source {
                channel: "imap",
                envelope_from: None,
                detail: format!("{}@{}/{} uid {uid}", self.settings.username, self.host(), self.settings.mailbox),
            };
            let size = sizes.get(&uid).copied().unwrap_or(0);
            let limit = self.intake.limits.max_bytes;
            if usize::try_from(size).unwrap_or(usize::MAX) > limit {
                let head = fetch_one(&mut session, uid, &format!("(UID BODY.PEEK[]<0.{OVERSIZED_HEAD_BYTES}>)")).await?;
                let head = head.as_ref().and_then(|f| f.body()).unwrap_or_default().to_vec();
                let reason = format!("message is {size} bytes; the limit is {limit} (the first {} bytes are kept)", head.len());
                if self.park(&mut session, uid, &head, &reason, &source).await? {
                    report.parked += 1;
                } else {
                    report.deferred += 1;
                }
                continue;
            }
            let Some(raw) = fetch_one(&mut session, uid, "(UID BODY.PEEK[])").await?.and_then(|f| f.body().map(<[u8]>::to_vec)) else {
                continue; // expunged by someone else meanwhile
            };
            match self.intake.accept(&raw, &source).await {
                Ok(accepted) => {
                    tracing::info!(uid, interaction = %accepted.interaction_id, "IMAP mail accepted");
                    match self.settings.after_accept {
                        AfterAccept::Delete => {
                            store(&mut session, uid, "+FLAGS.SILENT (\\Deleted)").await?;
                            deleted = true;
                        }
                        AfterAccept::Flag => store(&mut session, uid, &format!("+FLAGS.SILENT ({QUEUED_KEYWORD})")).await?,
                    }
                    report.accepted += 1;
                }
                Err(IntakeError::Refused(refusal)) => {
                    if self.park(&mut session, uid, &raw, &refusal.to_string(), &source).await? {
                        report.parked += 1;
                    } else {
                        report.deferred += 1;
                    }
                }
                Err(e @ IntakeError::Unavailable(_)) => {
                    tracing::warn!(uid, error = %e, "IMAP mail left in the mailbox for the next poll");
                    report.deferred += 1;
                    break;
                }
            }
        }
        if deleted {
            session.expunge().await?.try_collect::<Vec<_>>().await?;
        }
        session.logout().await.ok();
        Ok(report)
    }

    /// Dead-letters a refused mail, then marks it; `false` if the dead-letter topic was unreachable.
    async fn park(&self, session: &mut Session, uid: u32, raw: &[u8], reason: &str, source: &Source) -> Result<bool, ImapError> {
        tracing::warn!(uid, reason, "IMAP mail refused; parking it on the dead-letter topic");
        match self.intake.park(raw, reason, source).await {
            Ok(()) => {
                store(session, uid, &format!("+FLAGS.SILENT ({PARKED_KEYWORD})")).await?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(uid, error = %e, "could not park the mail; it stays for the next poll");
                Ok(false)
            }
        }
    }

    async fn connect(&self) -> Result<Session, ImapError> {
        let host = self.host().to_owned();
        let address = format!("{host}:{}", self.settings.port);
        let tcp = TcpStream::connect(&address).await.map_err(|e| ImapError::Connect(address.clone(), e))?;
        let stream: Box<dyn Stream> = match self.settings.tls {
            MailTls::None => Box::new(tcp),
            MailTls::Tls | MailTls::Starttls => Box::new(tls(&host, tcp).await?),
        };
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|e| ImapError::Connect(address.clone(), e))?
            .ok_or_else(|| ImapError::NoGreeting(address.clone()))?;
        client.login(&self.settings.username, &self.settings.password).await.map_err(|(e, _)| ImapError::Login(self.settings.username.clone(), e))
    }
}

async fn tls(host: &str, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    use tokio_rustls::rustls;
    let error = |e: &dyn std::fmt::Display| ImapError::Tls(host.to_owned(), e.to_string());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| error(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| error(&e))?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| error(&e))
}

async fn fetch_one(session: &mut Session, uid: u32, query: &str) -> Result<Option<async_imap::types::Fetch>, ImapError> {
    let fetched: Vec<_> = session.uid_fetch(uid.to_string(), query).await?.try_collect().await?;
    Ok(fetched.into_iter().find(|f| f.uid == Some(uid)))
}

async fn store(session: &mut Session, uid: u32, flags: &str) -> Result<(), ImapError> {
    session.uid_store(uid.to_string(), flags).await?.try_collect::<Vec<_>>().await?;
    Ok(())
}
