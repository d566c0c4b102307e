//! The server's pool of pipeline runs: at most `workers` run at once, at most
//! [`QUEUE_PER_WORKER`] × `workers` more wait (first come, first served), beyond that a start
//! is refused. Each run is recorded Pending before it waits, so it is listed at once; the
//! server's shutdown cancels every run of the pool and waits for them to end.

use crate::error::ApiError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use uuid::Uuid;
use weft_runtime::pipeline::{ParamValues, Pipeline};
use weft_runtime::store::Store;
use weft_runtime::{CancelHandle, RunConfig};

/// Runs that may wait per worker.
pub const QUEUE_PER_WORKER: usize = 4;

/// How long the shutdown waits for cancelled runs: each node's kill grace, and some margin.
const DRAIN: Duration = Duration::from_secs(15);

/// The bounded pool of pipeline runs executed by this server.
pub(crate) struct Pool {
    workers: usize,
    /// One permit per run executing.
    slots: Arc<Semaphore>,
    /// One permit per run admitted (waiting or executing).
    admitted: Arc<Semaphore>,
    /// The cancel handles of admitted runs, by run id.
    runs: Mutex<HashMap<Uuid, CancelHandle>>,
    stopping: AtomicBool,
}

impl Pool {
    /// A pool of `workers` (0: the server runs no pipelines).
    pub(crate) fn new(workers: usize) -> Pool {
        Pool {
            workers,
            slots: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(Self::capacity(workers))),
            runs: Mutex::default(),
            stopping: AtomicBool::new(false),
        }
    }

    fn capacity(workers: usize) -> usize {
        workers.saturating_mul(QUEUE_PER_WORKER + 1)
    }

    /// How many runs execute at once.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Why a start is refused before anything is checked: the pool is off, or stopping.
    pub(crate) fn refusal(&self) -> Option<ApiError> {
        if self.workers == 0 {
            return Some(unavailable(
                "this server runs no pipelines: it was started with --pipeline-workers 0 (start \
                 it with 1 or more, or run the file with `weft pipeline run FILE`)",
            ));
        }
        self.stopping
            .load(Ordering::Acquire)
            .then(|| unavailable("the server is stopping: it starts no more pipeline runs"))
    }

    /// Queues a run of `pipeline`: recorded Pending with `note` as its first log line, then
    /// executed when a slot is free. Its id; 503 when the pool and its queue are full.
    pub(crate) async fn start(
        self: &Arc<Self>,
        store: &Store,
        pipeline: Pipeline,
        values: ParamValues,
        note: &str,
    ) -> Result<Uuid, ApiError> {
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            return Err(unavailable(format!(
                "the pipeline pool is full: {} runs execute and {} wait; try again later",
                self.workers,
                self.workers * QUEUE_PER_WORKER
            )));
        };
        // On a task of its own from here: a request dropped midway leaves no run Pending.
        let (tell, told) = tokio::sync::oneshot::channel();
        let (pool, store, note) = (self.clone(), store.clone(), note.to_owned());
        tokio::spawn(async move {
            let queued = pipeline.queue_run(&store, &values, &note).await;
            let id = queued.id();
            pool.lock().insert(id, queued.cancel_handle().clone());
            if pool.stopping.load(Ordering::Acquire) {
                queued.cancel_handle().cancel("the weft server stopped");
            }
            let _ = tell.send(id);
            // Cancelled while waiting, it starts at once and ends Cancelled without a node.
            let slot = tokio::select! {
                slot = pool.slots.clone().acquire_owned() => slot.ok(),
                () = queued.cancelled() => None,
            };
            let run = queued.run(&pipeline, RunConfig::new(), &values).await;
            tracing::info!(target: "weft::server", "Pipeline run {id} ended {}", run.state.kind);
            drop(slot);
            pool.lock().remove(&id);
            drop(admitted);
        });
        told.await
            .map_err(|_| unavailable("the pipeline run could not be queued; try again"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CancelHandle>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses new runs and cancels every admitted one (their nodes get `SIGTERM`, then
    /// `SIGKILL` after their grace).
    pub(crate) fn cancel_all(&self) {
        self.stopping.store(true, Ordering::Release);
        let handles: Vec<CancelHandle> = self.lock().values().cloned().collect();
        let live: Vec<&CancelHandle> = handles.iter().filter(|h| !h.is_cancelled()).collect();
        if !live.is_empty() {
            tracing::warn!(
                target: "weft::server",
                "cancelling {} pipeline run(s) of this server",
                live.len()
            );
        }
        for h in live {
            h.cancel("the weft server stopped");
        }
    }

    /// [`Pool::cancel_all`], then waits (at most the nodes' kill grace and a margin) until every
    /// run has ended and is recorded.
    pub(crate) async fn shut_down(&self) {
        self.cancel_all();
        let all = u32::try_from(Self::capacity(self.workers)).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN, self.admitted.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(target: "weft::server", "some pipeline runs did not end in {DRAIN:?}");
        }
    }
}

fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: message.into(),
    }
}
