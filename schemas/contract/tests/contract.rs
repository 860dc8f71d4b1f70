//! The `.avsc` files are the contract: these tests prove the Rust types follow them and that
//! every schema still reads everything written under a released version.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use apache_avro::{Schema, schema_compatibility::SchemaCompatibility};
use contract::{
    AvroMessage, ContractError,
    agent::AgentEvent,
    chat::ChatEvent,
    ucs::UcsEvent,
    command::{CommandPayload, InteractionCommand, Stop},
    event::InteractionEvent,
    staff::{StaffCredential, StaffEvent},
};
use proptest::prelude::*;

fn avro_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../avro")
}

const MESSAGES: [&str; 6] = [
    "staff-event",
    "interaction-command",
    "interaction-event",
    "agent-event",
    "ucs-event",
    "chat-event",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn interaction_commands_round_trip(command: InteractionCommand) {
        let bytes = command.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(InteractionCommand::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, command);
    }

    #[test]
    fn interaction_events_round_trip(event: InteractionEvent) {
        let bytes = event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(InteractionEvent::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, event);
    }

    #[test]
    fn agent_events_round_trip(event: AgentEvent) {
        let bytes = event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(AgentEvent::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, event);
    }

    #[test]
    fn ucs_events_round_trip(event: UcsEvent) {
        let bytes = event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(UcsEvent::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, event);
    }

    #[test]
    fn chat_events_round_trip(event: ChatEvent) {
        let bytes = event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ChatEvent::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, event);
    }

    #[test]
    fn staff_events_round_trip(event: StaffEvent) {
        let bytes = event.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(StaffEvent::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, event);
    }

    #[test]
    fn staff_credentials_round_trip(credential: StaffCredential) {
        let bytes = credential.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(StaffCredential::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, credential);
    }

    /// What a stranger wrote is an error with a reason, never a panic.
    #[test]
    fn garbage_is_an_error_not_a_panic(bytes: Vec<u8>, keep_header: bool) {
        let mut record = if keep_header {
            InteractionEvent::schema_set().encode(&sample_event()).map_err(|e| TestCaseError::fail(e.to_string()))?[..10].to_vec()
        } else {
            Vec::new()
        };
        record.extend(bytes);
        let _ = InteractionEvent::decode(&record);
    }
}

fn sample_event() -> InteractionEvent {
    InteractionEvent {
        event_id: InteractionEvent::id_for("c-1", 0),
        interaction_id: "i-1".into(),
        occurred_at: 1_700_000_000_000,
        causation_id: "c-1".into(),
        command_partition: 0,
        command_offset: 7,
        index: 0,
        set_size: 1,
        payload: contract::event::EventPayload::Stopped(contract::event::Stopped {
            reason: "done".into(),
            stopped_by: "agent:ann".into(),
        }),
    }
}

/// Every record starts with the single-object marker and the fingerprint of the `.avsc` as a
/// stranger would compute it from the file alone.
#[test]
fn records_carry_the_fingerprint_of_the_avsc_file() {
    let schema = Schema::parse_str(
        &std::fs::read_to_string(avro_dir().join("interaction-event.avsc")).unwrap(),
    )
    .unwrap();
    let bytes = sample_event().encode().unwrap();
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    assert_eq!(&bytes[2..10], contract::fingerprint(&schema).as_slice());
    // The body decodes with the file's schema and no Rust types at all.
    let value = apache_avro::from_avro_datum(&schema, &mut &bytes[10..], None).unwrap();
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("not a record")
    };
    assert_eq!(
        fields[1],
        (
            "interaction_id".into(),
            apache_avro::types::Value::String("i-1".into())
        )
    );
}

/// Fingerprints as another implementation computes them from the released files (fastavro
/// 1.13: `fingerprint(to_parsing_canonical_form(parse_schema(...)), "CRC-64-AVRO")`, hex in
/// record byte order). Released files never change, so neither may these.
#[test]
fn fingerprints_match_other_avro_implementations() {
    let pinned = [
        ("v1/agent-event.avsc", "181e2f342747721a"),
        ("v1/interaction-command.avsc", "55a535381c83294d"),
        ("v1/interaction-event.avsc", "c0db10406259ca4b"),
        ("v2/chat-event.avsc", "2504316a43efeef8"),
        ("v2/ucs-event.avsc", "11ad36de273d39fa"),
        ("v3/chat-event.avsc", "4c9997125cc7ec1a"),
    ];
    for (file, hex) in pinned {
        let path = avro_dir().join("released").join(file);
        let schema = Schema::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let ours: String = contract::fingerprint(&schema)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ours, hex, "{}", path.display());
        assert!(!contract::canonical_form(&schema).contains(r#"{"type":"long"}"#));
    }
}

/// Records written before the canonical-form fix carry apache-avro's own fingerprint; they
/// still decode.
#[test]
fn records_with_the_legacy_fingerprint_still_decode() {
    let schema = InteractionEvent::schema_set().current().clone();
    let legacy = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&legacy);
    apache_avro::write_avro_datum_ref(&schema, &sample_event(), &mut bytes).unwrap();
    assert_eq!(InteractionEvent::decode(&bytes).unwrap(), sample_event());
}

/// The serializer matches struct fields to schema fields by name, so a type that drifts from
/// its `.avsc` fails to encode instead of writing something else.
#[test]
fn a_type_that_drifts_from_the_schema_does_not_encode() {
    #[derive(serde::Serialize)]
    struct Drifted {
        command_id: String,
        interaction: String, // the schema calls it interaction_id
        issued_at: i64,
        issued_by: String,
        payload: CommandPayload,
    }
    let drifted = Drifted {
        command_id: "c".into(),
        interaction: "i".into(),
        issued_at: 0,
        issued_by: "test".into(),
        payload: CommandPayload::Stop(Stop { reason: "x".into() }),
    };
    let err = InteractionCommand::schema_set()
        .encode(&drifted)
        .unwrap_err();
    assert!(matches!(err, ContractError::Encode { .. }), "{err}");
}

#[test]
fn unknown_fingerprints_and_missing_markers_are_named_in_the_error() {
    let mut bytes = sample_event().encode().unwrap();
    bytes[5] ^= 0xFF;
    let err = InteractionEvent::decode(&bytes).unwrap_err().to_string();
    assert!(err.contains("unknown writer schema fingerprint"), "{err}");
    let err = InteractionEvent::decode(b"{\"json\": true}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an Avro single-object record"), "{err}");
}

/// Released versions live in `schemas/avro/released/<version>/`. The current schema must read
/// every one of them, and each must read every earlier one (replays read the oldest events with
/// the newest schema, so compatibility is checked transitively, not just against the last).
#[test]
fn every_schema_reads_every_released_version() {
    let mut versions: Vec<PathBuf> = std::fs::read_dir(avro_dir().join("released"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    versions.sort_by_key(|p| version_number(p));
    assert!(!versions.is_empty(), "no released schema versions found");
    for message in MESSAGES {
        let mut chain: Vec<(String, Schema)> = versions
            .iter()
            .filter_map(|dir| {
                let path = dir.join(format!("{message}.avsc"));
                let json = std::fs::read_to_string(&path).ok()?;
                Some((
                    path.display().to_string(),
                    Schema::parse_str(&json).unwrap(),
                ))
            })
            .collect();
        let current = avro_dir().join(format!("{message}.avsc"));
        chain.push((
            current.display().to_string(),
            Schema::parse_str(&std::fs::read_to_string(&current).unwrap()).unwrap(),
        ));
        for (i, (reader_name, reader)) in chain.iter().enumerate() {
            for (writer_name, writer) in &chain[..i] {
                if let Err(e) = SchemaCompatibility::can_read(writer, reader) {
                    panic!("{reader_name} cannot read records written with {writer_name}: {e}");
                }
                let (old, new) = (union_branches(writer), union_branches(reader));
                assert!(
                    new.starts_with(&old),
                    "{reader_name}: payload union branches may only be appended \
                     (decoding is by position); was {old:?}, now {new:?}"
                );
            }
        }
    }
}

/// The codec must know every released writer schema, or it could not decode old records.
#[test]
fn the_codec_knows_every_released_version() {
    let released_on_disk = |message: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(avro_dir().join("released"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|dir| dir.join(format!("{message}.avsc")).exists())
            .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let known = |set: &contract::SchemaSet| -> Vec<String> {
        let mut v: Vec<String> = set
            .released()
            .iter()
            .map(|w| w.version.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        known(InteractionCommand::schema_set()),
        released_on_disk(InteractionCommand::NAME)
    );
    assert_eq!(
        known(InteractionEvent::schema_set()),
        released_on_disk(InteractionEvent::NAME)
    );
    assert_eq!(
        known(AgentEvent::schema_set()),
        released_on_disk(AgentEvent::NAME)
    );
    assert_eq!(
        known(UcsEvent::schema_set()),
        released_on_disk(UcsEvent::NAME)
    );
    assert_eq!(
        known(ChatEvent::schema_set()),
        released_on_disk(ChatEvent::NAME)
    );
    assert_eq!(known(StaffEvent::schema_set()), released_on_disk(StaffEvent::NAME));
    assert_eq!(known(StaffCredential::schema_set()), released_on_disk(StaffCredential::NAME));
}

/// A record written with the oldest released schema decodes with today's types.
#[test]
fn records_written_with_released_schemas_decode_today() {
    let set = InteractionEvent::schema_set();
    let oldest = &set.released()[0];
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&contract::fingerprint(&oldest.schema));
    apache_avro::write_avro_datum_ref(&oldest.schema, &sample_event(), &mut bytes).unwrap();
    assert_eq!(InteractionEvent::decode(&bytes).unwrap(), sample_event());
}

/// Names of the branches of the envelope's `payload` union, in order.
fn union_branches(schema: &Schema) -> Vec<String> {
    let Schema::Record(record) = schema else {
        panic!("envelope is not a record")
    };
    let payload = record
        .fields
        .iter()
        .find(|f| f.name == "payload")
        .expect("payload field");
    let Schema::Union(union) = &payload.schema else {
        panic!("payload is not a union")
    };
    union
        .variants()
        .iter()
        .map(|v| match v {
            Schema::Record(r) => r.name.fullname(None),
            other => format!("{other:?}"),
        })
        .collect()
}

fn version_number(dir: &Path) -> u32 {
    let name = dir.file_name().unwrap().to_string_lossy();
    name.trim_start_matches('v')
        .parse()
        .unwrap_or_else(|_| panic!("released dir {name} is not v<N>"))
}
