//! Live updates by server-sent events: `GET /api/runs/{id}/events` polls the store every
//! [`POLL`] while the run is not final and pushes what changed — `task` (a node's new state),
//! `log` (new lines, after the `after` cursor, filtered by `level` and `task` like the logs
//! route), `run` (the run's state) — then `end` once the run is final, and closes. At most
//! [`MAX_STREAMS`] streams are open at once; beyond that the route answers 503.

use crate::api::params;
use crate::error::{ApiError, ApiResult};
use crate::pages::format;
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;
use weft_runtime::store::browse::{LogCursor, LogQuery, RunOverview, TaskNodeSummary, LEVELS};
use weft_runtime::store::Store;
use weft_runtime::viz::state_color;

/// How often a stream reads the store.
pub const POLL: Duration = Duration::from_millis(500);
/// The most event streams open at once.
pub const MAX_STREAMS: usize = 64;
/// The most log lines one poll sends.
const LOG_BATCH: u32 = 200;

/// Where to start and what to follow.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Send the run's new log lines after this cursor (a logs page's cursor, or `start` for
    /// every line); without it no log lines are sent.
    pub after: Option<String>,
    /// Only log lines at this level or above.
    pub level: Option<String>,
    /// Only weft's log lines about this task.
    pub task: Option<String>,
}

/// What one stream remembers between polls.
struct Follow {
    store: Store,
    id: Uuid,
    logs: Option<LogQuery>,
    nodes: HashMap<u32, String>,
    run: String,
    queue: VecDeque<Event>,
    first: bool,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

/// Streams a run's changes as server-sent events (`task`, `log`, `run`, then `end` when the
/// run is final), polling the history every 500 ms.
#[utoipa::path(
    get, path = "/api/runs/{id}/events", tag = "runs",
    params(("id" = String, Path, description = "The run's id or a unique prefix"), EventParams),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad id or cursor", body = crate::error::ErrorBody),
        (status = 404, description = "No such run", body = crate::error::ErrorBody),
        (status = 503, description = "Too many streams open", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn run_events(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EventParams>, QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let (Path(raw), Query(p)) = (path?, query?);
    let permit = state
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("{MAX_STREAMS} live streams are open already; reload the page later"),
        })?;
    let id = params::run_id(&state.store, &raw).await?;
    state.store.run_record(id).await?;
    let follow = Follow {
        store: state.store.clone(),
        id,
        logs: log_query(&p)?,
        nodes: HashMap::new(),
        run: String::new(),
        queue: VecDeque::new(),
        first: true,
        done: false,
        _permit: permit,
    };
    let events = stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(e) = f.queue.pop_front() {
                return Some((Ok(e), f));
            }
            if f.done {
                return None;
            }
            if !f.first {
                tokio::time::sleep(POLL).await;
            }
            f.first = false;
            f.poll().await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The log query a stream follows; None when the page shows no live lines.
fn log_query(p: &EventParams) -> ApiResult<Option<LogQuery>> {
    let Some(after) = p.after.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let after = match after {
        "start" => None,
        c => params::cursor::<LogCursor>(Some(c))?,
    };
    let min_level = match p.level.as_deref().filter(|l| !l.is_empty()) {
        Some(l) if LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l)) => Some(l.to_uppercase()),
        Some(l) => return Err(ApiError::bad_request(format!("invalid level {l:?}"))),
        None => None,
    };
    Ok(Some(LogQuery {
        min_level,
        task: p.task.clone().filter(|t| !t.is_empty()),
        limit: LOG_BATCH,
        after,
    }))
}

fn event(name: &str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// What a task row shows, for the page's script.
fn task_json(t: &TaskNodeSummary) -> serde_json::Value {
    json!({
        "node": t.node,
        "task": t.task,
        "state": t.state.as_str(),
        "color": state_color(t.state),
        "attempts": t.attempts,
        "duration": format::duration_ms(format::span_ms(t.started, t.ended)),
        "detail": if t.elements.is_empty() {
            t.message.clone().unwrap_or_default()
        } else {
            format::counts_line(&t.elements)
        },
        "mapped": !t.elements.is_empty(),
    })
}

impl Follow {
    /// Reads the run once and queues what changed; ends the stream on a store error or once
    /// the run is final (its last lines sent).
    async fn poll(&mut self) {
        let o = match self.store.run_overview(self.id).await {
            Ok(o) => o,
            Err(e) => {
                self.queue
                    .push_back(event("error", json!({ "error": e.to_string() })));
                self.done = true;
                return;
            }
        };
        self.diff_tasks(&o);
        self.new_logs().await;
        let run = format!("{}|{:?}", o.run.state, o.run.ended);
        if run != self.run {
            self.run = run;
            let r = &o.run;
            self.queue.push_back(event(
                "run",
                json!({
                    "state": r.state.as_str(),
                    "color": state_color(r.state),
                    "final": r.state.is_final(),
                    "ended": format::time_or_dash(r.ended),
                    "duration": format::duration_ms(r.duration().as_millis() as u64),
                }),
            ));
        }
        if o.run.state.is_final() {
            self.queue.push_back(event("end", json!({})));
            self.done = true;
        }
    }

    fn diff_tasks(&mut self, o: &RunOverview) {
        for t in &o.tasks {
            let data = task_json(t);
            let key = data.to_string();
            if self.nodes.get(&t.node) != Some(&key) {
                self.nodes.insert(t.node, key);
                self.queue.push_back(event("task", data));
            }
        }
    }

    async fn new_logs(&mut self) {
        let Some(q) = &mut self.logs else { return };
        // A few pages a poll, so a burst of lines catches up without one poll running long.
        for _ in 0..5 {
            let Ok(page) = self.store.logs_page(self.id, q).await else {
                return;
            };
            if let Some(last) = page.last {
                q.after = Some(last);
            }
            let more = page.next.is_some();
            Self::queue_lines(&mut self.queue, page.lines);
            if !more {
                return;
            }
        }
    }

    fn queue_lines(queue: &mut VecDeque<Event>, lines: Vec<weft_runtime::store::browse::LogLine>) {
        for l in lines {
            queue.push_back(event(
                "log",
                json!({
                    "at": l.at.format("%H:%M:%S%.3f").to_string(),
                    "level": l.level,
                    "message": l.message,
                }),
            ));
        }
    }
}
