//! A pipeline run recorded before it starts: its flow run is in the history, Pending, under the
//! id it will run with, and a cancel request for it is heard while it waits (a server that runs
//! pipelines in a bounded pool queues them this way).

use super::file::Pipeline;
use super::params::ParamValues;
use super::run::{definition, PipelineOutputs};
use crate::flow::{CancelHandle, FlowRun, RunConfig};
use crate::store::record::Recorder;
use crate::store::Store;
use uuid::Uuid;

/// A run of a pipeline recorded Pending in a [`Store`], waiting to start
/// ([`Pipeline::queue_run`]). While it waits, a cancel request for it in the store
/// ([`Store::request_cancel`]: `weft run cancel`, the server's Cancel button) fires its
/// [`CancelHandle`], as it would for a running run of this process.
///
/// [`QueuedRun::run`] runs it under its id, recording into the same store; a run cancelled
/// before that starts no node and ends Cancelled.
pub struct QueuedRun {
    id: Uuid,
    store: Store,
    handle: CancelHandle,
    /// Its registration with the store's cancel watcher, while it waits.
    waiting: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for QueuedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedRun")
            .field("id", &self.id)
            .field("cancelled", &self.handle.is_cancelled())
            .finish()
    }
}

impl Pipeline {
    /// Records a run of this pipeline with `values` (checked: see [`Pipeline::values_for`]) in
    /// `store`, Pending, with `note` as its first log line (who asked for it), and returns once
    /// the database has it (or the store's flush timeout passed). Run it with
    /// [`QueuedRun::run`].
    ///
    /// ```
    /// use weft::pipeline::Pipeline;
    /// use weft::store::Store;
    /// use weft::{RunConfig, StateKind};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("weft-doc-queue-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// let p = Pipeline::from_toml("name = \"q\"\n[[nodes]]\nid = \"a\"\ncommand = [\"true\"]\n", "q.toml")?;
    /// let values = p.values_for(&[], None)?;
    /// let queued = p.queue_run(&store, &values, "queued by the docs").await;
    /// assert_eq!(store.run_record(queued.id()).await?.state, StateKind::Pending);
    /// let run = queued.run(&p, RunConfig::new(), &values).await;
    /// assert_eq!(run.state.kind, StateKind::Completed);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn queue_run(&self, store: &Store, values: &ParamValues, note: &str) -> QueuedRun {
        let def = definition(self);
        let id = crate::flow::new_run_id();
        let params = values.to_json().to_string();
        let recorder = Recorder::start(store.clone(), id, def.graph, def.version, params, None);
        recorder.log("INFO", note.to_owned());
        let _ = recorder.finish().await;
        let handle = CancelHandle::new();
        let waiting: Box<dyn Send + Sync> = Box::new(store.own(id, handle.clone()));
        QueuedRun {
            id,
            store: store.clone(),
            handle,
            waiting: Some(waiting),
        }
    }
}

impl QueuedRun {
    /// The flow run's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The handle that cancels it, waiting or running.
    pub fn cancel_handle(&self) -> &CancelHandle {
        &self.handle
    }

    /// Completes once it is cancelled (by its handle or a request in the store).
    pub async fn cancelled(&self) {
        self.handle.cancelled().await
    }

    /// Runs it as [`Pipeline::run_with`] does, under its id, into its store, cancelled by its
    /// handle (after which nodes get their kill grace, as with [`Pipeline::run_until_stopped`]).
    /// `pipeline` and `values` are those it was queued with. Already cancelled, no node starts:
    /// the run and its nodes end Cancelled.
    pub async fn run(
        mut self,
        pipeline: &Pipeline,
        config: RunConfig,
        values: &ParamValues,
    ) -> FlowRun<PipelineOutputs> {
        // The run registers itself with the watcher again when it starts (same lease token);
        // the waiting registration is released after it, so the run is never left unclaimed in
        // the store meanwhile (the reaper would take it for a run whose process died).
        let waiting = self.waiting.take();
        let config = config
            .run_id(self.id)
            .history(self.store.clone())
            .cancel_with(&self.handle)
            .cancel_grace(super::shell::DEFAULT_KILL_GRACE + std::time::Duration::from_secs(5));
        let run = pipeline.run_with(config, values).await;
        drop(waiting);
        run
    }
}
