//! Parsing query parameters into what the store takes, each mistake a 400 saying what to send.

use crate::error::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use std::str::FromStr;
use uuid::Uuid;
use weft_runtime::store::Store;
use weft_runtime::StateKind;

/// A state name (`failed`, `Completed`, `timed_out`...).
pub(crate) fn state(raw: Option<&str>) -> ApiResult<Option<StateKind>> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<StateKind>()
                .map_err(|e| ApiError::bad_request(format!("invalid state: {e}")))
        })
        .transpose()
}

/// An RFC 3339 time (`2026-11-23T23:53:24Z`).
pub(crate) fn time(name: &str, raw: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "invalid {name} {s:?}: {e}; give an RFC 3339 time such as \
                         2026-11-23T23:53:24Z"
                    ))
                })
        })
        .transpose()
}

/// A page size: `default` when absent, 1 to `max` otherwise.
pub(crate) fn limit(raw: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "invalid limit {n}: give 1 to {max} (default {default})"
        ))),
    }
}

/// A cursor a previous page gave.
pub(crate) fn cursor<C: FromStr<Err = String>>(raw: Option<&str>) -> ApiResult<Option<C>> {
    raw.filter(|s| !s.is_empty())
        .map(|s| s.parse::<C>().map_err(ApiError::bad_request))
        .transpose()
}

/// The run a path names: its full id or a unique prefix of at least 4 characters.
pub(crate) async fn run_id(store: &Store, raw: &str) -> ApiResult<Uuid> {
    let ok =
        (4..=36).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !ok {
        return Err(ApiError::bad_request(format!(
            "invalid run id {raw:?}: give a run's id or its first characters (at least 4 hex \
             digits), as GET /api/runs lists them"
        )));
    }
    Ok(store.resolve_run(raw).await?)
}
