//! The interaction workflow as configuration: queues and the strategy steps attached to them,
//! read from a TOML file and validated before the router starts. Every error names the file,
//! the queue and the step (`queue "inbound", step 2 (screen)`), so a person can fix it.
//!
//! ```toml
//! offer_timeout_s = 30
//! on_agent_logout = "requeue"          # or "keep": what happens to an agent's interactions
//! [classifier]
//! examples = "examples.jsonl"          # {"category": "...", "text": "..."} per line
//! min_confidence = 0.6
//! [[queue]]
//! name = "inbound"
//! public = true                        # customers may submit here (web API); default false
//! steps = [
//!   { type = "screen", field = "subject", regex = "(?i)out of office", stop = "auto-reply" },
//!   { type = "classify" },
//!   { type = "respond", standard_response = "ack", media = ["email"], queue = "outbound-send" },
//!   { type = "route", skills = { english = 1 }, policy = "longest_idle", timeout_s = 600, on_timeout = "overflow" },
//! ]
//! ```
//!
//! Marks: `public = true` on the queues a customer's web submission may enter (the web API
//! refuses any other); `agent_target = false` on queues agents may not transfer or return work
//! to (the send and QA queues: a reply would skip QA). Only queues the workflow defines are
//! agent targets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read workflow file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("workflow file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("workflow file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// How long an agent has to accept an offer.
    #[serde(default = "default_offer_timeout_s")]
    pub offer_timeout_s: u64,
    #[serde(default)]
    pub on_agent_logout: LogoutPolicy,
    #[serde(default)]
    pub classifier: Option<ClassifierConfig>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueConfig>,
}

/// The workflow `up` runs with no `[router] workflow` file.
pub const BUILTIN: &str = include_str!("../../../infra/workflow/workflow.toml");
/// Where the built-in workflow comes from, for messages.
pub const BUILTIN_SOURCE: &str = "built-in infra/workflow/workflow.toml";

fn default_offer_timeout_s() -> u64 {
    30
}

/// What happens to the interactions an agent owns when the agent logs out or disconnects.
/// Pending offers are always revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutPolicy {
    /// Returned to the queue they came from, to be routed again.
    #[default]
    Requeue,
    /// Left with the agent, who finds them on logging in again.
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// JSON lines of labelled examples, relative to the workflow file.
    pub examples: PathBuf,
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f64,
}

fn default_min_confidence() -> f64 {
    0.5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    /// A customer's web submission may enter it.
    #[serde(default)]
    pub public: bool,
    /// Agents may transfer or return work to it.
    #[serde(default = "yes")]
    pub agent_target: bool,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// Which text a rule looks at. Adapters put the subject, the sender and a plain-text preview of
/// the body in the interaction's properties `subject`, `from` and `body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Subject,
    Body,
    From,
    /// Subject and body.
    Any,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub field: Field,
    /// Case-insensitive substring.
    pub contains: Option<String>,
    pub regex: Option<String>,
    #[serde(skip)]
    pub compiled: Option<Regex>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Screening rule: when the text matches, move, stop or set properties.
    Screen {
        #[serde(flatten)]
        matcher: Matcher,
        move_to: Option<String>,
        /// Stop the interaction with this reason.
        stop: Option<String>,
        #[serde(default)]
        set: BTreeMap<String, String>,
    },
    /// Sets `category` (and `category_confidence`, `category_source`): rules first, then the
    /// trained classifier when its confidence reaches `min_confidence`.
    Classify {
        #[serde(default)]
        rules: Vec<CategoryRule>,
        #[serde(default = "yes")]
        use_model: bool,
    },
    /// Automatic response or acknowledgement: a new outbound interaction (child of this one)
    /// carrying a standard response, submitted to `queue`; then continue, or stop.
    Respond {
        standard_response: Option<String>,
        /// Category to standard response; used when `category` is set.
        #[serde(default)]
        by_category: BTreeMap<String, String>,
        /// Only for these media (all when empty).
        #[serde(default)]
        media: Vec<String>,
        #[serde(default = "default_outbound_queue")]
        queue: String,
        #[serde(default)]
        stop_after: bool,
    },
    MoveTo { queue: String },
    /// QA of an outbound reply: to `review_queue` when sampled or a rule matches, else (and once
    /// approved) to `send_queue`.
    Qa {
        #[serde(default)]
        sample_percent: u8,
        #[serde(default)]
        rules: Vec<Matcher>,
        review_queue: String,
        send_queue: String,
    },
    /// Wait for an agent: skills at least these levels, capacity for the media, chosen by
    /// `policy`. Must be the last step.
    Route {
        #[serde(default)]
        skills: BTreeMap<String, i32>,
        #[serde(default)]
        policy: Policy,
        /// After this long in the queue, move to `on_timeout`.
        timeout_s: Option<u64>,
        on_timeout: Option<String>,
        /// Offer only to the agent named by this property (e.g. the author of a reply).
        to_agent_property: Option<String>,
        /// Not before the time (Unix ms) in this property (e.g. a callback's `callback_at`);
        /// the timeout counts from then.
        not_before_property: Option<String>,
    },
}

fn yes() -> bool {
    true
}

fn default_outbound_queue() -> String {
    "outbound".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    #[serde(flatten)]
    pub matcher: Matcher,
    pub category: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The agent who has been without work longest.
    #[default]
    LongestIdle,
    /// The agent using the smallest share of their capacity.
    LeastBusy,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Screen { .. } => "screen",
            Step::Classify { .. } => "classify",
            Step::Respond { .. } => "respond",
            Step::MoveTo { .. } => "move_to",
            Step::Qa { .. } => "qa",
            Step::Route { .. } => "route",
        }
    }
}

impl Matcher {
    fn compile(&mut self) -> Result<(), String> {
        match (&self.contains, &self.regex) {
            (Some(_), Some(_)) => Err("give either `contains` or `regex`, not both".into()),
            (None, None) => Err("needs `contains` or `regex`".into()),
            (Some(c), None) if c.is_empty() => Err("`contains` is empty".into()),
            (Some(_), None) => Ok(()),
            (None, Some(r)) => {
                self.compiled = Some(Regex::new(r).map_err(|e| format!("bad regex {r:?}: {e}"))?);
                Ok(())
            }
        }
    }

    /// Does the interaction's text (from its properties) match?
    pub fn matches(&self, properties: &BTreeMap<String, String>) -> bool {
        let get = |k: &str| properties.get(k).map(String::as_str).unwrap_or("");
        let texts: Vec<&str> = match self.field {
            Field::Subject => vec![get("subject")],
            Field::Body => vec![get("body")],
            Field::From => vec![get("from")],
            Field::Any => vec![get("subject"), get("body")],
        };
        texts.iter().any(|t| match (&self.contains, &self.compiled) {
            (Some(c), _) => t.to_lowercase().contains(&c.to_lowercase()),
            (None, Some(r)) => r.is_match(t),
            (None, None) => false,
        })
    }
}

impl Workflow {
    pub fn load(path: &Path) -> Result<Self, WorkflowError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkflowError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut workflow: Workflow = toml::from_str(&text).map_err(|e| WorkflowError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(c) = &mut workflow.classifier
            && c.examples.is_relative()
        {
            c.examples = path.parent().unwrap_or(Path::new(".")).join(&c.examples);
        }
        workflow.validate().map_err(|message| WorkflowError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(workflow)
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let mut workflow: Workflow = toml::from_str(text).map_err(|e| e.to_string())?;
        workflow.validate()?;
        Ok(workflow)
    }

    /// Checks what the types cannot, and compiles regexes.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.offer_timeout_s == 0 || self.offer_timeout_s > 86_400 {
            return Err(format!("offer_timeout_s = {} is outside 1..=86400", self.offer_timeout_s));
        }
        if let Some(c) = &self.classifier
            && !(0.0..=1.0).contains(&c.min_confidence)
        {
            return Err(format!("classifier.min_confidence = {} is outside 0..=1", c.min_confidence));
        }
        let mut seen = BTreeSet::new();
        let has_model = self.classifier.is_some();
        for q in &mut self.queues {
            if q.name.trim().is_empty() {
                return Err("a [[queue]] has an empty name".into());
            }
            if !seen.insert(q.name.clone()) {
                return Err(format!("queue {:?} is defined twice", q.name));
            }
            let last = q.steps.len().saturating_sub(1);
            let qname = q.name.clone();
            for (n, step) in q.steps.iter_mut().enumerate() {
                let name = step.name();
                let at = |m: String| format!("queue {qname:?}, step {} ({name}): {m}", n + 1);
                let target = |queue: &str, what: &str| -> Result<(), String> {
                    if queue.trim().is_empty() {
                        Err(format!("{what} is empty"))
                    } else if queue == qname {
                        Err(format!("{what} is this same queue {queue:?} (it would loop)"))
                    } else {
                        Ok(())
                    }
                };
                match step {
                    Step::Screen { matcher, move_to, stop, set } => {
                        matcher.compile().map_err(at)?;
                        let actions = usize::from(move_to.is_some()) + usize::from(stop.is_some());
                        if actions > 1 {
                            return Err(at("give at most one of `move_to` and `stop`".into()));
                        }
                        if actions == 0 && set.is_empty() {
                            return Err(at("does nothing: give `move_to`, `stop` or `set`".into()));
                        }
                        if let Some(m) = move_to {
                            target(m, "move_to").map_err(at)?;
                        }
                    }
                    Step::Classify { rules, use_model } => {
                        for r in rules.iter_mut() {
                            r.matcher.compile().map_err(at)?;
                            if r.category.trim().is_empty() {
                                return Err(at("a rule has an empty category".into()));
                            }
                        }
                        if *use_model && !has_model {
                            return Err(at("use_model = true but there is no [classifier] section".into()));
                        }
                        if rules.is_empty() && !*use_model {
                            return Err(at("no rules and use_model = false: it does nothing".into()));
                        }
                    }
                    Step::Respond { standard_response, by_category, queue, media, .. } => {
                        if standard_response.is_none() && by_category.is_empty() {
                            return Err(at("give `standard_response` or `by_category`".into()));
                        }
                        for m in media.iter() {
                            m.parse::<contract::command::MediaType>().map_err(at)?;
                        }
                        target(queue, "queue").map_err(at)?;
                    }
                    Step::MoveTo { queue } => target(queue, "queue").map_err(at)?,
                    Step::Qa { sample_percent, rules, review_queue, send_queue } => {
                        if *sample_percent > 100 {
                            return Err(at(format!("sample_percent = {sample_percent} is over 100")));
                        }
                        for r in rules.iter_mut() {
                            r.compile().map_err(at)?;
                        }
                        target(review_queue, "review_queue").map_err(at)?;
                        target(send_queue, "send_queue").map_err(at)?;
                    }
                    Step::Route { skills, timeout_s, on_timeout, .. } => {
                        if n != last {
                            return Err(at("route must be the last step (it waits for an agent)".into()));
                        }
                        if let Some((s, l)) = skills.iter().find(|(_, l)| **l < 0) {
                            return Err(at(format!("skill {s:?} has a negative level {l}")));
                        }
                        match (timeout_s, on_timeout) {
                            (Some(0), _) => return Err(at("timeout_s must be at least 1".into())),
                            (Some(_), None) => return Err(at("timeout_s needs on_timeout (the queue to move to)".into())),
                            (None, Some(_)) => return Err(at("on_timeout needs timeout_s".into())),
                            (Some(_), Some(q)) => target(q, "on_timeout").map_err(at)?,
                            (None, None) => {}
                        }
                    }
                }
                if matches!(step, Step::MoveTo { .. } | Step::Qa { .. }) && n != last {
                    return Err(at("must be the last step: the steps after it never run".into()));
                }
            }
        }
        Ok(())
    }

    pub fn queue(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The workflow in `path`, or the built-in one.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<Self, WorkflowError> {
        match path {
            Some(path) => Self::load(path),
            None => Self::from_toml(BUILTIN).map_err(|message| WorkflowError::Invalid { path: BUILTIN_SOURCE.into(), message }),
        }
    }

    /// The queues marked `public`.
    pub fn public_queues(&self) -> Vec<String> {
        self.queues.iter().filter(|q| q.public).map(|q| q.name.clone()).collect()
    }

    /// Whether agents may transfer or return work to `queue`: defined here and not marked
    /// `agent_target = false`.
    pub fn is_agent_target(&self, queue: &str) -> bool {
        self.queue(queue).is_some_and(|q| q.agent_target)
    }

    /// The queues agents may send work to.
    pub fn agent_targets(&self) -> Vec<String> {
        self.queues.iter().filter(|q| q.agent_target).map(|q| q.name.clone()).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        Workflow::from_toml(text).unwrap_err()
    }

    #[test]
    fn a_complete_workflow_parses() {
        let w = Workflow::from_toml(
            r#"
            offer_timeout_s = 20
            [classifier]
            examples = "x.jsonl"
            [[queue]]
            name = "inbound"
            steps = [
              { type = "screen", field = "subject", regex = "(?i)out of office", stop = "auto-reply" },
              { type = "classify", rules = [{ field = "any", contains = "invoice", category = "billing" }] },
              { type = "respond", standard_response = "ack", media = ["email"] },
              { type = "route", skills = { english = 2 }, policy = "least_busy", timeout_s = 60, on_timeout = "overflow" },
            ]
            [[queue]]
            name = "outbound"
            steps = [{ type = "qa", sample_percent = 20, review_queue = "qa-review", send_queue = "outbound-send" }]
            "#,
        )
        .unwrap();
        assert_eq!(w.queues.len(), 2);
        assert_eq!(w.queue("inbound").unwrap().steps.len(), 4);
        let Step::Screen { matcher, .. } = &w.queue("inbound").unwrap().steps[0] else { panic!() };
        assert!(matcher.matches(&BTreeMap::from([("subject".into(), "Out of Office: back monday".into())])));
    }

    #[test]
    fn errors_name_the_queue_the_step_and_the_problem() {
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "screen", field = "subject", regex = "([", stop = "x" }]"#);
        assert!(e.contains(r#"queue "q", step 1 (screen)"#) && e.contains("bad regex"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "route" }, { type = "move_to", queue = "b" }]"#);
        assert!(e.contains("step 1 (route)") && e.contains("must be the last step"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "classify" }]"#);
        assert!(e.contains("no [classifier] section"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "move_to", queue = "q" }]"#);
        assert!(e.contains("it would loop"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "teleport" }]"#);
        assert!(e.contains("teleport"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            [[queue]]
            name = "q""#);
        assert!(e.contains("defined twice"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "route", timeout_s = 5 }]"#);
        assert!(e.contains("needs on_timeout"), "{e}");
        let e = error_of(r#"[[queue]]
            name = "q"
            steps = [{ type = "respond", standard_response = "a", media = ["fax"] }]"#);
        assert!(e.contains("unknown media type 'fax'"), "{e}");
    }
}
