//! Record headers every Switchboard record carries:
//! - `traceparent` (and `tracestate`): W3C trace context, so one interaction is one trace;
//! - `correlation-id`: the interaction (or agent, session) the record is about;
//! - `causation-id`: the id of the command or event that led to this record;
//! - `schema`: the `.avsc` file stem the value is encoded with.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const CORRELATION_ID: &str = "correlation-id";
pub const CAUSATION_ID: &str = "causation-id";
pub const SCHEMA: &str = "schema";

/// The lineage of a record: what it is about and what caused it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub schema: Option<String>,
}

impl Lineage {
    pub fn new(correlation_id: impl Into<String>) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            ..Self::default()
        }
    }

    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    pub fn schema(mut self, schema: &str) -> Self {
        self.schema = Some(schema.to_owned());
        self
    }

    /// Headers for a record produced inside the current tracing span.
    pub fn to_headers(&self) -> OwnedHeaders {
        let mut carrier = HashMap::new();
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut MapInjector(&mut carrier))
        });
        let mut headers = OwnedHeaders::new_with_capacity(6);
        for (key, value) in &carrier {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        headers = headers.insert(Header {
            key: CORRELATION_ID,
            value: Some(self.correlation_id.as_bytes()),
        });
        if let Some(causation) = &self.causation_id {
            headers = headers.insert(Header {
                key: CAUSATION_ID,
                value: Some(causation.as_bytes()),
            });
        }
        if let Some(schema) = &self.schema {
            headers = headers.insert(Header {
                key: SCHEMA,
                value: Some(schema.as_bytes()),
            });
        }
        headers
    }

    /// Reads the lineage headers of a consumed record (missing ones stay empty).
    pub fn of(message: &BorrowedMessage<'_>) -> Self {
        Self {
            correlation_id: header_str(message, CORRELATION_ID)
                .unwrap_or_default()
                .to_owned(),
            causation_id: header_str(message, CAUSATION_ID).map(str::to_owned),
            schema: header_str(message, SCHEMA).map(str::to_owned),
        }
    }
}

/// Makes `span` a child of the trace context carried by `message`, if any.
pub fn continue_trace(span: &tracing::Span, message: &BorrowedMessage<'_>) {
    continue_trace_with(span, |key| header_str(message, key).map(str::to_owned));
}

/// [`continue_trace`] for an owned record.
pub fn continue_trace_of(span: &tracing::Span, record: &crate::record::Record) {
    continue_trace_with(span, |key| {
        let (_, value) = record.headers.iter().find(|(k, _)| k == key)?;
        std::str::from_utf8(value).ok().map(str::to_owned)
    });
}

fn continue_trace_with(span: &tracing::Span, header: impl Fn(&str) -> Option<String>) {
    let mut carrier = HashMap::new();
    for key in [TRACEPARENT, TRACESTATE] {
        if let Some(value) = header(key) {
            carrier.insert(key.to_owned(), value);
        }
    }
    if carrier.is_empty() {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MapExtractor(&carrier)));
    let _ = span.set_parent(parent);
}

/// A header's value as UTF-8, if present and valid.
pub fn header_str<'a>(message: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);
impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);
impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
