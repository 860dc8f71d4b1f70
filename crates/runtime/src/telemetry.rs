//! Structured logs (pretty or JSON lines) and traces. Spans always carry an OpenTelemetry
//! context, so every produced record gets a `traceparent` even when nothing is exported;
//! spans are exported over OTLP/HTTP only when `otlp_endpoint` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// `RUST_LOG` syntax; the `RUST_LOG` variable wins when set.
    pub log_filter: String,
    /// e.g. `https://collector:4318/v1/traces`; no export when unset.
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every export, `name=value,name=value` (as OTEL_EXPORTER_OTLP_HEADERS):
    /// a secret, often an API key.
    pub otlp_headers: Option<String>,
    /// A file holding `otlp_headers`.
    pub otlp_headers_file: Option<std::path::PathBuf>,
    /// PEM certificates to trust for an `https` endpoint, besides the system's.
    pub otlp_ca_file: Option<std::path::PathBuf>,
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            // rdkafka::client repeats every librdkafka error per retry; librdkafka's own lines
            // (target `librdkafka`) carry the same news with duplicates suppressed.
            log_filter: "info,rdkafka::client=off".into(),
            otlp_endpoint: None,
            otlp_headers: None,
            otlp_headers_file: None,
            otlp_ca_file: None,
            service_name: "switchboard".into(),
        }
    }
}

/// Flushes exported spans when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter for {endpoint}: {detail}")]
    Exporter { endpoint: String, detail: String },
    #[error("invalid log filter '{filter}': {detail}")]
    Filter { filter: String, detail: String },
}

/// `name=value,name=value` as OTEL_EXPORTER_OTLP_HEADERS writes headers.
fn parse_headers(text: &str) -> Result<std::collections::HashMap<String, String>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| "otlp_headers: expected name=value pairs separated by commas".to_owned())
        })
        .collect()
}

/// Installs the global subscriber. A second call (as in tests) keeps the first subscriber.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build(),
    );
    if let Some(endpoint) = &settings.otlp_endpoint {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let exporter_error = |detail: String| TelemetryError::Exporter { endpoint: endpoint.clone(), detail };
        let mut client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = &settings.otlp_ca_file {
            let pem = std::fs::read(ca).map_err(|e| exporter_error(format!("cannot read otlp_ca_file {}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| exporter_error(format!("otlp_ca_file {}: {e}", ca.display())))? {
                client = client.add_root_certificate(cert);
            }
        }
        // reqwest's blocking client runs a runtime of its own, which may not be built (or
        // dropped) on an async thread: build it on a thread of its own.
        let client = std::thread::spawn(move || client.build())
            .join()
            .map_err(|_| exporter_error("building the HTTP client panicked".into()))?
            .map_err(|e| exporter_error(e.to_string()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(endpoint.clone())
            .with_headers(parse_headers(settings.otlp_headers.as_deref().unwrap_or_default()).map_err(exporter_error)?)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                detail: e.to_string(),
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("switchboard");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => settings.log_filter.clone(),
    };
    let filter = EnvFilter::try_new(&filter).map_err(|e| TelemetryError::Filter {
        filter: filter.clone(),
        detail: e.to_string(),
    })?;
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = match settings.log_format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    Ok(TelemetryGuard { provider })
}
