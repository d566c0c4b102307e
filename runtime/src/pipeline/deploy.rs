//! Pipeline files as deployments of a work pool: any worker of the pool runs them
//! (`weft worker --pool NAME`), since a pipeline is data, not compiled code.

use super::shell::DEFAULT_KILL_GRACE;
use super::Pipeline;
use crate::flow::RunConfig;
use crate::schedule::{Deployment, Finished, Schedule, Start};
use crate::store::{DeploymentRecord, PoolPlacement, Store, StoreError};
use std::sync::Arc;

type Overrides = serde_json::Map<String, serde_json::Value>;

/// A pipeline deployment as a worker finds it in the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PipelineDeployment {
    pub name: String,
    pub pipeline: String,
    pub version: String,
    pub parameters: Overrides,
}

impl Pipeline {
    /// Deploys this pipeline as `name` in work pool `placement.pool`: its file is kept in the
    /// store (this version), and any worker of the pool serving pipelines (`weft worker`) runs
    /// it on `schedule` (if any) and when asked (`weft deployment run NAME`), with `values`
    /// over the parameters' defaults. The values are checked now, as for a run.
    /// [`StoreError::Invalid`] says what is wrong with them; [`StoreError::WorkPoolNotFound`].
    ///
    /// ```
    /// use weft::pipeline::Pipeline;
    /// use weft::store::{PoolPlacement, Store, WorkPoolSpec};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("weft-doc-pdeploy-{}", std::process::id()));
    /// let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display())).await?;
    /// store.create_work_pool(&WorkPoolSpec::new("ops")).await?;
    /// let p = Pipeline::from_toml("name = \"hello\"\n[[nodes]]\nid = \"a\"\n\
    ///     command = [\"echo\", \"hi\"]\n", "hello.toml")?;
    /// p.deploy(&store, "hello hourly", &PoolPlacement::new("ops"), None, Default::default())
    ///     .await?;
    /// assert_eq!(store.deployment("hello hourly").await?.flow, "hello");
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn deploy(
        &self,
        store: &Store,
        name: &str,
        placement: &PoolPlacement,
        schedule: Option<Schedule>,
        values: Overrides,
    ) -> Result<(), StoreError> {
        let given: Vec<_> = values.clone().into_iter().collect();
        if let Err(e) = self.values_for(&given, None) {
            return Err(StoreError::Invalid(e.0.join("; ")));
        }
        let version = self.hash[..self.hash.len().min(12)].to_owned();
        let path = self.source.as_ref().map(|s| s.display().to_string());
        store
            .save_pipeline(&self.name, &version, &self.text, path)
            .await?;
        store
            .register_deployment(&DeploymentRecord::registered(
                name.to_owned(),
                self.name.clone(),
                schedule.as_ref(),
                serde_json::Value::Object(values),
            ))
            .await?;
        store.place_deployment(name, placement).await?;
        store.set_deployment_pipeline(name, &version).await
    }
}

impl PipelineDeployment {
    /// The deployment a worker runs: the stored file at its version, with its values.
    pub(crate) async fn load(&self, store: &Store) -> Result<Deployment, String> {
        let source = store
            .pipeline_source(&self.pipeline, &self.version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("version {} of its file is not in the store", self.version))?;
        let p = Pipeline::from_toml(&source, &format!("{} (stored)", self.pipeline))
            .map_err(|e| e.to_string())?;
        let def = super::run::definition(&p);
        let (p, defaults) = (Arc::new(p), self.parameters.clone());
        let start = move |config: RunConfig, overrides: &Overrides| {
            let mut given = defaults.clone();
            given.extend(overrides.clone());
            let given: Vec<_> = given.into_iter().collect();
            let values = p.values_for(&given, None).map_err(|e| e.0.join("; "))?;
            let p = p.clone();
            // Long enough for every node's SIGTERM grace and SIGKILL, so that each is recorded.
            let config =
                config.cancel_grace(DEFAULT_KILL_GRACE + std::time::Duration::from_secs(5));
            Ok(Box::pin(async move {
                let run = p.run_with(config, &values).await;
                // Given a store, only a run its result store's claim refused has no report.
                let started = run.history.is_some();
                Finished {
                    state: run.state,
                    started,
                }
            }) as crate::task::BoxFuture<'static, Finished>)
        };
        let start: Arc<Start> = Arc::new(start);
        Ok(Deployment::from_parts(
            self.name.clone(),
            def,
            serde_json::Value::Object(self.parameters.clone()),
            start,
        ))
    }
}
