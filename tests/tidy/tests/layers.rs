//! The layering of docs/ARCHITECTURE.md, checked on `cargo metadata`:
//!
//! contract → domain (pure) → runtime (`crates/runtime`, the only one on rdkafka) → shared
//! components (projections, small client crates) → services (never one on another) → binary.
//!
//! Each workspace crate's layer comes from where it lives. An edge may only point down (or,
//! for domain and shared crates, sideways); a domain crate may not use an I/O crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Contract,
    Domain,
    Runtime,
    Shared,
    Service,
    Binary,
    Test,
}

fn layer_of(relative: &str) -> Layer {
    match relative {
        p if p.starts_with("schemas/") => Layer::Contract,
        p if p.starts_with("domain/") => Layer::Domain,
        "crates/runtime" => Layer::Runtime,
        p if p.starts_with("projections/") => Layer::Shared,
        "crates/switchboard" => Layer::Binary,
        p if p.starts_with("crates/") => Layer::Shared,
        p if p.starts_with("services/") => Layer::Service,
        p if p.starts_with("tests/") => Layer::Test,
        other => panic!("{other}: a crate outside the known layers; give it one here and in docs/ARCHITECTURE.md"),
    }
}

/// Whether a crate of layer `from` may depend on one of layer `to`.
fn allowed(from: Layer, to: Layer) -> bool {
    use Layer::*;
    match from {
        Contract => false,
        Domain => matches!(to, Contract | Domain),
        Runtime => matches!(to, Contract | Domain),
        Shared => matches!(to, Contract | Domain | Runtime | Shared),
        Service => matches!(to, Contract | Domain | Runtime | Shared),
        Binary => to != Test,
        Test => true,
    }
}

/// What pure crates (contract and domain) may never use.
const IO_CRATES: &[&str] = &["tokio", "axum", "sqlx", "rdkafka", "reqwest", "lettre", "hyper", "tower", "tokio-util", "async-imap"];

struct Crate {
    name: String,
    dir: String,
    layer: Layer,
    /// (dependency name, kind) — kind "normal", "dev" or "build".
    deps: Vec<(String, String)>,
}

fn workspace() -> (std::path::PathBuf, Vec<Crate>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .expect("running cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let crates = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str().unwrap());
            let dir = manifest.parent().unwrap().strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            Crate {
                name: p["name"].as_str().unwrap().to_owned(),
                layer: layer_of(&dir),
                dir,
                deps: p["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| (d["name"].as_str().unwrap().to_owned(), d["kind"].as_str().unwrap_or("normal").to_owned()))
                    .collect(),
            }
        })
        .collect();
    (root, crates)
}

/// Every forbidden edge of `crates`, in words.
fn violations(crates: &[Crate]) -> Vec<String> {
    let layers: BTreeMap<&str, (Layer, &str)> = crates.iter().map(|c| (c.name.as_str(), (c.layer, c.dir.as_str()))).collect();
    let mut found = Vec::new();
    for c in crates {
        for (dep, kind) in &c.deps {
            if *dep == c.name {
                continue; // a crate's own features in its dev-dependencies
            }
            if let Some(&(to, dir)) = layers.get(dep.as_str()) {
                if !allowed(c.layer, to) {
                    found.push(format!("{} ({}, {:?}) depends on {dep} ({dir}, {to:?}) [{kind}]", c.name, c.dir, c.layer));
                }
            } else if matches!(c.layer, Layer::Contract | Layer::Domain) && IO_CRATES.contains(&dep.as_str()) {
                found.push(format!("{} ({}) is pure but depends on {dep} [{kind}]", c.name, c.dir));
            } else if dep == "rdkafka" && !matches!(c.layer, Layer::Runtime | Layer::Test) {
                found.push(format!("{} ({}) depends on rdkafka: only the runtime (crates/runtime) may", c.name, c.dir));
            }
        }
    }
    found
}

#[test]
fn every_dependency_edge_points_down_the_layers() {
    let (_, crates) = workspace();
    assert!(crates.iter().any(|c| c.layer == Layer::Domain), "no domain crates found: is the layout read right?");
    let found = violations(&crates);
    assert!(found.is_empty(), "dependency edges the layering forbids:\n  {}", found.join("\n  "));
}

/// The checker itself: a service depending on a service, a domain crate on tokio or the
/// runtime, and a shared crate on rdkafka are each caught.
#[test]
fn the_checker_catches_forbidden_edges() {
    let (_, mut crates) = workspace();
    let desk = crates.iter().position(|c| c.name == "desk").unwrap();
    crates[desk].deps.push(("router".into(), "normal".into()));
    let chat = crates.iter().position(|c| c.name == "chat").unwrap();
    crates[chat].deps.push(("tokio".into(), "normal".into()));
    crates[chat].deps.push(("runtime".into(), "dev".into()));
    let floor = crates.iter().position(|c| c.name == "floor").unwrap();
    crates[floor].deps.push(("rdkafka".into(), "normal".into()));
    let found = violations(&crates);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0..].iter().any(|f| f.starts_with("desk") && f.contains("router")), "{found:#?}");
}

/// rdkafka's types stay inside the runtime: outside `crates/runtime` no source names rdkafka
/// or the Kafka client types runtime still re-exports. `STILL_USING` lists files allowed to
/// for a while (the list may only shrink: a file that no longer uses them must leave it);
/// it is empty since the Interaction Server's loop moved onto `runtime::partitioned`.
#[test]
fn rdkafka_types_stay_in_the_runtime() {
    const STILL_USING: &[&str] = &[];
    const KAFKA_TYPES: &[&str] = &[
        "rdkafka", "FutureProducer", "BorrowedMessage", "OwnedMessage", "TopicPartitionList", "KafkaError",
        "GroupConsumer", "DeliveryFuture", "RDKafkaErrorCode", "CommitMode", "runtime::Message", "runtime::Offset",
        "runtime::Consumer", "runtime::Producer", "runtime::Headers", "kafka::Reader",
    ];
    let (root, crates) = workspace();
    let mut using = Vec::new();
    for c in crates.iter().filter(|c| !matches!(c.layer, Layer::Runtime | Layer::Test)) {
        let mut stack = vec![root.join(&c.dir).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if KAFKA_TYPES.iter().any(|t| text.contains(t)) || imports_kafka_type(&text) {
                        using.push(path.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    using.sort();
    let new: Vec<&String> = using.iter().filter(|f| !STILL_USING.contains(&f.as_str())).collect();
    assert!(new.is_empty(), "rdkafka types outside the runtime (use runtime's writers and followers): {new:?}");
    let gone: Vec<&&str> = STILL_USING.iter().filter(|f| !using.iter().any(|u| u == *f)).collect();
    assert!(gone.is_empty(), "these no longer use rdkafka types: take them off STILL_USING: {gone:?}");
}

/// Whether a `use runtime::{...}` list names one of the re-exported client types.
fn imports_kafka_type(text: &str) -> bool {
    const BARE: &[&str] = &["Message", "Offset", "Consumer", "Producer", "Headers"];
    text.match_indices("use runtime::{").any(|(at, _)| {
        let list = &text[at..];
        let list = &list[..list.find('}').unwrap_or(list.len())];
        list.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| BARE.contains(&word))
    })
}

/// Every service has the one shape: its crate's `service(ctx: &runtime::service::Context)`
/// (sync or async) is what the binary's list calls. `web-ui` is the pages (routes the desk's
/// and web API's entries serve), not a service of its own.
#[test]
fn every_service_has_one_entry_that_the_binary_lists() {
    const NOT_A_SERVICE: &[&str] = &["services/web-ui"];
    let (root, crates) = workspace();
    let list = std::fs::read_to_string(root.join("crates/switchboard/src/services.rs")).unwrap();
    let mut wrong = Vec::new();
    for c in crates.iter().filter(|c| c.layer == Layer::Service && !NOT_A_SERVICE.contains(&c.dir.as_str())) {
        let lib = std::fs::read_to_string(root.join(&c.dir).join("src/lib.rs")).unwrap();
        if !lib.contains("fn service(ctx: &runtime::service::Context") {
            wrong.push(format!("{} has no `pub fn service(ctx: &runtime::service::Context) -> anyhow::Result<Service>`", c.dir));
        }
        let call = format!("{}::service(ctx", c.name.replace('-', "_"));
        if !list.contains(&call) {
            wrong.push(format!("crates/switchboard/src/services.rs does not make {} with `{call})`", c.name));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Each service owns its settings: a `Section` is defined in a service's (or shared
/// component's) crate, never in the runtime, whose `config.rs` keeps only what every process
/// shares; and the binary's composition (`crates/switchboard/src/settings.rs`) reads and hands
/// out every one of them.
#[test]
fn every_settings_section_lives_with_its_service_and_the_binary_composes_it() {
    let (root, crates) = workspace();
    let runtime_config = std::fs::read_to_string(root.join("crates/runtime/src/config.rs")).unwrap();
    assert!(!runtime_config.contains("impl Section for"), "the runtime defines a service's section");
    let composition = std::fs::read_to_string(root.join("crates/switchboard/src/settings.rs")).unwrap();
    let mut sections = Vec::new();
    for c in crates.iter().filter(|c| matches!(c.layer, Layer::Service | Layer::Shared)) {
        let Ok(text) = std::fs::read_to_string(root.join(&c.dir).join("src/settings.rs")) else { continue };
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("impl runtime::config::Section for ")) {
            let name = line.trim_end_matches(" {").to_owned();
            sections.push((c.name.replace('-', "_"), name));
        }
    }
    assert!(sections.len() >= 8, "sections found: {sections:?}");
    for (krate, name) in &sections {
        let typed = format!(": {krate}::{name},");
        let field = composition
            .lines()
            .find_map(|l| l.trim().strip_prefix("pub ")?.strip_suffix(typed.as_str()).map(str::to_owned))
            .unwrap_or_else(|| panic!("{krate}::{name} is not a field of the binary's Settings"));
        assert!(composition.contains(&format!(".with_section(self.{field}.clone())")), "[{field}] is not handed to the services");
    }
}
