//! One `interaction.commands` partition's share of the server: the board of its interactions,
//! rebuilt from the matching `interaction.events` partition, and where to resume.
//!
//! Effectively-once without transactions: every command yields at least one event (a
//! rejection if nothing else), each event records the command's offset, index and set size,
//! and ids are derived from the command. So the events log alone says which commands are
//! reflected, and a command whose event set was cut short by a crash is decided again (on the
//! board as it stood before it) and only its missing events are written.

use std::collections::{BTreeSet, HashSet};

use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use crate::board::{Board, BoardSnapshot};

use crate::decide::{decide, rejection};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PartitionState {
    pub board: Board,
    /// Command ids already applied: a retried command is recognised and not applied twice.
    seen_commands: HashSet<String>,
    /// The first command offset whose events are not all in the log.
    resume_at: i64,
    /// The command at `resume_at`, if some of its events are already in the log: their indices.
    partial: Option<(i64, BTreeSet<i32>)>,
    /// Events in the log that repeat ones already applied (skipped on recovery).
    pub duplicate_events: u64,
}

/// A partition's state between two commands, as stored by the Interaction Server.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionSnapshot {
    board: BoardSnapshot,
    seen_commands: Vec<String>,
    resume_at: i64,
    duplicate_events: u64,
}

/// What to do with one consumed command.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Its events are already in the log (read before a restart): nothing to write.
    AlreadyReflected,
    /// Same command id as one applied earlier (a client retry): nothing to write.
    DuplicateCommand,
    /// Write these events, in order; `rejected` tells whether the command was refused.
    Emit {
        events: Vec<InteractionEvent>,
        rejected: bool,
    },
}

impl PartitionState {
    /// Rebuilds the state from the partition's events, in log order.
    pub fn recover(events: impl IntoIterator<Item = InteractionEvent>) -> Self {
        Self::default().recover_tail(events)
    }

    /// Continues a state restored from a [`PartitionSnapshot`] with the events after it.
    /// `snapshot(s) + recover_tail(tail) == recover(all)` whenever the snapshot was taken
    /// with no command's events half-written ([`PartitionState::snapshot`] refuses otherwise).
    pub fn recover_tail(self, events: impl IntoIterator<Item = InteractionEvent>) -> Self {
        let mut state = self;
        let mut set: Vec<InteractionEvent> = Vec::new();
        for event in events {
            if event.command_offset < state.resume_at {
                state.duplicate_events += 1;
                continue;
            }
            if set
                .first()
                .is_some_and(|first| first.command_offset != event.command_offset)
            {
                // A set that never completed, followed by a later command's events: the
                // writer moved on, so what is there is all there is.
                state.commit(std::mem::take(&mut set));
            }
            if set.iter().any(|e| e.index == event.index) {
                state.duplicate_events += 1;
                continue;
            }
            let complete = i32::try_from(set.len() + 1).unwrap_or(i32::MAX) >= event.set_size;
            set.push(event);
            if complete {
                state.commit(std::mem::take(&mut set));
            }
        }
        if let Some(first) = set.first() {
            state.resume_at = first.command_offset;
            state.partial = Some((first.command_offset, set.iter().map(|e| e.index).collect()));
        }
        state
    }

    fn commit(&mut self, set: Vec<InteractionEvent>) {
        if let Some(first) = set.first() {
            self.resume_at = first.command_offset + 1;
            self.seen_commands.insert(first.causation_id.clone());
        }
        for event in &set {
            self.board.apply(event);
        }
    }

    /// The state as a snapshot stores it, or `None` while a command's events are only partly
    /// in the log (a snapshot then could not be continued exactly).
    pub fn snapshot(&self) -> Option<PartitionSnapshot> {
        if self.partial.is_some() {
            return None;
        }
        let mut seen_commands: Vec<String> = self.seen_commands.iter().cloned().collect();
        seen_commands.sort();
        Some(PartitionSnapshot {
            board: self.board.snapshot(),
            seen_commands,
            resume_at: self.resume_at,
            duplicate_events: self.duplicate_events,
        })
    }

    pub fn restore(snapshot: PartitionSnapshot) -> Self {
        Self {
            board: Board::restore(snapshot.board),
            seen_commands: snapshot.seen_commands.into_iter().collect(),
            resume_at: snapshot.resume_at,
            partial: None,
            duplicate_events: snapshot.duplicate_events,
        }
    }

    /// The offset the server resumes from: everything before it is reflected in the log.
    pub fn resume_at(&self) -> i64 {
        self.resume_at
    }

    /// Decides `command` (read at `partition`/`offset`), applies its events to the board and
    /// returns the ones still to be written.
    pub fn handle(&mut self, partition: i32, offset: i64, command: &InteractionCommand) -> Outcome {
        if offset < self.resume_at {
            return Outcome::AlreadyReflected;
        }
        if self.seen_commands.contains(&command.command_id) {
            self.resume_at = offset + 1;
            return Outcome::DuplicateCommand;
        }
        let (payloads, rejected) = match decide(&self.board, command) {
            Ok(payloads) => (payloads, false),
            Err(reason) => (vec![rejection(command, reason)], true),
        };
        let set_size = i32::try_from(payloads.len()).unwrap_or(i32::MAX);
        let mut events: Vec<InteractionEvent> = payloads
            .into_iter()
            .zip(0..)
            .map(|(payload, index)| InteractionEvent {
                event_id: InteractionEvent::id_for(&command.command_id, index),
                interaction_id: command.interaction_id.clone(),
                occurred_at: command.issued_at,
                causation_id: command.command_id.clone(),
                command_partition: partition,
                command_offset: offset,
                index,
                set_size,
                payload,
            })
            .collect();
        for event in &events {
            self.board.apply(event);
        }
        self.seen_commands.insert(command.command_id.clone());
        self.resume_at = offset + 1;
        if let Some((partial_offset, present)) = self.partial.take()
            && partial_offset == offset {
                events.retain(|e| !present.contains(&e.index));
            }
        Outcome::Emit { events, rejected }
    }
}
