//! Deployments in the store: the flows a process serves (on schedules or on request), and the
//! ad-hoc runs asked of them.
//!
//! A serving process registers each deployment ([`Store::register_deployment`]), notes the runs
//! it starts ([`Store::note_deployment_run`], [`Store::set_next_run`]) and polls for requested
//! runs ([`Store::claim_requests`], [`Store::finish_request`]). Anyone with the store, such as
//! the `weft` CLI, lists deployments, pauses and resumes them ([`Store::set_paused`]) and asks
//! for runs ([`Store::request_run`], then [`Store::request`] to follow the request).
//!
//! ```
//! use chrono::Utc;
//! use weft::store::{DeploymentRecord, RequestState, Store};
//!
//! # #[tokio::main] async fn main() -> Result<(), weft::store::StoreError> {
//! let dir = std::env::temp_dir().join(format!("weft-doc-deploy-{}", std::process::id()));
//! let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
//! store
//!     .register_deployment(&DeploymentRecord {
//!         name: "nightly etl".into(),
//!         flow: "etl".into(),
//!         schedule: Some("cron 0 3 * * *".into()),
//!         parameters: serde_json::json!({ "n": 100 }),
//!         paused: false,
//!         last_run: None,
//!         last_run_at: None,
//!         next_run_at: None,
//!         updated: Utc::now(),
//!     })
//!     .await?;
//!
//! // Someone asks for a run with other parameters...
//! let mut overrides = serde_json::Map::new();
//! overrides.insert("n".into(), 5.into());
//! let id = store.request_run("nightly etl", overrides).await?;
//!
//! // ...and the serving process claims it (once) and starts it.
//! let claimed = store.claim_requests(&["nightly etl".to_owned()]).await?;
//! assert_eq!(claimed.len(), 1);
//! assert_eq!(claimed[0].parameters["n"], 5);
//! let run_id = uuid::Uuid::new_v4();
//! store.finish_request(id, RequestState::Started, None, Some(run_id)).await?;
//! assert_eq!(store.request(id).await?.run_id, Some(run_id));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use super::{parse_ts, ts, Store, StoreError};
use chrono::{DateTime, Utc};

use super::db::{self, Query};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A deployment as recorded: a flow served under a name, on a schedule or for ad-hoc runs.
///
/// Timestamps are stored with microsecond precision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeploymentRecord {
    /// The deployment's name (unique in the store).
    pub name: String,
    /// The name of the flow it runs.
    pub flow: String,
    /// Its schedule as [`Schedule::to_spec`](crate::Schedule::to_spec) writes it; None for a
    /// deployment that runs only when asked.
    pub schedule: Option<String>,
    /// The default parameters of its runs, a JSON object.
    pub parameters: serde_json::Value,
    /// True while paused: no scheduled runs start (requests wait, queued, or are rejected, as
    /// the serving process decides).
    pub paused: bool,
    /// The flow run it started last.
    pub last_run: Option<Uuid>,
    /// When it started its last run.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When its schedule runs it next, as the serving process computed it.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When it was last registered.
    pub updated: DateTime<Utc>,
}

impl DeploymentRecord {
    /// What a serving process registers: not paused (an existing row keeps its pause, see
    /// [`Store::register_deployment`]), no run yet, updated now.
    pub(crate) fn registered(
        name: String,
        flow: String,
        schedule: Option<&crate::Schedule>,
        parameters: serde_json::Value,
    ) -> DeploymentRecord {
        DeploymentRecord {
            name,
            flow,
            schedule: schedule.map(crate::Schedule::to_spec),
            parameters,
            paused: false,
            last_run: None,
            last_run_at: None,
            next_run_at: None,
            updated: Utc::now(),
        }
    }
}

/// Where a [`RunRequest`] is: `Requested` → `Claimed` → `Started` or `Rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RequestState {
    /// Asked for; no serving process has taken it yet.
    Requested,
    /// A serving process took it ([`Store::claim_requests`]) and is starting the run.
    Claimed,
    /// The run started; [`RunRequest::run_id`] names it.
    Started,
    /// The serving process refused it; [`RunRequest::message`] says why.
    Rejected,
}

impl RequestState {
    /// Every state, in the order a request goes through them.
    pub const ALL: [RequestState; 4] = [
        RequestState::Requested,
        RequestState::Claimed,
        RequestState::Started,
        RequestState::Rejected,
    ];

    /// The state's name, as stored: `Requested`, `Claimed`, `Started`, `Rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Requested => "Requested",
            RequestState::Claimed => "Claimed",
            RequestState::Started => "Started",
            RequestState::Rejected => "Rejected",
        }
    }

    /// True for `Started` and `Rejected`: nothing more happens to the request.
    pub fn is_final(self) -> bool {
        matches!(self, RequestState::Started | RequestState::Rejected)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a state's name, in any case.
impl FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RequestState::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown run request state {s:?}: expected Requested, Claimed, Started or Rejected")
            })
    }
}

/// An ad-hoc run asked of a deployment ([`Store::request_run`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRequest {
    /// The request's id.
    pub id: Uuid,
    /// The deployment asked.
    pub deployment: String,
    /// Parameters overriding the deployment's defaults.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Where it is.
    pub state: RequestState,
    /// Why it was rejected.
    pub message: Option<String>,
    /// The flow run, once started.
    pub run_id: Option<Uuid>,
    /// When it was asked for.
    pub created: DateTime<Utc>,
}

const DEPLOYMENT_COLS: &str =
    "name, flow, schedule, parameters, paused, last_run, last_run_at, next_run_at, updated";
const REQUEST_COLS: &str = "id, deployment, parameters, state, message, run_id, created";

fn opt_ts(row: &db::Row, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.as_deref().map(parse_ts).transpose()
}

fn req_ts(row: &db::Row, col: &str) -> Result<DateTime<Utc>, StoreError> {
    opt_ts(row, col)?.ok_or_else(|| StoreError::Query(format!("no {col} in a stored row")))
}

fn uuid_of(s: &str, what: &str) -> Result<Uuid, StoreError> {
    s.parse()
        .map_err(|e| StoreError::Query(format!("bad {what} {s:?} in the store: {e}")))
}

fn opt_uuid(row: &db::Row, col: &str) -> Result<Option<Uuid>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.as_deref().map(|s| uuid_of(s, col)).transpose()
}

fn deployment_of(row: &db::Row) -> Result<DeploymentRecord, StoreError> {
    let params: String = row.try_get("parameters")?;
    let paused: i64 = row.try_get("paused")?;
    Ok(DeploymentRecord {
        name: row.try_get("name")?,
        flow: row.try_get("flow")?,
        schedule: row.try_get("schedule")?,
        parameters: serde_json::from_str(&params).unwrap_or(serde_json::Value::String(params)),
        paused: paused != 0,
        last_run: opt_uuid(row, "last_run")?,
        last_run_at: opt_ts(row, "last_run_at")?,
        next_run_at: opt_ts(row, "next_run_at")?,
        updated: req_ts(row, "updated")?,
    })
}

fn request_of(row: &db::Row) -> Result<RunRequest, StoreError> {
    let id: String = row.try_get("id")?;
    let params: String = row.try_get("parameters")?;
    let state: String = row.try_get("state")?;
    Ok(RunRequest {
        id: uuid_of(&id, "run request id")?,
        deployment: row.try_get("deployment")?,
        parameters: serde_json::from_str(&params).map_err(|e| {
            StoreError::Query(format!(
                "bad parameters {params:?} of run request {id}: {e}"
            ))
        })?,
        state: state.parse().map_err(StoreError::Query)?,
        message: row.try_get("message")?,
        run_id: opt_uuid(row, "run_id")?,
        created: req_ts(row, "created")?,
    })
}

/// The error for a deployment `name` that is not recorded, with the names that are.
async fn not_found(pool: &db::Pool, name: String) -> StoreError {
    match db::query_scalar::<String>("SELECT name FROM deployments ORDER BY name")
        .fetch_all(pool)
        .await
    {
        Ok(known) => StoreError::DeploymentNotFound { name, known },
        Err(e) => e.into(),
    }
}

impl Store {
    /// Records a deployment, or updates the one of the same name: its flow, schedule,
    /// parameters, next run and `updated` are replaced, while `paused` and the last run are
    /// kept (a restarted server keeps a pause). A new deployment starts paused if `rec.paused`.
    pub async fn register_deployment(&self, rec: &DeploymentRecord) -> Result<(), StoreError> {
        let rec = rec.clone();
        self.with_pool(move |pool, _| async move {
            db::query(&format!(
                "INSERT INTO deployments ({DEPLOYMENT_COLS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (name) DO UPDATE SET flow = excluded.flow, \
                 schedule = excluded.schedule, parameters = excluded.parameters, \
                 next_run_at = excluded.next_run_at, updated = excluded.updated"
            ))
            .bind(rec.name)
            .bind(rec.flow)
            .bind(rec.schedule)
            .bind(rec.parameters.to_string())
            .bind(i64::from(rec.paused))
            .bind(rec.last_run.map(|u| u.to_string()))
            .bind(rec.last_run_at.map(ts))
            .bind(rec.next_run_at.map(ts))
            .bind(ts(rec.updated))
            .execute(&pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Every recorded deployment, by name.
    pub async fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.with_pool(move |pool, _| async move {
            db::query(&format!(
                "SELECT {DEPLOYMENT_COLS} FROM deployments ORDER BY name"
            ))
            .fetch_all(&pool)
            .await?
            .iter()
            .map(deployment_of)
            .collect()
        })
        .await
    }

    /// The deployment named `name`, or [`StoreError::DeploymentNotFound`] with the known names.
    pub async fn deployment(&self, name: &str) -> Result<DeploymentRecord, StoreError> {
        let name = name.to_owned();
        self.with_pool(move |pool, _| async move {
            let row = db::query(&format!(
                "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE name = $1"
            ))
            .bind(&name)
            .fetch_optional(&pool)
            .await?;
            match row {
                Some(row) => deployment_of(&row),
                None => Err(not_found(&pool, name).await),
            }
        })
        .await
    }

    /// Pauses (`true`) or resumes (`false`) the deployment `name`; pausing a paused one is no
    /// error. [`StoreError::DeploymentNotFound`] when there is none.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), StoreError> {
        let q = db::query("UPDATE deployments SET paused = $1 WHERE name = $2")
            .bind(i64::from(paused))
            .bind(name.to_owned());
        self.update_deployment(name, q).await
    }

    /// Records that deployment `name` started flow run `run` at `at`.
    /// [`StoreError::DeploymentNotFound`] when there is none.
    pub async fn note_deployment_run(
        &self,
        name: &str,
        run: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let q = db::query("UPDATE deployments SET last_run = $1, last_run_at = $2 WHERE name = $3")
            .bind(run.to_string())
            .bind(ts(at))
            .bind(name.to_owned());
        self.update_deployment(name, q).await
    }

    /// Records when deployment `name` runs next (None: not scheduled).
    /// [`StoreError::DeploymentNotFound`] when there is none.
    pub async fn set_next_run(
        &self,
        name: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let q = db::query("UPDATE deployments SET next_run_at = $1 WHERE name = $2")
            .bind(next.map(ts))
            .bind(name.to_owned());
        self.update_deployment(name, q).await
    }

    /// Runs `update` (an UPDATE of deployment `name`); not found when it changed no row.
    async fn update_deployment(
        &self,
        name: &str,
        update: Query<'static>,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with_pool(move |pool, _| async move {
            if update.execute(&pool).await?.rows_affected() == 0 {
                return Err(not_found(&pool, name).await);
            }
            Ok(())
        })
        .await
    }

    /// Asks for an ad-hoc run of deployment `deployment`, with `parameters` overriding its
    /// defaults; a process serving it picks the request up ([`Store::claim_requests`]). For
    /// a deployment served by a work pool the request is at once a Scheduled run its workers
    /// claim ([`Store::schedule_run`]): the request is Started with that run's id.
    /// Returns the request's id, to follow it with [`Store::request`].
    /// [`StoreError::DeploymentNotFound`] when there is no such deployment.
    pub async fn request_run(
        &self,
        deployment: &str,
        parameters: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        let params = serde_json::Value::Object(parameters.clone()).to_string();
        // A deployment served by a work pool: the request is a Scheduled run at once (one
        // queue for scheduled and asked-for runs), and the request says which.
        let run = self.schedule_if_pooled(deployment, &parameters).await?;
        self.record_request(id, deployment, params, run).await
    }

    /// A Scheduled run of `deployment` if it is served by a work pool.
    async fn schedule_if_pooled(
        &self,
        deployment: &str,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Uuid>, StoreError> {
        let name = deployment.to_owned();
        let pooled = self
            .with_pool(move |pool, _| async move {
                let pool_name: Option<Option<String>> =
                    db::query_scalar("SELECT pool FROM deployments WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&pool)
                        .await?;
                Ok(pool_name.flatten().is_some())
            })
            .await?;
        match pooled {
            true => Ok(Some(
                self.schedule_run(deployment, overrides.clone(), None)
                    .await?,
            )),
            false => Ok(None),
        }
    }

    /// Records request `id`: Requested, or Started when it is already the Scheduled run `run`.
    async fn record_request(
        &self,
        id: Uuid,
        deployment: &str,
        params: String,
        run: Option<Uuid>,
    ) -> Result<Uuid, StoreError> {
        let deployment = deployment.to_owned();
        let state = match run {
            Some(_) => RequestState::Started,
            None => RequestState::Requested,
        };
        self.with_pool(move |pool, _| async move {
            let now = ts(Utc::now());
            // Only if the deployment exists, in one statement.
            let done = db::query(
                "INSERT INTO run_requests (id, deployment, parameters, state, message, run_id, \
                 created, updated) SELECT $1, name, $2, $3, NULL, $4, $5, $6 FROM deployments \
                 WHERE name = $7",
            )
            .bind(id.to_string())
            .bind(params)
            .bind(state.as_str())
            .bind(run.map(|r| r.to_string()))
            .bind(now.clone())
            .bind(now)
            .bind(deployment.clone())
            .execute(&pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(not_found(&pool, deployment).await);
            }
            Ok(id)
        })
        .await
    }

    /// Takes the `Requested` requests of these deployments, oldest first, moving them to
    /// `Claimed`. Each request is claimed once: of several processes calling this at once on
    /// the same database, exactly one gets it.
    pub async fn claim_requests(
        &self,
        deployments: &[String],
    ) -> Result<Vec<RunRequest>, StoreError> {
        if deployments.is_empty() {
            return Ok(Vec::new());
        }
        let deployments = deployments.to_vec();
        self.with_pool(move |pool, _| async move {
            let marks: Vec<String> = (0..deployments.len())
                .map(|i| format!("${}", i + 2))
                .collect();
            let sql = format!(
                "SELECT {REQUEST_COLS} FROM run_requests WHERE state = $1 AND deployment IN ({}) \
                 ORDER BY created, id",
                marks.join(", ")
            );
            let mut q = db::query(&sql).bind(RequestState::Requested.as_str());
            for d in &deployments {
                q = q.bind(d.clone());
            }
            let candidates = q
                .fetch_all(&pool)
                .await?
                .iter()
                .map(request_of)
                .collect::<Result<Vec<_>, _>>()?;
            let mut claimed = Vec::with_capacity(candidates.len());
            for mut req in candidates {
                // Atomic on both databases: of two claims of one row, one sees it Requested.
                let done = db::query(
                    "UPDATE run_requests SET state = $1, updated = $2 WHERE id = $3 AND state = $4",
                )
                .bind(RequestState::Claimed.as_str())
                .bind(ts(Utc::now()))
                .bind(req.id.to_string())
                .bind(RequestState::Requested.as_str())
                .execute(&pool)
                .await?;
                if done.rows_affected() == 1 {
                    req.state = RequestState::Claimed;
                    claimed.push(req);
                }
            }
            Ok(claimed)
        })
        .await
    }

    /// Records what became of request `id`: usually `Started` with the flow run's id, or
    /// `Rejected` with a message saying why. [`StoreError::RequestNotFound`] when there is none.
    pub async fn finish_request(
        &self,
        id: Uuid,
        state: RequestState,
        message: Option<String>,
        run_id: Option<Uuid>,
    ) -> Result<(), StoreError> {
        self.with_pool(move |pool, _| async move {
            let done = db::query(
                "UPDATE run_requests SET state = $1, message = $2, run_id = $3, updated = $4 \
                 WHERE id = $5",
            )
            .bind(state.as_str())
            .bind(message)
            .bind(run_id.map(|u| u.to_string()))
            .bind(ts(Utc::now()))
            .bind(id.to_string())
            .execute(&pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::RequestNotFound(id));
            }
            Ok(())
        })
        .await
    }

    /// The run request `id` as it is now, or [`StoreError::RequestNotFound`].
    pub async fn request(&self, id: Uuid) -> Result<RunRequest, StoreError> {
        self.with_pool(move |pool, _| async move {
            let row = db::query(&format!(
                "SELECT {REQUEST_COLS} FROM run_requests WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(&pool)
            .await?
            .ok_or(StoreError::RequestNotFound(id))?;
            request_of(&row)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_states_round_trip_as_text() {
        for s in RequestState::ALL {
            assert_eq!(s.to_string().parse::<RequestState>(), Ok(s));
            assert_eq!(s.as_str().to_lowercase().parse::<RequestState>(), Ok(s));
        }
        assert!("Done"
            .parse::<RequestState>()
            .unwrap_err()
            .contains("Claimed"));
        assert!(RequestState::Rejected.is_final() && !RequestState::Claimed.is_final());
    }

    #[test]
    fn not_found_messages() {
        let e = StoreError::DeploymentNotFound {
            name: "x".into(),
            known: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "no deployment named \"x\"; known: a, b (a process serving it registers it)"
        );
        let e = StoreError::DeploymentNotFound {
            name: "x".into(),
            known: vec![],
        };
        assert_eq!(
            e.to_string(),
            "no deployments recorded yet: serve one first"
        );
    }

    #[tokio::test]
    async fn sqlite_deployments_and_requests() {
        let dir = std::env::temp_dir().join(format!("weft-deploy-unit-{}", Uuid::new_v4()));
        let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
            .await
            .unwrap();
        let rec = DeploymentRecord {
            name: "d".into(),
            flow: "f".into(),
            schedule: None,
            parameters: serde_json::json!({}),
            paused: false,
            last_run: None,
            last_run_at: None,
            next_run_at: None,
            updated: parse_ts(&ts(Utc::now())).unwrap(),
        };
        store.register_deployment(&rec).await.unwrap();
        assert_eq!(store.deployments().await.unwrap(), [rec]);
        let id = store
            .request_run("d", serde_json::Map::new())
            .await
            .unwrap();
        let claimed = store.claim_requests(&["d".into()]).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, id);
        assert!(store
            .claim_requests(&["d".into()])
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            store.request_run("e", serde_json::Map::new()).await,
            Err(StoreError::DeploymentNotFound { known, .. }) if known == ["d"]
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
