//! The weft server end to end: the real router on a loopback port over a real run history
//! (SQLite in a temporary WEFT_HOME, and a PostgreSQL schema of its own), filled by running real
//! flows and a real pipeline, read with a real HTTP client.

use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use weft::pipeline::params::resolve;
use weft::pipeline::Pipeline;
use weft::prelude::*;
use weft::store::{DeploymentRecord, Store, StoreOptions, WorkPoolSpec, WorkerInfo};
use weft_server::{ServeError, Server, ServerConfig, Token};

const OPERATOR: &str = "operator-token-0123456789";
const READER: &str = "reader-token-0123456789";

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

#[flow(name = "api ok")]
async fn ok_flow(x: u32) -> u32 {
    let y = double(x)?;
    y
}

#[task]
fn refuse(x: u32) -> Result<u32, String> {
    Err(format!("refused {x}"))
}

#[flow(name = "api bad")]
async fn bad_flow(x: u32) -> u32 {
    let y = refuse(x)?;
    y
}

#[task]
fn odd_fails(x: u32) -> Result<u32, String> {
    if x % 2 == 1 {
        return Err(format!("{x} is odd"));
    }
    Ok(x)
}

#[flow(name = "api mapped")]
async fn mapped(n: u32) -> usize {
    let ys = odd_fails::map(0..n);
    ys.len()
}

#[task]
fn chatty(lines: u32) -> u32 {
    for i in 0..lines {
        weft::tracing::info!("chatty line {i}");
    }
    weft::tracing::warn!("chatty is done");
    lines
}

#[flow(name = "api chatty")]
async fn chatty_flow(lines: u32) -> u32 {
    let n = chatty(lines)?;
    n
}

const PIPELINE: &str = r#"
name = "api_pipe"
[[nodes]]
id = "hello"
command = ["echo", "hello from the pipeline"]
"#;

/// Runs recorded: 7 of "api ok", 2 of "api bad", 1 mapped over 25 elements, 1 chatty, 1
/// pipeline; and a deployment "nightly" of "api ok".
async fn record_history(store: &Store) {
    let config = || RunConfig::new().history(store.clone());
    for x in 0..7 {
        assert!(ok_flow::run_with(config(), x).await.is_successful());
    }
    for x in 0..2 {
        let _ = bad_flow::run_with(config(), x).await;
    }
    let _ = mapped::run_with(config(), 25).await;
    let _ = chatty_flow::run_with(config(), 5).await;
    let pipe = Pipeline::from_toml(PIPELINE, "api_pipe.toml").unwrap();
    let values = resolve(&pipe.params, &[], None).unwrap();
    assert!(pipe.run_with(config(), &values).await.is_successful());
    store
        .register_deployment(&DeploymentRecord {
            name: "nightly".into(),
            flow: "api ok".into(),
            schedule: Some("every 1h".into()),
            parameters: serde_json::json!({ "x": 1 }),
            paused: false,
            last_run: None,
            last_run_at: None,
            next_run_at: None,
            updated: chrono::Utc::now(),
        })
        .await
        .unwrap();
    store
        .create_work_pool(&WorkPoolSpec::new("nightly").limit(3))
        .await
        .unwrap();
}

/// A server on a loopback port over a recorded history, stopped when dropped.
struct Env {
    rt: tokio::runtime::Runtime,
    /// The store the server reads (for runs started during a test).
    store: Store,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pg_schema: Option<String>,
}

impl Env {
    fn start(
        rt: tokio::runtime::Runtime,
        store: Store,
        config: ServerConfig,
        pg: Option<String>,
    ) -> Env {
        let server = rt.block_on(async {
            record_history(&store).await;
            let addr = "127.0.0.1:0".parse().unwrap();
            Server::bind(store.clone(), config, addr).await.unwrap()
        });
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Env {
            rt,
            store,
            addr,
            stop: Some(stop),
            pg_schema: pg,
        }
    }

    fn sqlite(config: ServerConfig) -> Env {
        let rt = runtime();
        let home = std::env::temp_dir().join(format!("weft-server-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/.weft/weft.db", home.display());
        let store = rt.block_on(Store::connect(&url)).unwrap();
        Env::start(rt, store, config, None)
    }

    fn postgres(config: ServerConfig) -> Env {
        let rt = runtime();
        let schema = format!("weft_server_{}", uuid::Uuid::new_v4().simple());
        let connect = StoreOptions::new(postgres_url()).schema(&schema).connect();
        let store = rt.block_on(connect).unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable ({e}): start it, or set WEFT_TEST_POSTGRES_URL")
        });
        Env::start(rt, store, config, Some(schema))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(schema) = self.pg_schema.take() {
            self.rt.block_on(async {
                let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&admin)
                    .await
                    .unwrap();
            });
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn postgres_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// An answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
    /// The JSON of a 200.
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        self.json()
    }
    /// The error message of a JSON error with `status`.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

/// A request with optional token, Origin and JSON body.
fn call(
    env: &Env,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut req = ureq::request(method, &env.url(path));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    Answer {
        status: response.status(),
        content_type: response.content_type().to_owned(),
        body: response.into_string().unwrap(),
    }
}

fn get(env: &Env, path: &str) -> Answer {
    call(env, "GET", path, None, &[], None)
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every run, following cursors with `limit` runs a page.
fn all_pages(env: &Env, query: &str, limit: u32) -> (Vec<Value>, usize) {
    let mut runs = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/runs?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get(env, &path).ok();
        pages += 1;
        runs.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (runs, pages),
        }
        assert!(pages < 100, "cursors never end");
    }
}

fn check_pagination(env: &Env) {
    let whole = get(env, "/api/runs").ok();
    let all = ids(&whole);
    assert_eq!(all.len(), 12, "{whole}");
    assert!(whole["next_cursor"].is_null());
    let (paged, pages) = all_pages(env, "", 5);
    assert_eq!(pages, 3);
    let paged_ids: Vec<String> = paged
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paged_ids, all, "no duplicates, no gaps, same order");
    let starts: Vec<&str> = paged
        .iter()
        .map(|r| r["started"].as_str().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    let (ok_runs, pages) = all_pages(env, "&flow=api%20ok", 3);
    assert_eq!((ok_runs.len(), pages), (7, 3));
}

fn check_filters(env: &Env) {
    let failed = get(env, "/api/runs?state=failed").ok();
    let flows: HashSet<&str> = failed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flow"].as_str().unwrap())
        .collect();
    assert!(
        flows.contains("api bad") && !flows.contains("api ok"),
        "{failed}"
    );
    let by_deployment = get(env, "/api/runs?deployment=nightly").ok();
    assert_eq!(ids(&by_deployment).len(), 7);
    let future = get(env, "/api/runs?since=2999-01-01T00:00:00Z").ok();
    assert!(ids(&future).is_empty());
    let past = get(env, "/api/runs?until=2000-01-01T00:00:00Z").ok();
    assert!(ids(&past).is_empty());
    assert_eq!(ids(&get(env, "/api/runs?flow=nobody").ok()).len(), 0);
}

fn check_bad_requests(env: &Env) {
    let cases = [
        ("/api/runs?state=exploded", 400, "unknown state"),
        ("/api/runs?cursor=garbage", 400, "cursor"),
        ("/api/runs?cursor=1.zz", 400, "cursor"),
        ("/api/runs?limit=0", 400, "1 to 200"),
        ("/api/runs?limit=201", 400, "1 to 200"),
        ("/api/runs?limit=many", 400, "limit"),
        ("/api/runs?since=yesterday", 400, "RFC 3339"),
        ("/api/runs?deployment=nope", 404, "nightly"),
        ("/api/runs/zz", 400, "run id"),
        (
            "/api/runs/00000000-0000-0000-0000-000000000000",
            404,
            "no flow run",
        ),
        ("/api/runs/ffff0000", 404, "no flow run"),
        (
            "/api/runs/00000000-0000-0000-0000-000000000000/logs",
            404,
            "no flow run",
        ),
        (
            "/api/runs/00000000-0000-0000-0000-000000000000/tasks/0",
            404,
            "no flow run",
        ),
        ("/api/stats?window=year", 400, "hour, day or week"),
        ("/api/nothing", 404, "/docs"),
    ];
    for (path, status, says) in cases {
        let message = get(env, path).error(status);
        assert!(message.contains(says), "{path}: {message}");
    }
    let id = first_run_of(env, "api ok");
    for path in [
        format!("/api/runs/{id}/tasks/notanumber"),
        format!("/api/runs/{id}/tasks/0?cursor=x"),
        format!("/api/runs/{id}/tasks/0?state=bogus"),
        format!("/api/runs/{id}/logs?level=loud"),
        format!("/api/runs/{id}/logs?cursor=x.y"),
    ] {
        get(env, &path).error(400);
    }
    let long = format!("/api/runs?flow={}", "x".repeat(5000));
    get(env, &long).error(414);
    assert_eq!(
        call(env, "DELETE", "/api/runs", None, &[], None).status,
        405
    );
}

fn first_run_of(env: &Env, flow: &str) -> String {
    let page = get(env, &format!("/api/runs?flow={}", flow.replace(' ', "%20"))).ok();
    page["runs"][0]["id"].as_str().unwrap().to_owned()
}

fn check_run_detail(env: &Env) {
    let id = first_run_of(env, "api ok");
    // A unique prefix names the run (UUIDv7 ids of runs started together share most of theirs).
    let detail = get(env, &format!("/api/runs/{}", &id[..34])).ok();
    assert_eq!(detail["run"]["id"], id.as_str());
    assert_eq!(detail["run"]["state"], "Completed");
    assert!(detail["parameters"].to_string().contains('6'), "{detail}");
    assert_eq!(detail["tasks"][0]["task"], "double");
    assert_eq!(detail["tasks"][0]["mapped"], false);
    let svg = get(env, &format!("/api/runs/{id}/graph.svg"));
    assert_eq!(
        (svg.status, svg.content_type.as_str()),
        (200, "image/svg+xml")
    );
    assert!(
        svg.body.contains("<svg") && svg.body.contains("double"),
        "{}",
        svg.body
    );
    let pipe = first_run_of(env, "api_pipe");
    let detail = get(env, &format!("/api/runs/{pipe}")).ok();
    let out = &detail["node_outputs"][0];
    assert_eq!(out["exit_code"], 0, "{detail}");
    assert!(out["stdout"]
        .as_str()
        .unwrap()
        .contains("hello from the pipeline"));
}

fn check_mapped(env: &Env) {
    let id = first_run_of(env, "api mapped");
    let detail = get(env, &format!("/api/runs/{id}")).ok();
    let tasks = detail["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "collapsed to one row: {detail}");
    let node = &tasks[0];
    assert_eq!(node["mapped"], true);
    assert_eq!(node["elements"]["Completed"], 13);
    assert_eq!(node["elements"]["Failed"], 12);
    let n = node["node"].as_u64().unwrap();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            env,
            &format!("/api/runs/{id}/tasks/{n}?limit=10&cursor={cursor}"),
        )
        .ok();
        seen.extend(
            page["elements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["map_index"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, (0..25).collect::<Vec<u64>>());
    let failed = get(env, &format!("/api/runs/{id}/tasks/{n}?state=failed")).ok();
    let failed = failed["elements"].as_array().unwrap();
    assert_eq!(failed.len(), 12);
    assert!(failed
        .iter()
        .all(|e| e["message"].as_str().unwrap().contains("is odd")));
}

fn check_logs(env: &Env) {
    let id = first_run_of(env, "api chatty");
    let all = get(env, &format!("/api/runs/{id}/logs")).ok();
    let all: Vec<String> = all["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(all.iter().any(|m| m == "chatty line 4"), "{all:?}");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(env, &format!("/api/runs/{id}/logs?limit=2&cursor={cursor}")).ok();
        paged.extend(
            page["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["message"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, all);
    let warn = get(env, &format!("/api/runs/{id}/logs?level=warn")).ok();
    let warn = warn["logs"].as_array().unwrap();
    assert!(
        !warn.is_empty()
            && warn
                .iter()
                .all(|l| l["level"] == "WARN" || l["level"] == "ERROR")
    );
    let task = get(env, &format!("/api/runs/{id}/logs?task=chatty")).ok();
    let task = task["logs"].as_array().unwrap();
    assert!(!task.is_empty());
    assert!(task
        .iter()
        .all(|l| l["message"].as_str().unwrap().starts_with("Task 'chatty'")));
}

fn check_lists(env: &Env) {
    let flows = get(env, "/api/flows").ok();
    let ok = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "api ok")
        .unwrap();
    assert_eq!(
        (ok["runs"].as_u64(), ok["by_state"]["Completed"].as_u64()),
        (Some(7), Some(7))
    );
    assert_eq!(ok["versions"].as_array().unwrap().len(), 1);
    let deployments = get(env, "/api/deployments").ok();
    assert_eq!(deployments[0]["name"], "nightly");
    assert_eq!(deployments[0]["paused"], false);
    let pipelines = get(env, "/api/pipelines").ok();
    assert_eq!(pipelines[0]["name"], "api_pipe");
    let stats = get(env, "/api/stats?window=hour").ok();
    let flow_runs: u64 = stats["flow_runs"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(flow_runs, 12, "{stats}");
    assert!(
        stats["task_runs"]["Failed"].as_u64().unwrap() >= 14,
        "{stats}"
    );
    let buckets = stats["buckets"].as_array().unwrap();
    assert!((60..=62).contains(&buckets.len()), "{}", buckets.len());
    let in_buckets: u64 = buckets
        .iter()
        .flat_map(|b| b["counts"].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, 12);
    for window in ["day", "week"] {
        get(env, &format!("/api/stats?window={window}")).ok();
    }
}

fn check_api(env: &Env) {
    check_pagination(env);
    check_filters(env);
    check_bad_requests(env);
    check_run_detail(env);
    check_mapped(env);
    check_logs(env);
    check_lists(env);
}

#[test]
fn the_api_over_sqlite() {
    let env = Env::sqlite(ServerConfig::new());
    check_api(&env);
}

#[test]
fn the_api_over_postgresql() {
    let env = Env::postgres(ServerConfig::new());
    check_api(&env);
}

fn tokens() -> ServerConfig {
    ServerConfig::new()
        .token(Token::new(OPERATOR).unwrap())
        .read_token(Token::new(READER).unwrap())
}

#[test]
fn tokens_and_roles() {
    let env = Env::sqlite(tokens());
    let message = get(&env, "/api/runs").error(401);
    assert!(message.contains("Authorization: Bearer"), "{message}");
    call(
        &env,
        "GET",
        "/api/runs",
        Some("wrong-token-0123456789"),
        &[],
        None,
    )
    .error(401);
    assert_eq!(
        call(&env, "GET", "/api/runs", Some(READER), &[], None).status,
        200
    );
    assert_eq!(
        call(&env, "GET", "/api/runs", Some(OPERATOR), &[], None).status,
        200
    );
    // The document describes the API to anyone; it holds no history.
    assert_eq!(get(&env, "/api/openapi.json").status, 200);

    let pause = "/api/deployments/nightly/pause";
    call(&env, "POST", pause, None, &[], None).error(401);
    let message = call(&env, "POST", pause, Some(READER), &[], None).error(403);
    assert!(message.contains("operator"), "{message}");
    let paused = call(&env, "POST", pause, Some(OPERATOR), &[], None).ok();
    assert_eq!(paused["paused"], true);
    let listed = call(&env, "GET", "/api/deployments", Some(READER), &[], None).ok();
    assert_eq!(listed[0]["paused"], true);
    let resumed = call(
        &env,
        "POST",
        "/api/deployments/nightly/resume",
        Some(OPERATOR),
        &[],
        None,
    )
    .ok();
    assert_eq!(resumed["paused"], false);
    call(
        &env,
        "POST",
        "/api/deployments/nobody/pause",
        Some(OPERATOR),
        &[],
        None,
    )
    .error(404);
}

#[test]
fn wrong_tokens_are_throttled_by_address() {
    let env = Env::sqlite(tokens());
    // Asking without a token is not guessing one: never throttled.
    for _ in 0..25 {
        get(&env, "/api/runs").error(401);
    }
    let wrong = Some("wrong-token-0123456789");
    for _ in 0..20 {
        call(&env, "GET", "/api/runs", wrong, &[], None).error(401);
    }
    // From now on this address's tokens are not compared: even the right one waits.
    let message = call(&env, "GET", "/api/runs", Some(OPERATOR), &[], None).error(429);
    assert!(
        message.contains("20 wrong tokens") && message.contains("try again in"),
        "{message}"
    );
    let signin = call(&env, "POST", "/signin", None, &[], Some("token=x"));
    assert_eq!(signin.status, 429, "{}", signin.body);
    get(&env, "/api/runs").error(401);
}

#[test]
fn state_changes_check_origin_and_bodies() {
    let env = Env::sqlite(tokens());
    let runs = "/api/deployments/nightly/runs";
    let evil = [("Origin", "http://evil.example")];
    let message = call(&env, "POST", runs, Some(OPERATOR), &evil, Some("{}")).error(403);
    assert!(message.contains("origin"), "{message}");
    let own = format!("http://{}", env.addr);
    let body = r#"{"parameters": {"x": 5}}"#;
    let asked = call(
        &env,
        "POST",
        runs,
        Some(OPERATOR),
        &[("Origin", &own)],
        Some(body),
    );
    assert_eq!(asked.status, 202, "{}", asked.body);
    assert_eq!(asked.json()["state"], "Requested");
    call(&env, "POST", runs, Some(OPERATOR), &[], Some("{not json")).error(400);
    let huge = format!(r#"{{"parameters": {{"x": "{}"}}}}"#, "y".repeat(100_000));
    call(&env, "POST", runs, Some(OPERATOR), &[], Some(&huge)).error(413);
}

/// A raw request, to send a Host header of our choosing.
fn raw_get(addr: SocketAddr, host: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn without_a_token_only_loopback_names_are_answered() {
    let env = Env::sqlite(ServerConfig::new());
    let own = raw_get(env.addr, &env.addr.to_string(), "/api/flows");
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    let localhost = raw_get(
        env.addr,
        &format!("localhost:{}", env.addr.port()),
        "/api/flows",
    );
    assert!(localhost.starts_with("HTTP/1.1 200"), "{localhost}");
    let rebound = raw_get(env.addr, "evil.example:4200", "/api/flows");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    // Without a token anyone local is an operator, but a page from elsewhere cannot change state.
    let pause = "/api/deployments/nightly/pause";
    call(
        &env,
        "POST",
        pause,
        None,
        &[("Origin", "http://evil.example")],
        None,
    )
    .error(403);
    assert_eq!(call(&env, "POST", pause, None, &[], None).status, 200);
}

#[test]
fn binding_beyond_loopback_needs_a_token() {
    let rt = runtime();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("weft-server-bind-{}", uuid::Uuid::new_v4()));
        let store = Store::connect(&format!("sqlite://{}/weft.db", dir.display()))
            .await
            .unwrap();
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let refused = Server::bind(store.clone(), ServerConfig::new(), any)
            .await
            .err()
            .unwrap();
        assert!(matches!(refused, ServeError::NeedToken { .. }));
        let message = refused.to_string();
        for hint in ["--token", "WEFT_API_TOKEN", "--token-file"] {
            assert!(message.contains(hint), "{message}");
        }
        let reader_only = ServerConfig::new().read_token(Token::new(READER).unwrap());
        let refused =
            Server::bind(store.clone(), reader_only, "127.0.0.1:0".parse().unwrap()).await;
        assert!(matches!(refused, Err(ServeError::Config(_))));
        let same = ServerConfig::new()
            .token(Token::new(OPERATOR).unwrap())
            .read_token(Token::new(OPERATOR).unwrap());
        let refused = Server::bind(store.clone(), same, "127.0.0.1:0".parse().unwrap()).await;
        assert!(matches!(refused, Err(ServeError::Config(_))));
        let with_token = ServerConfig::new().token(Token::new(OPERATOR).unwrap());
        let bound = Server::bind(store, with_token, any).await.unwrap();
        assert_ne!(bound.local_addr().port(), 0);
        assert!(!format!("{:?}", Token::new(OPERATOR).unwrap()).contains(OPERATOR));
    });
}

/// Every route the server answers, as the document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/runs"),
    ("get", "/api/runs/{id}"),
    ("get", "/api/runs/{id}/tasks/{node}"),
    ("get", "/api/runs/{id}/logs"),
    ("get", "/api/runs/{id}/graph.svg"),
    ("get", "/api/runs/{id}/events"),
    ("get", "/api/flows"),
    ("get", "/api/deployments"),
    ("post", "/api/deployments/{name}/pause"),
    ("post", "/api/deployments/{name}/resume"),
    ("post", "/api/deployments/{name}/runs"),
    ("post", "/api/runs/{id}/cancel"),
    ("get", "/api/pipelines"),
    ("post", "/api/pipelines/{name}/runs"),
    ("get", "/api/stats"),
    ("get", "/api/work-pools"),
    ("get", "/api/workers"),
    ("post", "/api/work-pools/{name}/pause"),
    ("post", "/api/work-pools/{name}/resume"),
];

#[test]
fn the_openapi_document_lists_every_route() {
    let env = Env::sqlite(ServerConfig::new());
    let doc = get(&env, "/api/openapi.json").ok();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let listed: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(listed, ROUTES.len(), "{:?}", paths.keys());
    let id = first_run_of(&env, "api ok");
    for (method, path) in ROUTES {
        assert!(
            paths[*path].get(*method).is_some(),
            "{method} {path} is not documented"
        );
        let real = path.replace("{id}", &id).replace("{node}", "0").replace(
            "{name}",
            match path.starts_with("/api/pipelines") {
                true => "api_pipe",
                false => "nightly",
            },
        );
        let body = (*method == "post").then_some("{}");
        let answer = call(&env, &method.to_uppercase(), &real, None, &[], body);
        // The run has ended: nothing to cancel.
        let ended = path.ends_with("/cancel") && answer.status == 409;
        assert!(
            answer.status < 300 || ended,
            "{method} {real}: {} {}",
            answer.status,
            answer.body
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let page = get(&env, "/docs");
    assert!(page.content_type.starts_with("text/html"));
    for (_, path) in ROUTES {
        assert!(page.body.contains(path), "/docs lacks {path}");
    }
    let root = get(&env, "/");
    assert!(root.content_type.starts_with("text/html"));
    assert!(root.body.contains("Dashboard"));
}

#[task]
async fn nap(secs: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    secs
}

#[flow(name = "api long")]
async fn long_flow(secs: u64) -> u64 {
    let n = nap(secs)?;
    n
}

/// Starts a run of "api long" in this process, recorded in the server's store; its id once it
/// is Running, and its handle.
fn start_long_run(env: &Env) -> (String, tokio::task::JoinHandle<FlowRun<u64>>) {
    let config = RunConfig::new().history(env.store.clone());
    let handle = env.rt.spawn(long_flow::run_with(config, 3600));
    for _ in 0..200 {
        let page = call(
            env,
            "GET",
            "/api/runs?flow=api%20long",
            Some(OPERATOR),
            &[],
            None,
        );
        if let Some(run) = page.json()["runs"]
            .as_array()
            .and_then(|r| r.first().cloned())
        {
            if run["state"] == "Running" {
                return (run["id"].as_str().unwrap().to_owned(), handle);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the long run did not start");
}

/// Cancels a running run through the API: roles, Origin, bad ids and bodies, then the run
/// ends Cancelled (its task too), and a second request is a 409.
fn check_cancel(env: &Env) {
    let (id, handle) = start_long_run(env);
    let path = format!("/api/runs/{id}/cancel");
    call(env, "POST", &path, None, &[], None).error(401);
    let message = call(env, "POST", &path, Some(READER), &[], None).error(403);
    assert!(message.contains("operator"), "{message}");
    let evil = [("Origin", "http://evil.example")];
    call(env, "POST", &path, Some(OPERATOR), &evil, None).error(403);
    call(
        env,
        "POST",
        "/api/runs/zz!/cancel",
        Some(OPERATOR),
        &[],
        None,
    )
    .error(400);
    call(
        env,
        "POST",
        "/api/runs/0000ffff/cancel",
        Some(OPERATOR),
        &[],
        None,
    )
    .error(404);
    let bad = call(env, "POST", &path, Some(OPERATOR), &[], Some("{not json"));
    assert!(bad.error(400).contains("reason"));

    let asked = std::time::Instant::now();
    let own = format!("http://{}", env.addr);
    let body = r#"{"reason": "api says stop"}"#;
    let answer = call(
        env,
        "POST",
        &path,
        Some(OPERATOR),
        &[("Origin", &own)],
        Some(body),
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.json()["outcome"], "requested");
    let run = env
        .rt
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), handle).await })
        .expect("the run ended")
        .unwrap();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(run.state.kind, StateKind::Cancelled);
    assert_eq!(run.state.message.as_deref(), Some("api says stop"));
    assert_eq!(run.task("nap").unwrap().state.kind, StateKind::Cancelled);
    let shown = call(
        env,
        "GET",
        &format!("/api/runs/{id}"),
        Some(READER),
        &[],
        None,
    )
    .ok();
    assert_eq!(shown["run"]["state"], "Cancelled", "{shown}");
    assert_eq!(shown["tasks"][0]["state"], "Cancelled", "{shown}");
    let again = call(env, "POST", &path, Some(OPERATOR), &[], None).error(409);
    assert!(again.contains("already ended (Cancelled)"), "{again}");
}

#[test]
fn cancelling_a_run_over_sqlite() {
    check_cancel(&Env::sqlite(tokens()));
}

#[test]
fn cancelling_a_run_over_postgresql() {
    let env = Env::postgres(tokens());
    check_cancel(&env);
    // A run no live process owns (its process is gone: no owner, started long ago) is marked
    // Cancelled at once.
    let schema = env.pg_schema.clone().unwrap();
    let orphan = uuid::Uuid::now_v7().to_string();
    env.rt.block_on(async {
        let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".flow_runs (id, flow, flow_version, parameters, state, \
             started) VALUES ($1, 'api long', 'v', '{{}}', 'Running', '2026-01-01T00:00:00.000000Z')"
        ))
        .bind(&orphan)
        .execute(&admin)
        .await
        .unwrap();
    });
    let path = format!("/api/runs/{orphan}/cancel");
    let answer = call(&env, "POST", &path, Some(OPERATOR), &[], None).ok();
    assert_eq!(answer["outcome"], "not_owned", "{answer}");
    let shown = call(
        &env,
        "GET",
        &format!("/api/runs/{orphan}"),
        Some(READER),
        &[],
        None,
    )
    .ok();
    assert_eq!(shown["run"]["state"], "Cancelled", "{shown}");
    let message = shown["run"]["message"].as_str().unwrap();
    assert!(
        message.contains("no live process owned the run"),
        "{message}"
    );
}

// ---- Pipelines run by the server ----

/// A greeting with a bounded count; its node prints its values.
const RUN_PIPE: &str = r#"
name = "api_run"
[params.who]
type = "string"
default = "world"
description = "who to greet"
[params.count]
type = "int"
min = 1
max = 5
default = 1
[[nodes]]
id = "greet"
command = ["echo", "hello {who} x{count}"]
"#;

/// Appends `s <ns>` when it starts and `e <ns>` when it ends, a second apart.
const TIMES_PIPE: &str = r#"
name = "api_times"
[params.file]
type = "path"
required = true
[[nodes]]
id = "span"
script = 'echo "s $(date +%s%N)" >> "$file"; sleep 1; echo "e $(date +%s%N)" >> "$file"'
"#;

/// Sleeps `secs` (a value unique to the test, to find its process).
const SLEEP_PIPE: &str = r#"
name = "api_sleep"
[params.secs]
type = "int"
required = true
[[nodes]]
id = "nap"
command = ["sleep", "{secs}"]
"#;

/// Records one run of each of the pipelines above, so the server knows their versions.
fn record_pipelines(env: &Env) {
    let scratch = std::env::temp_dir().join(format!("weft-times-{}", uuid::Uuid::new_v4()));
    let given = [
        (RUN_PIPE, vec![]),
        (TIMES_PIPE, vec![("file", scratch.display().to_string())]),
        (SLEEP_PIPE, vec![("secs", "0".to_owned())]),
    ];
    for (text, values) in given {
        let pipe = Pipeline::from_toml(text, "test.toml").unwrap();
        let given: Vec<(String, Value)> = values
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        let values = pipe.values_for(&given, None).unwrap();
        let config = RunConfig::new().history(env.store.clone());
        let run = env.rt.block_on(pipe.run_with(config, &values));
        assert!(run.is_successful(), "{:?}", run.state);
    }
    let _ = std::fs::remove_file(scratch);
}

fn pipe_env(sqlite: bool, workers: usize) -> Env {
    let config = tokens().pipeline_workers(workers);
    let env = match sqlite {
        true => Env::sqlite(config),
        false => Env::postgres(config),
    };
    record_pipelines(&env);
    env
}

/// POSTs a run of `name` with `body` as the operator.
fn post_run(env: &Env, name: &str, body: &str) -> Answer {
    let path = format!("/api/pipelines/{name}/runs");
    call(env, "POST", &path, Some(OPERATOR), &[], Some(body))
}

/// The id of a run the server queued (202).
fn queued(answer: &Answer) -> String {
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.json()["run"].as_str().unwrap().to_owned()
}

/// The run's detail once it is in a final state (at most 30 s).
fn wait_final(env: &Env, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let shown = call(
            env,
            "GET",
            &format!("/api/runs/{id}"),
            Some(READER),
            &[],
            None,
        )
        .ok();
        let state = shown["run"]["state"].as_str().unwrap().to_owned();
        if ["Completed", "Failed", "Cancelled", "Crashed"].contains(&state.as_str()) {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {state}: {shown}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs of `flow` listed by the API.
fn run_ids(env: &Env, flow: &str) -> Vec<String> {
    let page = call(
        env,
        "GET",
        &format!("/api/runs?flow={flow}&limit=200"),
        Some(READER),
        &[],
        None,
    );
    ids(&page.ok())
}

/// A run started through the API is listed at once, runs, and shows its node's output; a bad
/// value is a 422 naming it and queues nothing; the reader may not start one.
fn check_pipeline_run(env: &Env) {
    let answer = post_run(env, "api_run", r#"{"parameters": {"who": "tester <b>"}}"#);
    let id = queued(&answer);
    assert_eq!(answer.json()["state"], "Pending");
    assert!(run_ids(env, "api_run").contains(&id), "listed at once");
    let shown = wait_final(env, &id);
    assert_eq!(shown["run"]["state"], "Completed", "{shown}");
    let out = &shown["node_outputs"][0];
    assert_eq!(out["stdout"], "hello tester <b> x1\n", "{shown}");
    assert_eq!(shown["parameters"]["who"], "tester <b>", "{shown}");
    let logs = call(
        env,
        "GET",
        &format!("/api/runs/{id}/logs"),
        Some(READER),
        &[],
        None,
    )
    .ok();
    assert!(
        logs.to_string()
            .contains("Queued from the weft server's API"),
        "{logs}"
    );

    let before = run_ids(env, "api_run").len();
    let bad = post_run(
        env,
        "api_run",
        r#"{"parameters": {"count": 9, "who": "x"}}"#,
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    let reason = bad.json()["parameters"]["count"]
        .as_str()
        .unwrap()
        .to_owned();
    // The CLI's wording.
    assert_eq!(reason, "parameter `count`: 9 is more than the maximum 5");
    assert!(bad.json()["parameters"].get("who").is_none());
    let unknown = post_run(env, "api_run", r#"{"parameters": {"cuont": 2}}"#);
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(unknown.json()["parameters"]["cuont"]
        .as_str()
        .unwrap()
        .contains("did you mean `count`"));
    let path = "/api/pipelines/api_run/runs";
    let message = call(env, "POST", path, Some(READER), &[], Some("{}")).error(403);
    assert!(message.contains("operator"), "{message}");
    assert_eq!(run_ids(env, "api_run").len(), before, "nothing was queued");
    post_run(env, "nobody", "{}").error(404);
    post_run(env, "api_run", r#"{"version": "0000"}"#).error(404);
    let evil = [("Origin", "http://evil.example")];
    call(env, "POST", path, Some(OPERATOR), &evil, Some("{}")).error(403);
}

/// Processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| *c == want)
        .count()
}

/// Waits (at most 20 s) until `ok` holds.
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A running pipeline run is cancelled by the API: it ends Cancelled and its process is gone.
fn check_pipeline_cancel(env: &Env, secs: u32) {
    let secs_text = secs.to_string();
    let argv = ["sleep", secs_text.as_str()];
    let id = queued(&post_run(
        env,
        "api_sleep",
        &format!(r#"{{"parameters": {{"secs": {secs}}}}}"#),
    ));
    wait_until("the node's process runs", || processes(&argv) == 1);
    let path = format!("/api/runs/{id}/cancel");
    let answer = call(
        env,
        "POST",
        &path,
        Some(OPERATOR),
        &[],
        Some(r#"{"reason": "enough"}"#),
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    let shown = wait_final(env, &id);
    assert_eq!(shown["run"]["state"], "Cancelled", "{shown}");
    assert_eq!(shown["tasks"][0]["state"], "Cancelled", "{shown}");
    // The request stays on the run: when, and why.
    assert_eq!(shown["run"]["cancel_reason"], "enough", "{shown}");
    assert!(shown["run"]["cancel_requested"].is_string(), "{shown}");
    wait_until("the node's process is gone", || processes(&argv) == 0);
}

#[test]
fn running_pipelines_over_sqlite() {
    let env = pipe_env(true, 2);
    check_pipeline_run(&env);
    check_pipeline_cancel(&env, 3_601_001);
}

#[test]
fn running_pipelines_over_postgresql() {
    let env = pipe_env(false, 2);
    check_pipeline_run(&env);
    check_pipeline_cancel(&env, 3_601_002);
}

/// Starts two runs of "api_times" into one file, waits for both; the file's events in time
/// order (`s` start, `e` end).
fn two_spans(env: &Env) -> Vec<char> {
    let file = std::env::temp_dir().join(format!("weft-spans-{}", uuid::Uuid::new_v4()));
    let body = serde_json::json!({ "parameters": { "file": file } }).to_string();
    let first = queued(&post_run(env, "api_times", &body));
    let second = queued(&post_run(env, "api_times", &body));
    assert!(
        run_ids(env, "api_times").contains(&second),
        "listed at once"
    );
    for id in [first, second] {
        assert_eq!(wait_final(env, &id)["run"]["state"], "Completed");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let mut events: Vec<(u128, char)> = text
        .lines()
        .map(|l| {
            let (kind, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), kind.chars().next().unwrap())
        })
        .collect();
    events.sort();
    events.into_iter().map(|e| e.1).collect()
}

#[test]
fn the_pool_bounds_how_many_pipelines_run_at_once() {
    let one = pipe_env(true, 1);
    assert_eq!(
        two_spans(&one),
        ['s', 'e', 's', 'e'],
        "one worker: one after the other"
    );
    let two = pipe_env(true, 2);
    assert_eq!(
        two_spans(&two),
        ['s', 's', 'e', 'e'],
        "two workers: at once"
    );
}

#[test]
fn a_full_pool_refuses_and_queued_runs_cancel() {
    let env = pipe_env(true, 1);
    // One runs, four wait: the sixth is refused.
    let body = r#"{"parameters": {"secs": 3601003}}"#;
    let ids: Vec<String> = (0..5)
        .map(|_| queued(&post_run(&env, "api_sleep", body)))
        .collect();
    let full = post_run(&env, "api_sleep", body).error(503);
    assert!(full.contains("pool is full"), "{full}");
    let waiting = call(
        &env,
        "GET",
        &format!("/api/runs/{}", ids[4]),
        Some(READER),
        &[],
        None,
    )
    .ok();
    assert_eq!(waiting["run"]["state"], "Pending", "{waiting}");
    // Its page shows it Pending, with the Cancel button.
    let page = call(
        &env,
        "GET",
        &format!("/runs/{}", ids[4]),
        Some(OPERATOR),
        &[],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("s-pending") && page.body.contains("id=\"cancel-run\""));
    for id in ids.iter().rev() {
        let path = format!("/api/runs/{id}/cancel");
        assert_eq!(
            call(&env, "POST", &path, Some(OPERATOR), &[], None).status,
            202
        );
    }
    for id in &ids {
        assert_eq!(wait_final(&env, id)["run"]["state"], "Cancelled");
    }
    wait_until("no node process is left", || {
        processes(&["sleep", "3601003"]) == 0
    });
}

#[test]
fn a_server_without_pipeline_workers_runs_none() {
    let env = pipe_env(true, 0);
    let message = post_run(&env, "api_run", "{}").error(503);
    assert!(message.contains("--pipeline-workers 0"), "{message}");
}

#[test]
fn stopping_the_server_cancels_its_pipeline_runs() {
    let rt = runtime();
    let home = std::env::temp_dir().join(format!("weft-server-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/.weft/weft.db", home.display());
    let store = rt.block_on(Store::connect(&url)).unwrap();
    let server = rt.block_on(async {
        let addr = "127.0.0.1:0".parse().unwrap();
        Server::bind(store.clone(), tokens(), addr).await.unwrap()
    });
    let env = Env {
        addr: server.local_addr(),
        rt,
        store,
        stop: None,
        pg_schema: None,
    };
    record_pipelines(&env);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = env.rt.spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let id = queued(&post_run(
        &env,
        "api_sleep",
        r#"{"parameters": {"secs": 3601004}}"#,
    ));
    let argv = ["sleep", "3601004"];
    wait_until("the node's process runs", || processes(&argv) == 1);
    stop.send(()).unwrap();
    let done = env.rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(20), serving).await
    });
    done.expect("the server stopped").unwrap().unwrap();
    assert_eq!(processes(&argv), 0, "no node is left running");
    let run = env
        .rt
        .block_on(env.store.run_record(id.parse().unwrap()))
        .unwrap();
    assert_eq!(run.state, StateKind::Cancelled, "{run:?}");
}

/// Work pools and workers: the two lists (any role), pause and resume (operator only, from
/// this server's origin), unknown pools 404.
#[test]
fn work_pools_and_workers() {
    let env = Env::sqlite(tokens());
    let read = |path: &str| call(&env, "GET", path, Some(READER), &[], None);
    let info = WorkerInfo::this_process("nightly", "w<1>", vec!["api ok@1".into()]);
    let mut away = WorkerInfo::this_process("nightly", "w2", vec![]);
    away.host = "elsewhere".into();
    let (live, stale) = env.rt.block_on(async {
        let live = env.store.register_worker(&info).await.unwrap();
        let stale = env.store.register_worker(&away).await.unwrap();
        (live, stale)
    });
    let pools = read("/api/work-pools").ok();
    assert_eq!(pools[0]["name"], "nightly");
    assert_eq!(pools[0]["concurrency_limit"], 3);
    assert_eq!(pools[0]["paused"], false);
    let workers = read("/api/workers?pool=nightly").ok();
    let ids: Vec<&str> = workers
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [live.to_string(), stale.to_string()]);
    assert_eq!(workers[0]["name"], "w<1>");
    assert_eq!(workers[0]["flows"], serde_json::json!(["api ok@1"]));
    assert_eq!(workers[0]["online"], true);
    let message = read("/api/workers?pool=gone").error(404);
    assert!(message.contains("weft work-pool ls"), "{message}");
    get(&env, "/api/work-pools").error(401);

    let pause = "/api/work-pools/nightly/pause";
    let message = call(&env, "POST", pause, Some(READER), &[], None).error(403);
    assert!(message.contains("operator"), "{message}");
    let evil = [("Origin", "http://evil.example")];
    call(&env, "POST", pause, Some(OPERATOR), &evil, None).error(403);
    assert_eq!(read("/api/work-pools").ok()[0]["paused"], false);
    let own = format!("http://{}", env.addr);
    let paused = call(
        &env,
        "POST",
        pause,
        Some(OPERATOR),
        &[("Origin", &own)],
        None,
    )
    .ok();
    assert_eq!(paused["paused"], true);
    assert!(
        env.rt
            .block_on(env.store.work_pool("nightly"))
            .unwrap()
            .paused
    );
    let resume = "/api/work-pools/nightly/resume";
    assert_eq!(
        call(&env, "POST", resume, Some(OPERATOR), &[], None).ok()["paused"],
        false
    );
    call(
        &env,
        "POST",
        "/api/work-pools/gone/pause",
        Some(OPERATOR),
        &[],
        None,
    )
    .error(404);
}
