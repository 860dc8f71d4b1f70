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
