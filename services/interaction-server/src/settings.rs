//! The Interaction Server's settings, `[interaction_server]`.

use serde::{Deserialize, Serialize};
use runtime::broker::BrokerKind;


#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InteractionServerSettings {
    /// Consumer group (committed offsets; membership only with `assignment = "group"`). The
    /// deployment's `topic_prefix` is prepended, as to the transactional ids derived from it.
    pub group_id: String,
    /// `group` or `static`; unset: `group` on Apache Kafka, `static` on Tansu.
    pub assignment: Option<Assignment>,
    /// With `static`: the command partitions this instance owns; all when unset.
    pub partitions: Option<Vec<i32>>,
    /// Write each batch's events and command offsets in one Kafka transaction, with a
    /// `transactional.id` per partition (`<prefix><group_id>-<partition>`) so that a newer
    /// owner fences an older one. Unset: on for Apache Kafka, off for Tansu (no transactions).
    pub transactions: Option<bool>,
    /// Kafka's `transaction.timeout.ms`: the longest a stalled owner's open transaction holds
    /// `read_committed` readers of `interaction.events` back (a new owner aborts it sooner).
    pub transaction_timeout_ms: u64,
    /// Open transactions are committed once no command has arrived for this long (light
    /// load: each command is visible within about this), ...
    pub transaction_linger_ms: u64,
    /// ... or once the oldest has been open this long, or a partition's holds
    /// `transaction_max_commands` (a backlog: large batches, few commits).
    pub transaction_max_ms: u64,
    pub transaction_max_commands: usize,
    /// A partition's state is snapshotted (in `<data_dir>/snapshots/`) after this many events
    /// written since the last snapshot, and at a clean stop; a restart reads only the events
    /// after its snapshot. 0: never (every start replays the whole events log).
    pub snapshot_every_events: u64,
}

/// How an Interaction Server instance gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assignment {
    /// It owns `partitions` (default all) and starts each where the events log says. Two
    /// instances with the same partitions fence each other on Kafka (transactions); on Tansu
    /// nothing does, so give each its own partitions.
    Static,
    /// Kafka consumer-group membership (cooperative-sticky): replicas share the partitions and
    /// take over a dead member's. Tansu 0.6 did not reassign a killed member's partitions.
    Group,
}

impl Default for InteractionServerSettings {
    fn default() -> Self {
        Self {
            group_id: "interaction-server".into(),
            assignment: None,
            partitions: None,
            transactions: None,
            transaction_timeout_ms: 10_000,
            transaction_linger_ms: 2,
            transaction_max_ms: 200,
            transaction_max_commands: 2000,
            snapshot_every_events: 10_000,
        }
    }
}

impl InteractionServerSettings {
    pub fn assignment(&self, broker: BrokerKind) -> Assignment {
        self.assignment.unwrap_or(match broker {
            BrokerKind::Kafka => Assignment::Group,
            BrokerKind::Tansu => Assignment::Static,
        })
    }

    pub fn transactions(&self, broker: BrokerKind) -> bool {
        self.transactions.unwrap_or(broker == BrokerKind::Kafka)
    }
}

impl runtime::config::Section for InteractionServerSettings {
    const NAME: &'static str = "interaction_server";
}
