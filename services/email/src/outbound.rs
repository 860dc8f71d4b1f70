//! The outbound sender: mail waiting in the send queue (agent replies after release and QA,
//! acknowledgements and auto-responses from the workflow's `respond` step) goes out over SMTP
//! with lettre.
//!
//! Stateless: what to send, how often it was tried and when to try again are interaction
//! properties, so a restarted sender (or another instance) picks up where this one stopped.
//! One interaction at a time is claimed with a `Lock` (holder [`HOLDER`]); a supervisor's lock
//! holds a mail back. Per mail:
//! - sent: `sent_at`, `sent_message_id`, `smtp_response` set, then `Stop("sent")`;
//! - refused or unreachable: `send_attempts`, `send_error`, `send_next_attempt_at` set (doubling
//!   back-off), still locked; after `max_attempts` (or at once when the mail cannot be built,
//!   e.g. no valid recipient) it moves to the failed queue with `send_error` and is unlocked,
//!   so the workflow routes it back to its author.
//!
//! Delivery is at-least-once: a crash between the SMTP server's `250` and the `sent_at`
//! event sends the mail again on restart, with the same Message-ID, which mail clients and
//! servers use to drop the copy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract::command::{ChangeProperties, CommandPayload, Lock, LockHolderKind, MediaType, MoveToQueue, Stop, Unlock};
use floor::SharedFloor;
use floor::library::fill;
use interaction_server::client::CommandClient;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use plumbing::CancellationToken;
use plumbing::config::{MailTls, OutboundMailSettings};
use queues::board::{Board, Interaction, Status};

use crate::intake::{outbound_message_id, subject_tag};
use crate::parse::clean_header_text;

/// Lock holder and command issuer of the sender.
pub const HOLDER: &str = "email-sender";

/// How long a claim (a `Lock` sent, not yet seen on the floor) keeps others from re-claiming.
const CLAIM_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SenderSetupError {
    #[error("SMTP transport for {host}: {source}")]
    Transport { host: String, source: lettre::transport::smtp::Error },
    #[error("the From address {0:?} is not a mailbox: {1}")]
    From(String, lettre::address::AddressError),
}

/// A mail ready to hand to the SMTP server, or why it cannot be built (no retry helps).
#[derive(Debug)]
pub struct Outgoing {
    pub message: Message,
    pub message_id: String,
    pub recipient: String,
}

pub struct Sender {
    floor: Arc<SharedFloor>,
    commands: CommandClient,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    settings: OutboundMailSettings,
    from: Mailbox,
    domain: String,
}

impl Sender {
    pub fn new(
        floor: Arc<SharedFloor>,
        commands: CommandClient,
        settings: &OutboundMailSettings,
        domain: &str,
    ) -> Result<Option<Self>, SenderSetupError> {
        let Some(host) = settings.smtp_host.clone() else { return Ok(None) };
        let transport_error = |source| SenderSetupError::Transport { host: host.clone(), source };
        let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(transport_error);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(settings.smtp_port)
            .timeout(Some(Duration::from_secs(settings.timeout_s)));
        builder = match settings.tls {
            MailTls::None => builder.tls(Tls::None),
            MailTls::Starttls => builder.tls(Tls::Required(tls(&host)?)),
            MailTls::Tls => builder.tls(Tls::Wrapper(tls(&host)?)),
        };
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = settings.from.parse().map_err(|e| SenderSetupError::From(settings.from.clone(), e))?;
        Ok(Some(Self { floor, commands, transport: builder.build(), settings: settings.clone(), from, domain: domain.to_owned() }))
    }

    /// Sends what the send queue holds, as it arrives, until `shutdown`; then lets the mails
    /// in flight finish.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut changed = self.floor.changed();
        while !self.floor.caught_up() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                r = changed.changed() => r?,
            }
        }
        tracing::info!(queue = %self.settings.send_queue, "email sender started");
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut claimed: HashMap<String, Instant> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            for work in self.next_work(&mut claimed, &in_flight) {
                match work {
                    Work::Claim(id) => {
                        let lock = CommandPayload::Lock(Lock { holder: HOLDER.into(), holder_kind: LockHolderKind::Router });
                        if let Err(e) = self.commands.send(&self.commands.command(&id, lock)).await {
                            tracing::warn!(interaction = %id, error = %e, "could not claim a mail to send; will retry");
                            claimed.remove(&id);
                        }
                    }
                    Work::Send(job) => {
                        let sender = self.clone();
                        let in_flight = in_flight.clone();
                        tasks.spawn(async move {
                            let id = job.id.clone();
                            if let Err(e) = sender.deliver(job).await {
                                tracing::warn!(interaction = %id, error = %e, "could not record a send outcome; will retry");
                            }
                            lock_set(&in_flight).remove(&id);
                        });
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                r = changed.changed() => r?,
                Some(_) = tasks.join_next() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// What to do now: claim unlocked mail, send claimed mail that is due.
    fn next_work(&self, claimed: &mut HashMap<String, Instant>, in_flight: &Mutex<HashSet<String>>) -> Vec<Work> {
        let floor = self.floor.read();
        let board = floor.board();
        let now = contract::now_millis();
        claimed.retain(|id, at| at.elapsed() < CLAIM_PATIENCE && board.interaction(id).is_some_and(|i| i.lock.is_none()));
        let mut in_flight = lock_set(in_flight);
        let mut work = Vec::new();
        for i in board.queued() {
            if i.queue.as_deref() != Some(self.settings.send_queue.as_str()) || i.media_type != MediaType::Email || i.status != Status::Waiting {
                continue;
            }
            match &i.lock {
                None => {
                    if !claimed.contains_key(&i.id) {
                        claimed.insert(i.id.clone(), Instant::now());
                        work.push(Work::Claim(i.id.clone()));
                    }
                }
                Some(lock) if lock.holder == HOLDER => {
                    let due = i.properties.get("send_next_attempt_at").and_then(|t| t.parse::<i64>().ok()).is_none_or(|t| t <= now);
                    if due && !in_flight.contains(&i.id) {
                        in_flight.insert(i.id.clone());
                        let attempts = i.properties.get("send_attempts").and_then(|a| a.parse().ok()).unwrap_or(0);
                        let mail = if i.properties.contains_key("sent_at") {
                            Mail::AlreadySent
                        } else {
                            match compose(i, board, floor.library(), &self.from, &self.domain) {
                                Ok(outgoing) => Mail::Ready(Box::new(outgoing)),
                                Err(reason) => Mail::Unsendable(reason),
                            }
                        };
                        work.push(Work::Send(Job { id: i.id.clone(), attempts, mail }));
                    }
                }
                Some(_) => {} // a supervisor holds it back
            }
        }
        work
    }

    /// One attempt at one mail, and its outcome as commands; returns once the floor shows them.
    async fn deliver(&self, job: Job) -> anyhow::Result<()> {
        let attempts = job.attempts + 1;
        let now = contract::now_millis();
        let commands = match job.mail {
            Mail::AlreadySent => vec![stop_sent()],
            Mail::Unsendable(reason) => self.give_up(attempts, &reason),
            Mail::Ready(outgoing) => match self.transport.send(outgoing.message).await {
                Ok(response) => {
                    let reply = response.message().collect::<Vec<_>>().join(" ");
                    tracing::info!(interaction = %job.id, recipient = %outgoing.recipient, message_id = %outgoing.message_id, "mail sent");
                    vec![
                        set(
                            [
                                ("sent_at", now.to_string()),
                                ("sent_message_id", outgoing.message_id.clone()),
                                ("smtp_response", format!("{} {reply}", response.code())),
                                ("send_attempts", attempts.to_string()),
                            ],
                            &["send_next_attempt_at"],
                        ),
                        stop_sent(),
                    ]
                }
                Err(e) => {
                    let reason = format!("SMTP: {e}");
                    if attempts >= self.settings.max_attempts {
                        self.give_up(attempts, &reason)
                    } else {
                        let delay = backoff_ms(attempts, self.settings.retry_initial_ms, self.settings.retry_max_ms);
                        tracing::warn!(interaction = %job.id, attempt = attempts, retry_in_ms = delay, error = %e, "mail not sent; will retry");
                        let next = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
                        vec![set(
                            [("send_attempts", attempts.to_string()), ("send_error", reason), ("send_next_attempt_at", next.to_string())],
                            &[],
                        )]
                    }
                }
            },
        };
        let mut last = None;
        for payload in commands {
            last = Some(self.commands.send(&self.commands.command(&job.id, payload)).await?);
        }
        // Until the floor reflects the outcome, the same mail must not be picked again.
        if let Some((partition, offset)) = last {
            let mut changed = self.floor.changed();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while self.floor.read().reflected(partition).is_none_or(|r| r < offset) {
                if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                    anyhow::bail!("the outcome of {} was not reflected within 60 s", job.id);
                }
            }
        }
        Ok(())
    }

    fn give_up(&self, attempts: u32, reason: &str) -> Vec<CommandPayload> {
        tracing::warn!(attempts, reason, queue = %self.settings.failed_queue, "mail not sent; giving up and returning it");
        vec![
            set([("send_error", reason.to_owned()), ("send_failed_at", contract::now_millis().to_string())], &["send_attempts", "send_next_attempt_at"]),
            CommandPayload::MoveToQueue(MoveToQueue {
                queue: self.settings.failed_queue.clone(),
                reason: format!("not sent after {attempts} attempt(s): {reason}"),
            }),
            CommandPayload::Unlock(Unlock { holder: HOLDER.into() }),
        ]
    }
}

enum Work {
    Claim(String),
    Send(Job),
}

struct Job {
    id: String,
    attempts: u32,
    mail: Mail,
}

enum Mail {
    Ready(Box<Outgoing>),
    Unsendable(String),
    /// `sent_at` is on the log but the `Stop` is not (a crash in between).
    AlreadySent,
}

fn lock_set(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set<const N: usize>(pairs: [(&str, String); N], remove: &[&str]) -> CommandPayload {
    CommandPayload::ChangeProperties(ChangeProperties {
        set: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        remove: remove.iter().map(|r| (*r).to_owned()).collect(),
        priority: None,
    })
}

fn stop_sent() -> CommandPayload {
    CommandPayload::Stop(Stop { reason: "sent".into() })
}

/// Doubling from `initial`, capped at `max`.
pub fn backoff_ms(attempt: u32, initial: u64, max: u64) -> u64 {
    initial.saturating_mul(1u64 << attempt.saturating_sub(1).min(32)).min(max)
}

/// Builds the mail for an outbound interaction: an agent's reply (`reply_text`, `to`,
/// `subject`) or a standard response (`standard_response`, answering `reply_to_interaction`).
/// Threading: Message-ID `sb.<id>@<domain>`, In-Reply-To the answered mail, References its
/// chain, and `[ref:<answered id>]` in the subject. Everything that reaches a header is
/// cleaned of CR/LF and control characters first.
pub fn compose(i: &Interaction, board: &Board, library: &floor::library::Library, from: &Mailbox, domain: &str) -> Result<Outgoing, String> {
    let answered = i.properties.get("reply_to_interaction").and_then(|id| board.interaction(id));
    let answered_props = answered.map(|a| &a.properties);
    let answered_prop = |key: &str| answered_props.and_then(|p| p.get(key)).cloned();
    let prop = |key: &str| i.properties.get(key).cloned();

    let (subject, text, html, automatic) = if let Some(text) = prop("reply_text") {
        let subject = prop("subject").or_else(|| answered_prop("subject").map(|s| format!("Re: {s}"))).unwrap_or_default();
        (subject, text, None, false)
    } else if let Some(name) = prop("standard_response") {
        // RFC 3834: never answer automatic mail, whatever the workflow says.
        if let Some(why) = answered_prop("auto_submitted").filter(|v| v != "no") {
            return Err(format!("not answering automatic mail ({why})"));
        }
        let response = library.find(&name).ok_or_else(|| format!("no standard response named {name:?} in UCS"))?;
        let mut fields: BTreeMap<String, String> = answered_props.cloned().unwrap_or_default();
        if let Some(a) = answered {
            fields.insert("interaction_id".into(), a.id.clone());
        }
        let original_subject = prop("original_subject").or_else(|| answered_prop("subject")).unwrap_or_default();
        let subject = response.subject.as_deref().map(|s| fill(s, &fields)).unwrap_or_else(|| format!("Re: {original_subject}"));
        (subject, fill(&response.body_text, &fields), response.body_html.as_deref().map(|h| fill(h, &fields)), true)
    } else {
        return Err("neither reply_text nor standard_response: nothing to send".into());
    };

    let recipient_text = prop("to").or_else(|| prop("original_from")).or_else(|| answered_prop("from")).ok_or("no recipient (to)")?;
    let recipient: Mailbox = clean_header_text(&recipient_text).parse().map_err(|e| format!("recipient {recipient_text:?} is not an address: {e}"))?;

    let mut subject = clean_header_text(&subject);
    if let Some(a) = answered {
        let tag = subject_tag(&a.id);
        if !subject.contains(&tag) {
            subject = format!("{subject} {tag}").trim_start().to_owned();
        }
    }
    let message_id = outbound_message_id(&i.id, domain);
    let mut builder = Message::builder()
        .from(from.clone())
        .to(recipient.clone())
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date_now();
    let in_reply_to = prop("original_message_id").or_else(|| answered_prop("message_id").or_else(|| answered_prop("sent_message_id")));
    if let Some(parent) = in_reply_to.map(|m| clean_message_id(&m)).filter(|m| !m.is_empty()) {
        let mut chain: Vec<String> = answered_prop("references").unwrap_or_default().split_whitespace().map(clean_message_id).filter(|m| !m.is_empty()).collect();
        chain.retain(|m| *m != parent);
        chain.push(parent.clone());
        builder = builder.in_reply_to(format!("<{parent}>")).references(chain.iter().map(|m| format!("<{m}>")).collect::<Vec<_>>().join(" "));
    }
    if automatic {
        builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-replied".into()));
    }
    let message = match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html)),
        None => builder.body(text),
    }
    .map_err(|e| format!("could not build the mail: {e}"))?;
    Ok(Outgoing { message, message_id, recipient: recipient.email.to_string() })
}

/// A Message-ID as stored (no brackets), safe inside `<…>`.
fn clean_message_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>')).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use contract::event::{EventPayload, InteractionEvent, PlacedInQueue, Submitted};

    fn event(id: &str, offset: i64, index: i32, payload: EventPayload) -> InteractionEvent {
        InteractionEvent {
            event_id: format!("{id}:{offset}:{index}"),
            interaction_id: id.to_owned(),
            occurred_at: 1_700_000_000_000 + offset,
            causation_id: format!("c{offset}"),
            command_partition: 0,
            command_offset: offset,
            index,
            set_size: 2,
            payload,
        }
    }

    /// `(id, parent, properties)` of each interaction.
    type Item<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

    fn board_with(items: &[Item<'_>]) -> Board {
        let mut board = Board::new();
        for (n, (id, parent, props)) in items.iter().enumerate() {
            let submitted = Submitted {
                media_type: MediaType::Email,
                origin: "test".into(),
                priority: 0,
                properties: props.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: parent.map(str::to_owned),
                submitted_by: "test".into(),
            };
            for (index, payload) in [
                EventPayload::Submitted(submitted),
                EventPayload::PlacedInQueue(PlacedInQueue { queue: "q".into(), previous_queue: None, reason: "submitted".into() }),
            ]
            .into_iter()
            .enumerate()
            {
                board.apply(&event(id, i64::try_from(n).unwrap(), i32::try_from(index).unwrap(), payload));
            }
        }
        board
    }

    /// The mail as sent, long header lines unfolded.
    fn render(outgoing: &Outgoing) -> String {
        String::from_utf8(outgoing.message.formatted()).unwrap().replace("\r\n ", " ")
    }

    #[test]
    fn a_reply_threads_and_tags_and_cannot_inject_headers() {
        let board = board_with(&[
            ("11111111-1111-1111-1111-111111111111", None, &[("subject", "Help"), ("from", "ada@example.com"), ("message_id", "m1@example.com"), ("references", "m0@example.com")]),
            (
                "22222222-2222-2222-2222-222222222222",
                Some("11111111-1111-1111-1111-111111111111"),
                &[
                    ("reply_to_interaction", "11111111-1111-1111-1111-111111111111"),
                    ("reply_text", "Here you are."),
                    ("subject", "Re: Help\r\nBcc: victim@example.com"),
                    ("to", "ada@example.com\r\nBcc: other@example.com"),
                ],
            ),
        ]);
        let i = board.interaction("22222222-2222-2222-2222-222222222222").unwrap();
        let from: Mailbox = "Support <support@shop.example>".parse().unwrap();
        let e = compose(i, &board, &floor::library::Library::default(), &from, "shop.example");
        // The injected recipient makes the address invalid: refused, not sent to anyone.
        assert!(e.as_ref().is_err_and(|e| e.contains("not an address")), "{e:?}");

        let mut board = board;
        board.apply(&event(
            "22222222-2222-2222-2222-222222222222",
            9,
            0,
            EventPayload::PropertiesChanged(contract::event::PropertiesChanged {
                set: [("to".to_owned(), "ada@example.com".to_owned())].into(),
                removed: vec![],
                priority: None,
            }),
        ));
        let i = board.interaction("22222222-2222-2222-2222-222222222222").unwrap();
        let out = compose(i, &board, &floor::library::Library::default(), &from, "shop.example").unwrap();
        let text = render(&out);
        assert!(text.contains("Message-ID: <sb.22222222-2222-2222-2222-222222222222@shop.example>"), "{text}");
        assert!(text.contains("In-Reply-To: <m1@example.com>"), "{text}");
        assert!(text.contains("References: <m0@example.com> <m1@example.com>"), "{text}");
        assert!(text.contains("Subject: Re: Help Bcc: victim@example.com [ref:11111111-1111-1111-1111-111111111111]"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "no injected header: {text}");
        assert!(!text.contains("Auto-Submitted"), "{text}");
        assert_eq!(out.recipient, "ada@example.com");
    }

    #[test]
    fn an_acknowledgement_is_filled_marked_automatic_and_never_answers_automatic_mail() {
        let mut library = floor::library::Library::default();
        library.apply(&contract::ucs::UcsEvent {
            event_id: "e1".into(),
            key: "r1".into(),
            occurred_at: 0,
            issued_by: "test".into(),
            payload: contract::ucs::UcsPayload::StandardResponseSaved(contract::ucs::StandardResponseSaved {
            response_id: "r1".into(),
            name: "acknowledgement".into(),
            category_id: None,
            subject: Some("We have your mail: {{subject}}".into()),
            body_text: "Dear {{from_name}}, we will answer soon.".into(),
            body_html: None,
            media: vec![],
        }),
        });
        let parent = "11111111-1111-1111-1111-111111111111";
        let board = board_with(&[
            (parent, None, &[("subject", "Help"), ("from", "ada@example.com"), ("from_name", "Ada"), ("message_id", "m1@example.com")]),
            ("33333333-3333-3333-3333-333333333333", Some(parent), &[("reply_to_interaction", parent), ("standard_response", "Acknowledgement"), ("original_from", "ada@example.com")]),
            ("44444444-4444-4444-4444-444444444444", None, &[("subject", "Out of office"), ("from", "bot@example.com"), ("auto_submitted", "auto-replied")]),
            ("55555555-5555-5555-5555-555555555555", None, &[("reply_to_interaction", "44444444-4444-4444-4444-444444444444"), ("standard_response", "acknowledgement")]),
        ]);
        let from: Mailbox = "support@shop.example".parse().unwrap();
        let out = compose(board.interaction("33333333-3333-3333-3333-333333333333").unwrap(), &board, &library, &from, "shop.example").unwrap();
        let text = render(&out);
        assert!(text.contains("Subject: We have your mail: Help [ref:11111111-1111-1111-1111-111111111111]"), "{text}");
        assert!(text.contains("Dear Ada, we will answer soon."), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
        assert!(text.contains("In-Reply-To: <m1@example.com>"), "{text}");
        let e = compose(board.interaction("55555555-5555-5555-5555-555555555555").unwrap(), &board, &library, &from, "shop.example").unwrap_err();
        assert!(e.contains("automatic mail"), "{e}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!([1, 2, 3, 4, 40].map(|a| backoff_ms(a, 100, 500)), [100, 200, 400, 500, 500]);
    }
}
