//! The floor's fold restarts from a snapshot: a floor snapshotted after any prefix of a log
//! (interaction events as the Interaction Server decides them, agent events, standard
//! responses), stored as JSON, restored and given the rest equals the floor of the whole log,
//! with stopped interactions leaving after random windows.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use contract::agent::{AgentEvent, AgentPayload, LoggedIn, LoggedOut, NotReady, Ready};
use contract::command::*;
use contract::event::InteractionEvent;
use floor::Floor;
use interactions::partition::{Outcome, PartitionState, Retention};
use proptest::prelude::*;

const IDS: [&str; 4] = ["i1", "i2", "i3", "i4"];
const AGENTS: [&str; 2] = ["agent:a", "agent:b"];

#[derive(Debug, Clone)]
enum Input {
    Interaction(InteractionEvent),
    Agent(AgentEvent),
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(items).prop_map(str::to_owned)
}

fn command() -> impl Strategy<Value = CommandPayload> {
    prop_oneof![
        Just(CommandPayload::Submit(Submit::new(MediaType::Email, "test", "inbound"))),
        pick(&AGENTS).prop_map(|agent_id| CommandPayload::Offer(Offer { agent_id, timeout_ms: 30_000 })),
        pick(&AGENTS).prop_map(|agent_id| CommandPayload::AcceptOffer(AgentRef { agent_id })),
        pick(&AGENTS).prop_map(|agent_id| CommandPayload::RejectOffer(AgentReason { agent_id, reason: "busy".into() })),
        pick(&AGENTS).prop_map(|agent_id| CommandPayload::JoinParty(JoinParty { agent_id, role: PartyRole::Consult })),
        pick(&AGENTS).prop_map(|agent_id| CommandPayload::ReturnToQueue(ReturnToQueue { agent_id, queue: None })),
        Just(CommandPayload::Stop(Stop { reason: "done".into() })),
    ]
}

fn agent_payload() -> impl Strategy<Value = AgentPayload> {
    prop_oneof![
        Just(AgentPayload::LoggedIn(LoggedIn { place: None, skills: BTreeMap::new(), capacity: BTreeMap::from([("email".into(), 2)]) })),
        Just(AgentPayload::Ready(Ready { media: vec!["email".into()] })),
        Just(AgentPayload::NotReady(NotReady { media: vec!["email".into()], reason: "break".into() })),
        Just(AgentPayload::LoggedOut(LoggedOut { reason: None })),
    ]
}

/// Commands decided by a partition state into events, with agent events between them; seven
/// seconds of log time a step, so minutes (the trend) and eviction windows pass.
fn log() -> impl Strategy<Value = Vec<Input>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (pick(&IDS), command()).prop_map(|(id, c)| (Some((id, c)), None)),
            1 => (pick(&AGENTS), agent_payload()).prop_map(|(a, p)| (None, Some((a, p)))),
        ],
        1..80,
    )
    .prop_map(|steps| {
        let mut state = PartitionState::new(Retention::FOREVER);
        let mut out = Vec::new();
        for (n, step) in steps.into_iter().enumerate() {
            let at = 1_000_000 + i64::try_from(n).unwrap() * 7_000;
            match step {
                (Some((id, payload)), _) => {
                    let command = InteractionCommand { command_id: format!("c{n}"), interaction_id: id, issued_at: at, issued_by: "t".into(), payload };
                    if let Outcome::Emit { events, .. } = state.handle(0, i64::try_from(n).unwrap(), &command) {
                        out.extend(events.into_iter().map(Input::Interaction));
                    }
                }
                (None, Some((agent_id, payload))) => {
                    out.push(Input::Agent(AgentEvent { event_id: format!("a{n}"), agent_id, occurred_at: at, causation_id: None, payload }));
                }
                (None, None) => {}
            }
        }
        out
    })
}

fn apply(floor: &mut Floor, input: &Input) {
    match input {
        Input::Interaction(e) => {
            floor.apply_interaction_event(e);
        }
        Input::Agent(e) => {
            floor.apply_agent_event(e);
        }
    }
}

fn json(floor: &Floor) -> serde_json::Value {
    serde_json::to_value(floor.snapshot()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn floor_snapshot_plus_the_tail_equals_a_full_replay(
        log in log(),
        cut in any::<proptest::sample::Index>(),
        keep_stopped_ms in 0..120_000i64,
    ) {
        let cut = cut.index(log.len() + 1);
        let mut full = Floor::new(20_000, keep_stopped_ms);
        let mut prefix = Floor::new(20_000, keep_stopped_ms);
        for (n, input) in log.iter().enumerate() {
            apply(&mut full, input);
            if n < cut {
                apply(&mut prefix, input);
            }
        }
        let stored = serde_json::to_string(&prefix.snapshot()).unwrap();
        let mut continued = Floor::restore(serde_json::from_str(&stored).unwrap(), keep_stopped_ms).expect("same window");
        for input in &log[cut..] {
            apply(&mut continued, input);
        }
        prop_assert_eq!(json(&continued), json(&full));
        prop_assert_eq!(continued.board(), full.board());
        // Views computed from it agree too.
        let now = 1_000_000 + 80 * 7_000;
        prop_assert_eq!(continued.trend(now, 60), full.trend(now, 60));
        prop_assert!(Floor::restore(serde_json::from_str(&stored).unwrap(), keep_stopped_ms + 1).is_none(), "another window: a full replay");
    }
}
