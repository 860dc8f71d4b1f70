//! One `interaction.commands` partition's share of the server: the board of its interactions,
//! rebuilt from the matching `interaction.events` partition, and where to resume.
//!
//! Effectively-once without transactions: every command yields at least one event (a
//! rejection if nothing else), each event records the command's offset, index and set size,
//! and ids are derived from the command. So the events log alone says which commands are
//! reflected, and a command whose event set was cut short by a crash is decided again (on the
//! board as it stood before it) and only its missing events are written.

use std::collections::{BTreeSet, HashMap, VecDeque};

use contract::command::InteractionCommand;
use contract::event::InteractionEvent;
use crate::board::{Board, BoardSnapshot, EndedIds};

use crate::decide::{decide, rejection};

/// How long a partition's state keeps what it no longer needs, in log time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A stopped interaction leaves the board this long after it stopped (`None`: never).
    pub keep_stopped_ms: Option<i64>,
    /// A command id is remembered this long (the commands topic's retention: an older command
    /// can no longer be redelivered by Kafka; `None`: forever).
    pub remember_commands_ms: Option<i64>,
}

impl Retention {
    pub const FOREVER: Self = Self { keep_stopped_ms: None, remember_commands_ms: None };
}

impl Default for Retention {
    fn default() -> Self {
        Self::FOREVER
    }
}

/// Command ids already applied (as 128 bits of their SHA-256, like [`EndedIds`]), each with
/// the log time it was first applied, oldest first.
#[derive(Debug, Default, Clone, PartialEq)]
struct SeenCommands {
    at: HashMap<u128, i64>,
    order: VecDeque<(i64, u128)>,
}

impl SeenCommands {
    fn contains(&self, id: &str) -> bool {
        self.at.contains_key(&EndedIds::key(id))
    }

    fn insert(&mut self, id: &str, at: i64) {
        self.insert_key(EndedIds::key(id), at);
    }

    fn insert_key(&mut self, key: u128, at: i64) {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.at.entry(key) {
            entry.insert(at);
            self.order.push_back((at, key));
        }
    }

    /// Forgets the ids applied before `before`.
    fn forget_before(&mut self, before: i64) {
        while self.order.front().is_some_and(|(at, _)| *at < before) {
            if let Some((_, id)) = self.order.pop_front() {
                self.at.remove(&id);
            }
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PartitionState {
    pub board: Board,
    retention: Retention,
    /// Command ids already applied: a retried command is recognised and not applied twice.
    seen_commands: SeenCommands,
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
    /// `(log time applied, command id key)`, oldest first.
    seen_commands: Vec<(i64, u128)>,
    remember_commands_ms: Option<i64>,
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

/// A [`PartitionState`] being rebuilt from its events log; see [`PartitionState::recovering`].
#[derive(Debug)]
pub struct Recovering {
    state: PartitionState,
    set: Vec<InteractionEvent>,
}

impl Recovering {
    pub fn feed(&mut self, event: InteractionEvent) {
        let state = &mut self.state;
        if event.command_offset < state.resume_at {
            state.duplicate_events += 1;
            return;
        }
        if self
            .set
            .first()
            .is_some_and(|first| first.command_offset != event.command_offset)
        {
            // A set that never completed, followed by a later command's events: the
            // writer moved on, so what is there is all there is.
            state.commit(std::mem::take(&mut self.set));
        }
        if self.set.iter().any(|e| e.index == event.index) {
            state.duplicate_events += 1;
            return;
        }
        let complete = i32::try_from(self.set.len() + 1).unwrap_or(i32::MAX) >= event.set_size;
        self.set.push(event);
        if complete {
            state.commit(std::mem::take(&mut self.set));
        }
    }

    /// The state once every event is fed; a set still incomplete is where handling resumes.
    pub fn finish(self) -> PartitionState {
        let Self { mut state, set } = self;
        if let Some(first) = set.first() {
            state.resume_at = first.command_offset;
            state.partial = Some((first.command_offset, set.iter().map(|e| e.index).collect()));
        }
        state
    }
}

impl PartitionState {
    /// An empty partition that keeps state for `retention`.
    pub fn new(retention: Retention) -> Self {
        Self {
            board: Board::with_window(retention.keep_stopped_ms),
            retention,
            ..Self::default()
        }
    }

    /// Rebuilds the state from the partition's events, in log order, keeping everything.
    pub fn recover(events: impl IntoIterator<Item = InteractionEvent>) -> Self {
        Self::default().recover_tail(events)
    }

    /// Rebuilds the state from the partition's events with `retention`.
    pub fn recover_with(retention: Retention, events: impl IntoIterator<Item = InteractionEvent>) -> Self {
        Self::new(retention).recover_tail(events)
    }

    /// Command ids remembered (bounded by the retention).
    pub fn remembered_commands(&self) -> usize {
        self.seen_commands.at.len()
    }

    /// Continues a state restored from a [`PartitionSnapshot`] with the events after it.
    /// `snapshot(s) + recover_tail(tail) == recover(all)` whenever the snapshot was taken
    /// with no command's events half-written ([`PartitionState::snapshot`] refuses otherwise).
    pub fn recover_tail(self, events: impl IntoIterator<Item = InteractionEvent>) -> Self {
        let mut recovering = self.recovering();
        for event in events {
            recovering.feed(event);
        }
        recovering.finish()
    }

    /// Recovery one event at a time, as they are read (nothing but the current command's set
    /// is held: a long log is never in memory at once).
    pub fn recovering(self) -> Recovering {
        Recovering { state: self, set: Vec::new() }
    }

    fn commit(&mut self, set: Vec<InteractionEvent>) {
        for event in &set {
            self.board.apply(event);
        }
        if let Some(first) = set.first() {
            self.resume_at = first.command_offset + 1;
            self.remember(&first.causation_id);
        }
    }

    /// Remembers an applied command at the board's clock and forgets those past retention.
    /// Called at the same point of a command live and on recovery, so both agree.
    fn remember(&mut self, command_id: &str) {
        let now = self.board.clock();
        self.seen_commands.insert(command_id, now);
        if let Some(keep) = self.retention.remember_commands_ms {
            self.seen_commands.forget_before(now.saturating_sub(keep));
        }
    }

    /// The state as a snapshot stores it, or `None` while a command's events are only partly
    /// in the log (a snapshot then could not be continued exactly).
    pub fn snapshot(&self) -> Option<PartitionSnapshot> {
        if self.partial.is_some() {
            return None;
        }
        Some(PartitionSnapshot {
            board: self.board.snapshot(),
            seen_commands: self.seen_commands.order.iter().cloned().collect(),
            remember_commands_ms: self.retention.remember_commands_ms,
            resume_at: self.resume_at,
            duplicate_events: self.duplicate_events,
        })
    }

    /// The state a snapshot was taken of, or `None` if it was taken with another retention
    /// (the caller replays in full).
    pub fn restore(snapshot: PartitionSnapshot, retention: Retention) -> Option<Self> {
        if snapshot.remember_commands_ms != retention.remember_commands_ms {
            return None;
        }
        let mut seen_commands = SeenCommands::default();
        for (at, key) in snapshot.seen_commands {
            seen_commands.insert_key(key, at);
        }
        Some(Self {
            board: Board::restore(snapshot.board, retention.keep_stopped_ms)?,
            retention,
            seen_commands,
            resume_at: snapshot.resume_at,
            partial: None,
            duplicate_events: snapshot.duplicate_events,
        })
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
        self.remember(&command.command_id);
        self.resume_at = offset + 1;
        if let Some((partial_offset, present)) = self.partial.take()
            && partial_offset == offset {
                events.retain(|e| !present.contains(&e.index));
            }
        Outcome::Emit { events, rejected }
    }
}
