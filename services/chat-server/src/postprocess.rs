//! After a chat: the chat interaction is updated with how the chat ended (`chat_ended_by`,
//! `chat_end_reason`, `chat_ended_at`), so the agent's desk shows it and the agent wraps up.
//!
//! Stateless and restart-safe: every second the ended sessions are compared with the floor,
//! and what is not reflected there yet is sent again (the Interaction Server applies a
//! repeated change idempotently in effect: the same values). Any instance may do it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use contract::chat::ChatPayload;
use contract::command::{ChangeProperties, CommandPayload};
use plumbing::CancellationToken;

use crate::ChatServer;

/// How long to wait for a sent update to show on the floor before sending it again.
const PATIENCE: Duration = Duration::from_secs(10);

pub async fn run(server: ChatServer, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut sent: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !server.sessions().caught_up() || !server.floor().caught_up() {
            continue;
        }
        let due: Vec<(String, BTreeMap<String, String>)> = {
            let sessions = server.sessions().read();
            let floor = server.floor().read();
            sessions
                .ended()
                .filter_map(|s| {
                    let interaction = s.interaction_id.as_deref()?;
                    let i = floor.board().interaction(interaction)?;
                    if i.properties.contains_key("chat_ended_at") || i.status == queues::board::Status::Stopped {
                        return None;
                    }
                    if sent.get(interaction).is_some_and(|at| at.elapsed() < PATIENCE) {
                        return None;
                    }
                    let (by, reason) = s.ended.clone()?;
                    let at = s
                        .since(0, chat::Audience::Agents)
                        .find(|e| matches!(e.event.payload, ChatPayload::SessionEnded(_)))
                        .map_or(0, |e| e.event.occurred_at);
                    Some((
                        interaction.to_owned(),
                        BTreeMap::from([
                            ("chat_ended_by".to_owned(), by),
                            ("chat_end_reason".to_owned(), reason),
                            ("chat_ended_at".to_owned(), at.to_string()),
                        ]),
                    ))
                })
                .collect()
        };
        for (interaction, set) in due {
            let command = server.commands().command(&interaction, CommandPayload::ChangeProperties(ChangeProperties { set, remove: vec![], priority: None }));
            match server.commands().send(&command).await {
                Ok(_) => {
                    sent.insert(interaction, Instant::now());
                }
                Err(e) => tracing::warn!(interaction = %interaction, error = %e, "could not record the chat's end; will retry"),
            }
        }
        sent.retain(|_, at| at.elapsed() < PATIENCE * 6);
    }
}
