//! Cancelling a flow run (operator): the request goes into the store, and the process running
//! the run cancels it within about a second ([`Store::request_cancel`]).
//!
//! [`Store::request_cancel`]: weft_runtime::store::Store::request_cancel

use super::params;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use weft_runtime::store::{CancelOutcome, Store, StoreError};

/// The reason the API records when none is given.
const DEFAULT_REASON: &str = "cancelled through the weft server";

/// Why the run is cancelled (optional; the body may be empty).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CancelBody {
    /// The cancelled run's message.
    pub reason: Option<String>,
}

/// What became of a cancel request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelResult {
    /// The run's id.
    pub run: Uuid,
    /// `requested`: the process running the run cancels it within about a second (follow
    /// `/api/runs/{id}/events`); `not_owned`: no live process owned the run (it was killed,
    /// or its heartbeat stopped), so it was marked Cancelled at once; `not_started`: the run
    /// was waiting in its work pool's queue, it was marked Cancelled and never starts.
    pub outcome: String,
    /// The process running the run (`requested`) or that last ran it (`not_owned`), as
    /// `pid N on HOST (last heartbeat ...)`; null when none is known yet.
    pub owner: Option<String>,
}

/// Cancels a flow run that is not over, whichever process runs it (operator).
#[utoipa::path(
    post, path = "/api/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id or a unique prefix (4+ characters)")),
    request_body(content = CancelBody, description = "Optional: why"),
    responses(
        (status = 202, description = "Requested: the run's process cancels it", body = CancelResult),
        (status = 200, description = "No live process owned the run: marked Cancelled", body = CancelResult),
        (status = 400, description = "A malformed or ambiguous id, or a body that is not the expected JSON", body = ErrorBody),
        (status = 403, description = "Not the operator token, or another origin", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has already ended", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CancelResult>)> {
    let Path(raw) = path?;
    let body: CancelBody = if body.iter().all(u8::is_ascii_whitespace) {
        CancelBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "expected {{\"reason\": \"...\"}} or an empty body: {e}"
            ))
        })?
    };
    let id = params::run_id(&state.store, &raw).await?;
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    let (status, result) = request(
        &state.store,
        id,
        reason.as_deref().unwrap_or(DEFAULT_REASON),
    )
    .await?;
    Ok((status, Json(result)))
}

/// Asks the store to cancel run `id`; the status and body the API answers (also used by the
/// run page's Cancel button). A run that has ended is a 409.
pub(crate) async fn request(
    store: &Store,
    id: Uuid,
    reason: &str,
) -> ApiResult<(StatusCode, CancelResult)> {
    let result = |outcome: &str, owner: Option<String>| CancelResult {
        run: id,
        outcome: outcome.to_owned(),
        owner,
    };
    match store.request_cancel(id, reason).await? {
        CancelOutcome::Requested { owner } => Ok((
            StatusCode::ACCEPTED,
            result("requested", owner.map(|o| o.to_string())),
        )),
        CancelOutcome::NotOwned { owner } => Ok((
            StatusCode::OK,
            result("not_owned", owner.map(|o| o.to_string())),
        )),
        CancelOutcome::NotStarted => Ok((StatusCode::OK, result("not_started", None))),
        CancelOutcome::AlreadyFinal { state } => Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("run {id} has already ended ({state}): nothing to cancel"),
        }),
        other => Err(StoreError::Query(format!("unexpected outcome {other:?}")).into()),
    }
}
