//! Readiness of every service in a process, answered in one place.
//!
//! Each service registers a probe under its name when it is built; `GET /health/ready/<name>`
//! answers for that service and `GET /health/ready` for all of them: 200 only when every
//! registered service is ready, else 503 with what each is still doing (restore progress). A
//! service is ready only when it really works: a projection when it has caught up with its
//! topics, the Interaction Server when it owns partitions and has rebuilt their state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Value, json};

/// What a probe says: ready or not, and details (progress while restoring).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub ready: bool,
    /// What the service is doing or has done, e.g. `{"status": "replaying", "applied": 1200}`.
    #[serde(flatten)]
    pub detail: BTreeMap<String, Value>,
}

impl Status {
    pub fn ready() -> Self {
        Self { ready: true, detail: BTreeMap::from([("status".into(), json!("ready"))]) }
    }

    /// Not ready, with what it is doing in words.
    pub fn not_yet(doing: impl Into<String>) -> Self {
        Self { ready: false, detail: BTreeMap::from([("status".into(), json!(doing.into()))]) }
    }

    /// `ready()` or `not_yet(doing)`.
    pub fn when(ready: bool, doing: &str) -> Self {
        if ready { Self::ready() } else { Self::not_yet(doing) }
    }

    /// Adds a detail (a count, an offset, a list of partitions).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.detail.insert(key.to_owned(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }
}

type Probe = Arc<dyn Fn() -> Status + Send + Sync>;

/// The process's readiness probes, by service name.
#[derive(Clone, Default)]
pub struct Health {
    probes: Arc<Mutex<BTreeMap<String, Probe>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the probe of `service`.
    pub fn register(&self, service: &str, probe: impl Fn() -> Status + Send + Sync + 'static) {
        if let Ok(mut probes) = self.probes.lock() {
            probes.insert(service.to_owned(), Arc::new(probe));
        }
    }

    /// Registers `service` with a [`Progress`] it updates itself, and returns that.
    pub fn progress(&self, service: &str, doing: &str) -> Progress {
        let progress = Progress(Arc::new(Mutex::new(Status::not_yet(doing))));
        let probe = progress.clone();
        self.register(service, move || probe.status());
        progress
    }

    /// The status of `service`, if it is registered here.
    pub fn status(&self, service: &str) -> Option<Status> {
        let probe = self.probes.lock().ok()?.get(service).cloned()?;
        Some(probe())
    }

    /// Every service's status, by name.
    pub fn all(&self) -> BTreeMap<String, Status> {
        let probes: Vec<(String, Probe)> = self
            .probes
            .lock()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        probes.into_iter().map(|(name, probe)| (name, probe())).collect()
    }

    /// `GET /health/live`, `GET /health/ready` (all services) and `GET /health/ready/{service}`.
    /// Liveness is public (a load balancer in front of the public listener asks it); which
    /// services run and how far they got is for the staff side.
    pub fn routes(&self) -> crate::routes::Table {
        use crate::routes::{Audience::{Public, Staff}, Policy::Open};
        crate::routes::Routes::new()
            .get("/health/live", Public, Open, || async { Json(json!({"status": "ok"})) })
            .get("/health/ready", Staff, Open, all_ready)
            .get("/health/ready/{service}", Staff, Open, one_ready)
            .with_state(self.clone())
    }
}

async fn all_ready(State(health): State<Health>) -> Response {
    let services = health.all();
    let ready = !services.is_empty() && services.values().all(|s| s.ready);
    let waiting: Vec<&str> = services.iter().filter(|(_, s)| !s.ready).map(|(n, _)| n.as_str()).collect();
    let body = json!({
        "status": if ready { "ready".to_owned() } else { format!("waiting for {}", waiting.join(", ")) },
        "services": services,
    });
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body)).into_response()
}

async fn one_ready(State(health): State<Health>, Path(service): Path<String>) -> Response {
    match health.status(&service) {
        Some(status) => (if status.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(status)).into_response(),
        None => {
            let known: Vec<String> = health.all().into_keys().collect();
            (StatusCode::NOT_FOUND, Json(json!({"error": format!("no service {service:?} runs in this process; it runs {}", known.join(", "))}))).into_response()
        }
    }
}

/// A readiness a service sets itself as it restores and starts consuming.
#[derive(Clone)]
pub struct Progress(Arc<Mutex<Status>>);

impl Progress {
    /// A progress registered nowhere (a service built outside a process's [`Health`]).
    pub fn detached() -> Self {
        Self(Arc::new(Mutex::new(Status::not_yet("starting"))))
    }

    pub fn set(&self, status: Status) {
        if let Ok(mut s) = self.0.lock() {
            *s = status;
        }
    }

    pub fn status(&self) -> Status {
        self.0.lock().map(|s| s.clone()).unwrap_or_else(|_| Status::not_yet("unknown"))
    }

    pub fn is_ready(&self) -> bool {
        self.0.lock().is_ok_and(|s| s.ready)
    }
}
