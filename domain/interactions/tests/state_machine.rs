//! Properties of the interaction state machine and its recovery, over random command streams.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use contract::command::*;
use contract::event::{EventPayload, InteractionEvent};
use interactions::partition::{Outcome, PartitionState, Retention};
use proptest::prelude::*;
use interactions::board::Board;

const IDS: [&str; 3] = ["i1", "i2", "i3"];
const AGENTS: [&str; 3] = ["agent:a", "agent:b", "agent:c"];
const QUEUES: [&str; 2] = ["inbound", "vip"];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn payload() -> impl Strategy<Value = CommandPayload> {
    let agent = || pick(&AGENTS).prop_map(str::to_owned);
    let queue = || pick(&QUEUES).prop_map(str::to_owned);
    prop_oneof![
        (queue(), 0..3i32, pick(&MediaType::ALL)).prop_map(|(q, priority, media_type)| {
            CommandPayload::Submit(Submit {
                media_type,
                origin: "test".into(),
                target_queue: q,
                priority,
                properties: BTreeMap::from([("subject".into(), "hello".into())]),
                contact_id: None,
                content_ref: None,
                parent_interaction_id: None,
            })
        }),
        (0..5i32).prop_map(|p| CommandPayload::ChangeProperties(ChangeProperties {
            set: BTreeMap::new(),
            remove: vec![],
            priority: Some(p),
        })),
        (pick(&["router", "sup:1"]), any::<bool>()).prop_map(|(h, sup)| CommandPayload::Lock(
            Lock {
                holder: h.into(),
                holder_kind: if sup {
                    LockHolderKind::Supervisor
                } else {
                    LockHolderKind::Router
                },
            }
        )),
        pick(&["router", "sup:1"])
            .prop_map(|h| CommandPayload::Unlock(Unlock { holder: h.into() })),
        (agent(), 0..40_000i64).prop_map(|(agent_id, timeout_ms)| CommandPayload::Offer(Offer {
            agent_id,
            timeout_ms
        })),
        agent().prop_map(|agent_id| CommandPayload::AcceptOffer(AgentRef { agent_id })),
        agent().prop_map(|agent_id| CommandPayload::RejectOffer(AgentReason {
            agent_id,
            reason: "busy".into()
        })),
        agent().prop_map(|agent_id| CommandPayload::TimeOutOffer(AgentRef { agent_id })),
        agent().prop_map(|agent_id| CommandPayload::RevokeOffer(AgentReason {
            agent_id,
            reason: "logout".into()
        })),
        agent().prop_map(|agent_id| CommandPayload::JoinParty(JoinParty {
            agent_id,
            role: PartyRole::Consult
        })),
        agent().prop_map(|agent_id| CommandPayload::LeaveParty(AgentRef { agent_id })),
        (
            agent(),
            proptest::option::of(agent()),
            proptest::option::of(queue())
        )
            .prop_map(|(from, to_agent, to_queue)| {
                CommandPayload::Transfer(Transfer {
                    from_agent_id: from,
                    to_agent_id: to_agent,
                    to_queue,
                })
            }),
        (agent(), proptest::option::of(queue())).prop_map(|(agent_id, queue)| {
            CommandPayload::ReturnToQueue(ReturnToQueue { agent_id, queue })
        }),
        queue().prop_map(|queue| CommandPayload::MoveToQueue(MoveToQueue {
            queue,
            reason: "supervisor".into()
        })),
        Just(CommandPayload::Stop(Stop {
            reason: "done".into()
        })),
    ]
}

/// Commands over a few interactions, agents and queues, so most of them meet each other; a
/// few reuse an earlier command id (client retries).
fn commands() -> impl Strategy<Value = Vec<InteractionCommand>> {
    proptest::collection::vec(
        (
            pick(&IDS),
            pick(&["router", "sup:1", "agent:a"]),
            payload(),
            0..10u8,
        ),
        1..120,
    )
    .prop_map(|raw| {
        let mut out: Vec<InteractionCommand> = Vec::new();
        for (n, (id, by, payload, retry)) in raw.into_iter().enumerate() {
            if retry == 0 && !out.is_empty() {
                let again = out[n % out.len()].clone();
                out.push(again);
                continue;
            }
            out.push(InteractionCommand {
                command_id: format!("c{n}"),
                interaction_id: id.into(),
                issued_at: 1_000 + i64::try_from(n).unwrap() * 10,
                issued_by: by.into(),
                payload,
            });
        }
        out
    })
}

/// Keep everything, or let stopped interactions and old command ids go after a short window
/// (commands are 10 ms apart in log time, so both happen within a generated stream).
fn retention() -> impl Strategy<Value = Retention> {
    prop_oneof![
        Just(Retention::FOREVER),
        (proptest::option::of(0..300i64), proptest::option::of(0..300i64))
            .prop_map(|(keep_stopped_ms, remember_commands_ms)| Retention { keep_stopped_ms, remember_commands_ms }),
    ]
}

/// Runs commands (at offsets 0..) through a live state, returning it and the events log.
fn run_live(commands: &[InteractionCommand]) -> (PartitionState, Vec<InteractionEvent>) {
    run_live_with(Retention::FOREVER, commands)
}

fn run_live_with(retention: Retention, commands: &[InteractionCommand]) -> (PartitionState, Vec<InteractionEvent>) {
    let mut state = PartitionState::new(retention);
    let mut log = Vec::new();
    for (offset, command) in commands.iter().enumerate() {
        if let Outcome::Emit { events, .. } = state.handle(0, offset as i64, command) {
            log.extend(events);
        }
    }
    (state, log)
}

fn assert_views_match(board: &Board) -> Result<(), TestCaseError> {
    for queue in board.queue_names() {
        prop_assert_eq!(
            board.queue_view(&queue),
            board.queue_view_from_scratch(&queue),
            "queue {}",
            queue
        );
        for (place, interaction) in board.queue_view_from_scratch(&queue).interactions.iter().enumerate() {
            prop_assert_eq!(board.position(&interaction.id), Some((queue.as_str(), place + 1)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Applying the events one by one as they are decided equals rebuilding from the log, and
    /// the incrementally kept queue order equals the order recomputed from scratch.
    #[test]
    fn incremental_equals_rebuilt(commands in commands(), retention in retention()) {
        let (live, log) = run_live_with(retention, &commands);
        let rebuilt = PartitionState::recover_with(retention, log.clone());
        prop_assert_eq!(&live.board, &rebuilt.board);
        // Retried commands write nothing, so the log's resume point is just past the last
        // command that wrote events; re-reading the retries after it is harmless.
        let last_written = log.last().map_or(0, |e| e.command_offset + 1);
        prop_assert_eq!(rebuilt.resume_at(), last_written);
        prop_assert!(rebuilt.resume_at() <= live.resume_at());
        assert_views_match(&live.board)?;
        let mut from_scratch = Board::with_window(retention.keep_stopped_ms);
        for e in &log {
            from_scratch.apply(e);
        }
        prop_assert_eq!(&from_scratch, &live.board);
    }

    /// A crash after any number of written events (even mid-set), then recovery from that log
    /// and re-consumption from the resume point, ends with exactly the log an uninterrupted run
    /// writes: no event lost, none written twice.
    #[test]
    fn crash_anywhere_then_resume_gives_the_same_log(commands in commands(), cut in any::<proptest::sample::Index>(), retention in retention()) {
        let (_, full_log) = run_live_with(retention, &commands);
        let cut = cut.index(full_log.len() + 1);
        let mut log: Vec<InteractionEvent> = full_log[..cut].to_vec();
        let mut state = PartitionState::recover_with(retention, log.clone());
        // The consumer restarts from an offset at or before the resume point (committed offsets lag).
        for (offset, command) in commands.iter().enumerate() {
            if let Outcome::Emit { events, .. } = state.handle(0, offset as i64, command) {
                log.extend(events);
            }
        }
        prop_assert_eq!(&log, &full_log);
        let written: std::collections::HashSet<_> = log.iter().map(|e| (e.command_offset, e.index)).collect();
        prop_assert_eq!(written.len(), log.len(), "no event written twice");
        if retention.remember_commands_ms.is_none() {
            // (A retry that comes after its id was forgotten is decided again, so its events
            // repeat ids; in production the window is the commands topic's retention.)
            let ids: std::collections::HashSet<_> = log.iter().map(|e| &e.event_id).collect();
            prop_assert_eq!(ids.len(), log.len(), "event ids are unique");
        }
    }

    /// A snapshot taken at any offset of the events log where no command's events are half
    /// written, stored (JSON) and restored, then continued with the tail, equals a full
    /// replay; and also a log with a crash's repeated events in it. Where a command's events
    /// are cut in two, no snapshot is offered.
    #[test]
    fn snapshot_at_any_offset_plus_the_tail_equals_a_full_replay(
        commands in commands(),
        cut in any::<proptest::sample::Index>(),
        crash in any::<proptest::sample::Index>(),
        retention in retention(),
    ) {
        let (_, full_log) = run_live_with(retention, &commands);
        // A log as a crash leaves it: a prefix, then the whole run again (its repeats skipped).
        let crash = crash.index(full_log.len() + 1);
        let mut log: Vec<InteractionEvent> = full_log[..crash].to_vec();
        let mut state = PartitionState::recover_with(retention, log.clone());
        for (offset, command) in commands.iter().enumerate() {
            if let Outcome::Emit { events, .. } = state.handle(0, offset as i64, command) {
                log.extend(events);
            }
        }
        for log in [&full_log, &log] {
            let cut = cut.index(log.len() + 1);
            let full = PartitionState::recover_with(retention, log.iter().cloned());
            let prefix = PartitionState::recover_with(retention, log[..cut].iter().cloned());
            let mid_set = log.get(cut).is_some_and(|next| next.index > 0 && log[..cut].last().is_some_and(|last| last.command_offset == next.command_offset));
            match prefix.snapshot() {
                Some(snapshot) => {
                    let stored = serde_json::to_string(&snapshot).unwrap();
                    let restored = PartitionState::restore(serde_json::from_str(&stored).unwrap(), retention).expect("same retention");
                    let continued = restored.recover_tail(log[cut..].iter().cloned());
                    prop_assert_eq!(&continued, &full);
                    assert_views_match(&continued.board)?;
                }
                None => prop_assert!(mid_set, "no snapshot offered at a clean cut {}", cut),
            }
        }
    }

    /// Whatever the commands, the board never breaks its own rules.
    #[test]
    fn invariants_hold(commands in commands()) {
        let (live, log) = run_live(&commands);
        for i in live.board.interactions() {
            use interactions::board::Status;
            match i.status {
                Status::Assigned => prop_assert!(i.owner.is_some() && i.offer.is_none()),
                Status::Offered => prop_assert!(i.offer.is_some() && i.owner.is_none()),
                Status::Waiting => prop_assert!(i.offer.is_none() && i.owner.is_none()),
                Status::Stopped => prop_assert!(i.owner.is_none() && i.parties.is_empty()),
                Status::New => prop_assert!(false, "no interaction stays New after its command"),
            }
            prop_assert!(i.owner.as_ref().is_none_or(|o| !i.parties.contains_key(o)));
        }
        // Every command that was not a retry produced at least one event.
        let distinct: std::collections::HashSet<_> = commands.iter().map(|c| &c.command_id).collect();
        let caused: std::collections::HashSet<_> = log.iter().map(|e| &e.causation_id).collect();
        prop_assert_eq!(distinct.len(), caused.len());
        for e in &log {
            if let EventPayload::CommandRejected(r) = &e.payload {
                prop_assert!(!r.reason.is_empty());
            }
        }
    }

    /// Arbitrary events, valid or not, in any order: the board never panics and its index still
    /// matches a recomputation.
    #[test]
    fn any_event_sequence_is_safe(events in proptest::collection::vec(any::<InteractionEvent>(), 0..60)) {
        let mut board = Board::new();
        for e in &events {
            board.apply(e);
        }
        assert_views_match(&board)?;
    }

    /// The queue projection's fold: a board snapshotted after any prefix of a log (the
    /// decided one, or arbitrary events), stored as JSON, restored and given the rest equals
    /// the board of the whole log.
    #[test]
    fn board_snapshot_plus_the_tail_equals_a_full_replay(
        commands in commands(),
        noise in proptest::collection::vec(any::<InteractionEvent>(), 0..20),
        cut in any::<proptest::sample::Index>(),
        keep_stopped_ms in proptest::option::of(0..300i64),
    ) {
        let (_, mut log) = run_live(&commands);
        log.extend(noise);
        let cut = cut.index(log.len() + 1);
        let mut full = Board::with_window(keep_stopped_ms);
        let mut prefix = Board::with_window(keep_stopped_ms);
        for (n, e) in log.iter().enumerate() {
            full.apply(e);
            if n < cut {
                prefix.apply(e);
            }
        }
        let stored = serde_json::to_string(&prefix.snapshot()).unwrap();
        let mut continued = Board::restore(serde_json::from_str(&stored).unwrap(), keep_stopped_ms).expect("same window");
        for e in &log[cut..] {
            continued.apply(e);
        }
        prop_assert_eq!(&continued, &full);
        assert_views_match(&continued)?;
    }
}

#[test]
fn a_typical_life_and_readable_rejections() {
    let cmd = |n: i64, id: &str, by: &str, payload| InteractionCommand {
        command_id: format!("c{n}"),
        interaction_id: id.into(),
        issued_at: n,
        issued_by: by.into(),
        payload,
    };
    let submit = CommandPayload::Submit(Submit {
        media_type: MediaType::Email,
        origin: "email-server".into(),
        target_queue: "inbound".into(),
        priority: 1,
        properties: BTreeMap::new(),
        contact_id: None,
        content_ref: None,
        parent_interaction_id: None,
    });
    let commands = vec![
        cmd(1, "i1", "email-server", submit.clone()),
        cmd(
            2,
            "i1",
            "router",
            CommandPayload::Offer(Offer {
                agent_id: "agent:a".into(),
                timeout_ms: 30_000,
            }),
        ),
        cmd(
            3,
            "i1",
            "agent:b",
            CommandPayload::AcceptOffer(AgentRef {
                agent_id: "agent:b".into(),
            }),
        ),
        cmd(
            4,
            "i1",
            "agent:a",
            CommandPayload::AcceptOffer(AgentRef {
                agent_id: "agent:a".into(),
            }),
        ),
        cmd(5, "i1", "email-server", submit),
        cmd(
            6,
            "i9",
            "router",
            CommandPayload::Stop(Stop { reason: "x".into() }),
        ),
        cmd(
            7,
            "i1",
            "agent:a",
            CommandPayload::Stop(Stop {
                reason: "replied".into(),
            }),
        ),
        cmd(
            8,
            "i1",
            "router",
            CommandPayload::MoveToQueue(MoveToQueue {
                queue: "vip".into(),
                reason: "r".into(),
            }),
        ),
    ];
    let (state, log) = run_live(&commands);
    let kinds: Vec<_> = log.iter().map(|e| e.payload.kind()).collect();
    assert_eq!(
        kinds,
        [
            "Submitted",
            "PlacedInQueue",
            "OfferedToAgent",
            "CommandRejected",
            "OfferAccepted",
            "Assigned",
            "CommandRejected",
            "CommandRejected",
            "Stopped",
            "CommandRejected"
        ]
    );
    let reasons: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::CommandRejected(r) => Some(r.reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "interaction i1 is offered to agent:a, not to agent:b",
            "interaction i1 already exists",
            "no interaction i9 (it was never submitted)",
            "interaction i1 is stopped (replied)",
        ]
    );
    assert_eq!(
        state.board.interaction("i1").map(|i| i.status),
        Some(interactions::board::Status::Stopped)
    );
}

/// A stopped interaction leaves the board once the window has passed in log time; its id is
/// still refused as a duplicate afterwards (also after a snapshot and restore), work on it is
/// refused with a reason that says where its history is, and old command ids are forgotten.
#[test]
fn stopped_interactions_leave_but_their_ids_are_remembered() {
    let cmd = |n: i64, at: i64, id: &str, payload| InteractionCommand {
        command_id: format!("c{n}"),
        interaction_id: id.into(),
        issued_at: at,
        issued_by: "t".into(),
        payload,
    };
    let submit = CommandPayload::Submit(Submit::new(MediaType::Email, "email-server", "inbound"));
    let hour = 3_600_000;
    let retention = Retention { keep_stopped_ms: Some(hour), remember_commands_ms: Some(24 * hour) };
    let mut state = PartitionState::new(retention);
    let mut log = Vec::new();
    let mut run = |state: &mut PartitionState, offset: i64, command: InteractionCommand| -> Option<String> {
        match state.handle(0, offset, &command) {
            Outcome::Emit { events, rejected } => {
                let reason = events.iter().find_map(|e| match &e.payload {
                    EventPayload::CommandRejected(r) => Some(r.reason.clone()),
                    _ => None,
                });
                log.extend(events);
                assert_eq!(rejected, reason.is_some());
                reason
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(run(&mut state, 0, cmd(0, 0, "mail-1", submit.clone())), None);
    assert_eq!(run(&mut state, 1, cmd(1, 10, "mail-1", CommandPayload::Stop(Stop { reason: "done".into() }))), None);
    // Within the window it stays, and a late fact is still recorded.
    let late = CommandPayload::ChangeProperties(ChangeProperties { set: BTreeMap::from([("receipt".into(), "ok".into())]), remove: vec![], priority: None });
    assert_eq!(run(&mut state, 2, cmd(2, hour, "mail-1", late.clone())), None);
    assert!(state.board.interaction("mail-1").is_some());
    // Another interaction's event moves the clock past the window: mail-1 leaves.
    assert_eq!(run(&mut state, 3, cmd(3, hour + 11, "mail-2", submit.clone())), None);
    assert!(state.board.interaction("mail-1").is_none());
    assert!(state.board.has_left("mail-1") && state.board.has_seen("mail-1"));
    assert_eq!((state.board.len(), state.board.evicted()), (1, 1));
    // The redelivered mail, months later, is still a duplicate.
    let refused = run(&mut state, 4, cmd(4, 90 * 24 * hour, "mail-1", submit.clone())).expect("refused");
    assert!(refused.contains("already exists"), "{refused}");
    let refused = run(&mut state, 5, cmd(5, 90 * 24 * hour, "mail-1", late)).expect("refused");
    assert!(refused.contains("no longer live") && refused.contains("UCS"), "{refused}");
    // Command ids older than a day (log time) are forgotten: only the last two are kept.
    assert_eq!(state.remembered_commands(), 2);
    // The same after a restore from a snapshot and after a full replay.
    let stored = serde_json::to_string(&state.snapshot().unwrap()).unwrap();
    let restored = PartitionState::restore(serde_json::from_str(&stored).unwrap(), retention).unwrap();
    assert_eq!(restored, PartitionState::recover_with(retention, log.iter().cloned()));
    assert!(restored.board.has_left("mail-1") && !restored.board.has_seen("mail-3"));
    // A snapshot of another retention is not used (a full replay instead).
    assert!(PartitionState::restore(serde_json::from_str(&stored).unwrap(), Retention::FOREVER).is_none());
}
