//! JSON API over the queue board:
//! - `GET /queues`: every non-empty queue with its counts;
//! - `GET /queues/{queue}`: one queue's interactions in serving order;
//! - `GET /interactions/{id}`: one interaction's current state; `410 Gone` with where its
//!   history is (UCS, `switchboard audit`) once it stopped and left the live board;
//!
//! The board comes from any [`BoardView`]: this crate's own [`Projection`], or the floor's
//! board where the process has a floor (one fold of `interaction.events` per process).
//! Readiness (`/health/ready/queues`) is registered where the service is mounted.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::board::Board;
use crate::projector::Projection;

/// A board kept current by some projection, read briefly under its lock.
pub trait BoardView: Send + Sync + 'static {
    fn with_board<R>(&self, read: impl FnOnce(&Board) -> R) -> R;
    /// True once the projection reached the log's end as it was at start.
    fn caught_up(&self) -> bool;
    /// Records skipped because they could not be decoded.
    fn undecodable(&self) -> u64;
}

impl BoardView for Projection {
    fn with_board<R>(&self, read: impl FnOnce(&Board) -> R) -> R {
        read(&self.board())
    }

    fn caught_up(&self) -> bool {
        Projection::caught_up(self)
    }

    fn undecodable(&self) -> u64 {
        Projection::undecodable(self)
    }
}

/// Every queue with every property (drafts, replies, QA comments): for supervisors.
pub fn routes<V: BoardView>(view: Arc<V>) -> runtime::routes::Table {
    use runtime::routes::{Audience::Staff, Policy::Supervisor};
    use utoipa::OpenApi as _;
    runtime::routes::Routes::new()
        .get("/v1/queues/openapi.json", Staff, runtime::routes::Policy::Open, || async { Json(crate::openapi::QueuesDoc::openapi()) })
        .get("/queues", Staff, Supervisor, list_queues::<V>)
        .get("/queues/{queue}", Staff, Supervisor, queue::<V>)
        .get("/interactions/{id}", Staff, Supervisor, interaction::<V>)
        .with_state(view)
}

async fn list_queues<V: BoardView>(State(view): State<Arc<V>>) -> Json<serde_json::Value> {
    let (caught_up, undecodable) = (view.caught_up(), view.undecodable());
    Json(view.with_board(|board| {
        json!({
            "queues": board.queue_summaries(),
            "events_applied": board.events_applied(),
            "anomalies": board.anomalies(),
            "late_events": board.late_events(),
            "live": board.len(),
            "evicted": board.evicted(),
            "undecodable": undecodable,
            "caught_up": caught_up,
        })
    }))
}

async fn queue<V: BoardView>(State(view): State<Arc<V>>, Path(queue): Path<String>) -> Response {
    Json(view.with_board(|board| board.queue_view(&queue))).into_response()
}

async fn interaction<V: BoardView>(State(view): State<Arc<V>>, Path(id): Path<String>) -> Response {
    view.with_board(|board| match board.interaction(&id) {
        Some(i) => Json(i).into_response(),
        None if board.has_left(&id) => (
            StatusCode::GONE,
            Json(json!({
                "error": format!("interaction {id} ended more than {} s ago and left the live queues", board.keep_stopped_ms().unwrap_or(0) / 1000),
                "history": format!("/v1/interactions/{id}"),
                "audit": format!("switchboard audit {id}"),
            })),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no interaction {id} in the queue projection")})),
        )
            .into_response(),
    })
}
