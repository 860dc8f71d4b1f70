//! JSON API over the queue projection:
//! - `GET /queues`: every non-empty queue with its counts;
//! - `GET /queues/{queue}`: one queue's interactions in serving order;
//! - `GET /interactions/{id}`: one interaction's current state;
//!
//! Readiness (`/health/ready/queues`) is registered where the service is mounted.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::projector::Projection;

pub fn routes(projection: Arc<Projection>) -> Router {
    Router::new()
        .route("/queues", get(list_queues))
        .route("/queues/{queue}", get(queue))
        .route("/interactions/{id}", get(interaction))
        .with_state(projection)
}

async fn list_queues(State(p): State<Arc<Projection>>) -> Json<serde_json::Value> {
    let board = p.board();
    Json(json!({
        "queues": board.queue_summaries(),
        "events_applied": board.events_applied(),
        "anomalies": board.anomalies(),
        "undecodable": p.undecodable(),
        "caught_up": p.caught_up(),
    }))
}

async fn queue(State(p): State<Arc<Projection>>, Path(queue): Path<String>) -> Response {
    Json(p.board().queue_view(&queue)).into_response()
}

async fn interaction(State(p): State<Arc<Projection>>, Path(id): Path<String>) -> Response {
    match p.board().interaction(&id) {
        Some(i) => Json(i).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no interaction {id} in the queue projection")})),
        )
            .into_response(),
    }
}

