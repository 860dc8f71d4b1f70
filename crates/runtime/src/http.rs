//! Serving an axum router until shutdown, and the health endpoints every service has.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use tokio_util::sync::CancellationToken;

/// `GET /health/live`: the process is up and serving.
pub fn health_routes() -> Router {
    Router::new().route(
        "/health/live",
        get(|| async { Json(std::collections::BTreeMap::from([("status", "ok")])) }),
    )
}

/// The answer of every `/health/ready/...` endpoint: `200 {"status": "ready"}`, or while the
/// service is still catching up `503 {"status": not_yet}`.
pub fn readiness(ready: bool, not_yet: &str) -> Response {
    if ready {
        (StatusCode::OK, Json(std::collections::BTreeMap::from([("status", "ready")]))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(std::collections::BTreeMap::from([("status", not_yet)]))).into_response()
    }
}

/// `router` with a per-client-address limit (the public routes: web API, chat start): a burst
/// of `settings.rate_burst` requests, refilled at `settings.rate_per_minute`; beyond it `429`
/// with the wait in the body and `x-ratelimit-*` / `retry-after` headers. Needs the peer
/// address, which [`serve`] provides.
pub fn rate_limited(router: Router, settings: &crate::config::WebApiSettings) -> Result<Router, String> {
    let per_request_ms = (60_000 / u64::from(settings.rate_per_minute.max(1))).max(1);
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_millisecond(per_request_ms)
        .burst_size(settings.rate_burst.max(1))
        .use_headers()
        .finish()
        .ok_or("[web_api] rate_per_minute and rate_burst must be at least 1")?;
    let layer = tower_governor::GovernorLayer::new(config).error_handler(|e| {
        let (status, message) = match e {
            tower_governor::GovernorError::TooManyRequests { wait_time, headers } => {
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(serde_json::json!({"error": format!("too many requests from this address; try again in {wait_time} s")}))).into_response();
                if let Some(headers) = headers {
                    response.headers_mut().extend(headers);
                }
                return response;
            }
            other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        };
        (status, Json(serde_json::json!({"error": message}))).into_response()
    });
    Ok(router.layer(layer))
}

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the serving task,
/// which stops gracefully when `shutdown` is cancelled.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Peer addresses for per-client limits (the web API's rate limit).
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok((bound, task))
}

/// The one error an HTTP API answers with: a status and a message meant for the caller, as
/// `{"error": "..."}`. An internal failure (database, broker, I/O) is logged in full with a
/// reference and answered with that reference only: internals never reach a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    internal: Option<String>,
}

impl ApiError {
    /// A refusal the caller can act on (bad input, not found, too large, ...).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), internal: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A failure of ours: 500, its detail only in the log.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::hidden(StatusCode::INTERNAL_SERVER_ERROR, "internal error", detail)
    }

    /// A dependency is away (the broker, the database): 503 with `message`, the detail in the
    /// log; the caller may retry.
    pub fn unavailable(message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::hidden(StatusCode::SERVICE_UNAVAILABLE, message, detail)
    }

    fn hidden(status: StatusCode, message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self { status, message: message.into(), internal: Some(detail.to_string()) }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.internal {
            None => (self.status, Json(serde_json::json!({ "error": self.message }))).into_response(),
            Some(detail) => {
                let reference = uuid::Uuid::new_v4().to_string();
                tracing::error!(status = %self.status, %reference, error = %detail, "{}", self.message);
                let message = format!("{} (reference {reference} in the service's log)", self.message);
                (self.status, Json(serde_json::json!({ "error": message, "reference": reference }))).into_response()
            }
        }
    }
}

#[cfg(test)]
mod api_error_tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, String) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn internal_detail_never_reaches_the_client() {
        let (status, text) = body(ApiError::internal("pool timed out while connecting to postgres://user:secret@db")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("internal error") && text.contains("reference"), "{text}");
        assert!(!text.contains("secret") && !text.contains("postgres"), "{text}");
        let (status, text) = body(ApiError::unavailable("the contact store cannot take writes now; retry", "KafkaError (Message production error: MessageTimedOut)")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("retry") && !text.contains("Kafka"), "{text}");
        let (status, text) = body(ApiError::not_found("no contact c1")).await;
        assert_eq!((status, text.as_str()), (StatusCode::NOT_FOUND, r#"{"error":"no contact c1"}"#));
    }
}
