//! # weft-server
//!
//! The weft server: a live web dashboard and a JSON API over weft's run history (flow runs,
//! task runs, logs, graphs, flows, deployments, pipelines), the API described by an OpenAPI
//! document at `/api/openapi.json` and a readable page at `/docs`. It reads the same [`Store`] as the `weft` command line, SQLite or
//! PostgreSQL through one code path, and is started by `weft server start` or embedded:
//!
//! ```no_run
//! use weft_runtime::store::Store;
//! use weft_server::{Server, ServerConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open_default().await?;
//! let server = Server::bind(store, ServerConfig::new(), "127.0.0.1:4200".parse()?).await?;
//! println!("Check out the dashboard at http://{}", server.local_addr());
//! server.run().await?; // until Ctrl-C or SIGTERM
//! # Ok(()) }
//! ```
//!
//! Or as an [`axum::Router`] inside an application of your own ([`router`]).
//!
//! **Pipelines.** Operators may run a pipeline the history recorded from the dashboard or with
//! `POST /api/pipelines/{name}/runs`: the server executes it itself, at most
//! [`ServerConfig::pipeline_workers`] at once (more wait, a few per worker, then 503), its
//! commands in the server's working directory; each run is recorded Pending before it waits,
//! is cancelled like any run, and [`Server::run`]'s shutdown cancels those still going.
//!
//! **Security.** [`Server::bind`] listens on loopback addresses only, unless the configuration
//! has a token ([`ServerConfig::token`]): then every `/api` request needs
//! `Authorization: Bearer <token>`. The operator token may read and change state; the read
//! token ([`ServerConfig::read_token`]) may only read. Tokens are compared in constant time and
//! never logged. Requests that change state from a web page must come from the server's own
//! origin; without a token, only loopback host names are answered (a page whose domain was
//! rebound to 127.0.0.1 is refused). Request bodies are bounded (64 KiB), query strings too
//! (4 KiB), pages of results too (200 runs, 1000 log lines or elements). A bad id, filter or
//! cursor is a 4xx with a JSON `{"error": "..."}` saying what to send.

pub mod api;
mod auth;
mod config;
mod docs;
pub mod error;
mod limits;
pub mod live;
mod pages;
mod pool;
mod session;
mod throttle;

pub use auth::Role;
pub use config::{
    ServeError, ServerConfig, Token, DEFAULT_PIPELINE_WORKERS, MAX_PIPELINE_WORKERS, MIN_TOKEN_LEN,
};
pub use pool::QUEUE_PER_WORKER;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::OpenApi;
use weft_runtime::store::Store;

/// What every handler shares: the store, the configuration, the rendered documentation.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) docs: Arc<docs::Docs>,
    pub(crate) sessions: Arc<session::Sessions>,
    /// One permit per open event stream ([`live::MAX_STREAMS`]).
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// The pipeline runs this server executes ([`ServerConfig::pipeline_workers`]).
    pub(crate) pool: Arc<pool::Pool>,
}

/// The server's application over `store`: the dashboard's pages (`/`, `/runs`, `/flows`,
/// `/deployments`, `/pipelines`, `/signin`), the API under `/api` with its live event streams,
/// its document at `/api/openapi.json` and its page at `/docs`.
///
/// Pipeline runs started through it execute in a pool of its own; unlike [`Server::run`],
/// nothing cancels them when you stop serving (they end with the runtime).
///
/// Embedded this way nothing checks where it listens: give it a token
/// ([`ServerConfig::token`]) before serving it beyond loopback, and the origins of your pages
/// ([`ServerConfig::allow_origin`]) if they send state-changing requests.
///
/// ```no_run
/// use weft_runtime::store::Store;
/// use weft_server::{router, ServerConfig, Token};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::open_default().await?;
/// let config = ServerConfig::new().token(Token::new(std::env::var("WEFT_API_TOKEN")?)?);
/// let app = router(store, config).route("/healthz", axum::routing::get(|| async { "ok" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:4200").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub fn router(store: Store, config: ServerConfig) -> Router {
    let pool = Arc::new(pool::Pool::new(config.pipeline_workers));
    app(store, config, pool)
}

/// The application, its pipeline runs in `pool`.
fn app(store: Store, config: ServerConfig, pool: Arc<pool::Pool>) -> Router {
    let max_body = config.max_body_bytes;
    let state = AppState {
        pool,
        store,
        config: Arc::new(config),
        docs: Arc::new(docs::Docs::new(&api::ApiDoc::openapi())),
        sessions: Arc::new(session::Sessions::default()),
        streams: Arc::new(tokio::sync::Semaphore::new(live::MAX_STREAMS)),
    };
    Router::new()
        .merge(pages::routes(state.clone()))
        .route("/docs", get(docs::page))
        .route("/api/openapi.json", get(docs::openapi))
        .merge(api::routes(state.clone()))
        .fallback(api::not_found)
        .layer(from_fn_with_state(
            Arc::new(throttle::Throttle::default()),
            throttle::guard,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn(limits::guard))
        .with_state(state)
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
    addr: SocketAddr,
    pool: Arc<pool::Pool>,
}

impl Server {
    /// Binds `addr` (port 0: any free port). Refuses an address beyond loopback when the
    /// configuration has no token ([`ServeError::NeedToken`]), and a read token without an
    /// operator token.
    pub async fn bind(
        store: Store,
        config: ServerConfig,
        addr: SocketAddr,
    ) -> Result<Server, ServeError> {
        config.check()?;
        if !addr.ip().is_loopback() && !config.has_token() {
            return Err(ServeError::NeedToken { addr });
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::Bind { addr, error })?;
        let addr = listener.local_addr().map_err(ServeError::Io)?;
        let pool = Arc::new(pool::Pool::new(config.pipeline_workers));
        let app = app(store, config.listening_on(addr), pool.clone());
        Ok(Server {
            listener,
            app,
            addr,
            pool,
        })
    }

    /// The address it listens on (the port chosen when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until Ctrl-C or SIGTERM, then finishes the requests under way.
    pub async fn run(self) -> Result<(), ServeError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then finishes the requests under way, and cancels
    /// the pipeline runs it executes (each node's process group gets `SIGTERM`, then `SIGKILL`
    /// after its grace), waiting until they are recorded Cancelled.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let pool = self.pool.clone();
        let stop = async move {
            shutdown.await;
            pool.cancel_all();
        };
        // The peer's address, for the throttle of wrong tokens.
        let app = self.app.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(stop)
            .await
            .map_err(ServeError::Io);
        self.pool.shut_down().await;
        served
    }
}

/// Binds `addr` and serves `store` until Ctrl-C or SIGTERM ([`Server::bind`], [`Server::run`]).
pub async fn serve(store: Store, config: ServerConfig, addr: SocketAddr) -> Result<(), ServeError> {
    Server::bind(store, config, addr).await?.run().await
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
