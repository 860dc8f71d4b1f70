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
