//! The dashboard's pages over HTTP (no browser): headers, sign-in redirects and sessions,
//! Origin checks on form posts, bad input as 4xx pages, hostile text escaped in the HTML,
//! and the live event stream of a run.

use std::net::SocketAddr;
use weft::prelude::*;
use weft::store::{DeploymentRecord, Store, WorkPoolSpec, WorkerInfo};
use weft_server::{Server, ServerConfig, Token};

const OPERATOR: &str = "operator-token-0123456789";
const READER: &str = "reader-token-0123456789";

#[task(name = "<script>alert(1)</script>")]
fn hostile(x: u32) -> Result<u32, String> {
    weft::tracing::info!("line <img src=x onerror=alert(1)>");
    Err(format!("\"><img src=x onerror=alert({x})>"))
}

#[flow(name = "pages <b>bold</b>")]
async fn hostile_flow(x: u32) -> u32 {
    let y = hostile(x)?;
    y
}

struct Env {
    rt: tokio::runtime::Runtime,
    store: Store,
    addr: SocketAddr,
    home: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Env {
    fn start(name: &str, config: ServerConfig) -> Env {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let home = std::env::temp_dir().join(format!("weft-pages-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let url = format!("sqlite://{}/weft.db", home.display());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (store, addr) = rt.block_on(async {
            let store = Store::connect(&url).await.unwrap();
            let server = Server::bind(store.clone(), config, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = server.local_addr();
            tokio::spawn(server.run_until(async {
                let _ = rx.await;
            }));
            (store, addr)
        });
        Env {
            rt,
            store,
            addr,
            home,
            _stop: tx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new().redirects(0).build()
    }

    /// Status, headers of interest and body of a request.
    fn call(&self, req: ureq::Request, form: Option<&[(&str, &str)]>) -> (u16, ureq::Response) {
        let result = match form {
            Some(f) => req.send_form(f),
            None => req.call(),
        };
        match result {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(code, r)) => (code, r),
            Err(e) => panic!("{e}"),
        }
    }

    fn deployment(&self, name: &str) {
        self.rt
            .block_on(self.store.register_deployment(&DeploymentRecord {
                name: name.into(),
                flow: "f".into(),
                schedule: None,
                parameters: serde_json::json!({ "x": 1 }),
                paused: false,
                last_run: None,
                last_run_at: None,
                next_run_at: None,
                updated: chrono::Utc::now(),
            }))
            .unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

#[test]
fn pages_are_escaped_and_sent_with_a_strict_policy() {
    let env = Env::start("escape", ServerConfig::new());
    let run = env.rt.block_on(hostile_flow::run_with(
        RunConfig::new().history(env.store.clone()),
        1,
    ));
    let (status, r) = env.call(
        env.agent().get(&env.url(&format!("/runs/{}", run.id))),
        None,
    );
    assert_eq!(status, 200);
    let csp = r.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
    let html = r.into_string().unwrap();
    assert!(
        !html.contains("<script>alert"),
        "a raw script tag in the page"
    );
    assert!(!html.contains("<img src=x"), "a raw img tag in the page");
    assert!(!html.contains("<b>bold"), "a raw b tag in the page");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // The only script is the embedded file, served as JavaScript.
    assert_eq!(html.matches("<script").count(), 1);
    let (status, js) = env.call(env.agent().get(&env.url("/static/app.js")), None);
    assert_eq!(status, 200);
    assert!(js.content_type().contains("javascript"));
}

#[test]
fn bad_input_is_a_4xx_page_never_a_500() {
    let env = Env::start("bad", ServerConfig::new());
    for (path, want) in [
        ("/runs/zz", 400),
        ("/runs/00000000-0000-0000-0000-000000000000", 404),
        ("/runs?state=sideways", 400),
        ("/runs?cursor=garbage", 400),
        ("/runs?since=yesterday", 400),
        ("/runs?deployment=none", 404),
        ("/runs/0000/tasks/x", 400),
        (
            "/runs/00000000-0000-0000-0000-000000000000/logs?level=loud",
            400,
        ),
        ("/?window=year", 400),
        ("/deployments/none/run", 404),
        ("/api/runs/zz/events", 400),
    ] {
        let (status, r) = env.call(env.agent().get(&env.url(path)), None);
        assert_eq!(
            status,
            want,
            "{path}: {}",
            r.into_string().unwrap_or_default()
        );
    }
}

#[test]
fn forms_post_only_from_this_server_and_the_run_form_queues_checked_values() {
    let env = Env::start("forms", ServerConfig::new());
    env.deployment("d");
    let own = format!("http://{}", env.addr);
    let post = |path: &str, origin: &str, form: &[(&str, &str)]| {
        let req = env.agent().post(&env.url(path)).set("Origin", origin);
        env.call(req, Some(form)).0
    };
    assert_eq!(
        post("/deployments/d/pause", "http://evil.example", &[]),
        403
    );
    assert!(!env.rt.block_on(env.store.deployment("d")).unwrap().paused);
    assert_eq!(post("/deployments/d/pause", &own, &[]), 303);
    assert!(env.rt.block_on(env.store.deployment("d")).unwrap().paused);
    assert_eq!(post("/deployments/d/run", &own, &[("p.x", "1.5")]), 422);
    assert_eq!(
        post("/deployments/d/run", &own, &[("p.x", "2"), ("p.y", "3")]),
        422
    );
    let names = vec!["d".to_owned()];
    assert!(env
        .rt
        .block_on(env.store.claim_requests(&names))
        .unwrap()
        .is_empty());
    assert_eq!(post("/deployments/d/run", &own, &[("p.x", "2")]), 303);
    let queued = env.rt.block_on(env.store.claim_requests(&names)).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].parameters["x"], serde_json::json!(2));
}

#[test]
fn a_server_with_a_token_needs_a_session_for_its_pages() {
    let config = ServerConfig::new()
        .token(Token::new(OPERATOR).unwrap())
        .read_token(Token::new(READER).unwrap());
    let env = Env::start("session", config);
    env.deployment("d");
    let own = format!("http://{}", env.addr);
    let (status, r) = env.call(env.agent().get(&env.url("/runs?flow=a")), None);
    assert_eq!(status, 303);
    assert_eq!(
        r.header("location"),
        Some("/signin?next=%2Fruns%3Fflow%3Da")
    );

    let signin = |token: &str| {
        let req = env.agent().post(&env.url("/signin")).set("Origin", &own);
        env.call(
            req,
            Some(&[("token", token), ("next", "javascript:alert(1)")]),
        )
    };
    let (status, r) = signin("wrong-token-0123456789");
    assert_eq!(status, 401);
    assert!(r.header("set-cookie").is_none());
    let (status, r) = signin(READER);
    assert_eq!(status, 303);
    assert_eq!(
        r.header("location"),
        Some("/"),
        "no redirect to a javascript: URL"
    );
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(READER));
    let session = cookie.split(';').next().unwrap().to_owned();

    let get = |path: &str| {
        let req = env.agent().get(&env.url(path)).set("Cookie", &session);
        env.call(req, None).0
    };
    assert_eq!(get("/deployments"), 200);
    assert_eq!(get("/api/flows"), 200, "the API takes the session too");
    // The read-only session may not pause; a cookie-borne POST needs its Origin.
    let pause = |origin: Option<&str>| {
        let mut req = env.agent().post(&env.url("/deployments/d/pause"));
        req = req.set("Cookie", &session);
        if let Some(o) = origin {
            req = req.set("Origin", o);
        }
        env.call(req, Some(&[])).0
    };
    assert_eq!(pause(Some(&own)), 403);
    assert_eq!(pause(None), 403);
    // Signing out ends the session.
    let req = env
        .agent()
        .post(&env.url("/signout"))
        .set("Cookie", &session)
        .set("Origin", &own);
    assert_eq!(env.call(req, Some(&[])).0, 303);
    assert_eq!(get("/deployments"), 303);
}

#[test]
fn the_event_stream_of_a_finished_run_sends_its_states_then_ends() {
    let env = Env::start("events", ServerConfig::new());
    let run = env.rt.block_on(hostile_flow::run_with(
        RunConfig::new().history(env.store.clone()),
        2,
    ));
    let path = format!("/api/runs/{}/events?after=start", run.id);
    let (status, r) = env.call(env.agent().get(&env.url(&path)), None);
    assert_eq!(status, 200);
    assert!(r.content_type().starts_with("text/event-stream"));
    let body = r.into_string().unwrap();
    for want in [
        "event: task",
        "event: log",
        "event: run",
        "event: end",
        "\"Failed\"",
    ] {
        assert!(body.contains(want), "{want} in {body}");
    }
}

const RUN_PIPE: &str = r#"
name = "pages_pipe"
[params.what]
type = "string"
default = "<script>alert(1)</script>"
description = "<img src=x onerror=alert(1)>"
[params.n]
type = "int"
min = 1
max = 9
required = true
[[nodes]]
id = "say"
command = ["echo", "{what}", "{n}"]
"#;

#[test]
fn only_operators_run_pipelines_and_the_form_escapes_the_schema() {
    let config = ServerConfig::new()
        .token(Token::new(OPERATOR).unwrap())
        .read_token(Token::new(READER).unwrap());
    let env = Env::start("pipeline-run", config);
    let pipe = weft::pipeline::Pipeline::from_toml(RUN_PIPE, "pages_pipe.toml").unwrap();
    let values = pipe
        .values_for(&[("n".to_owned(), serde_json::json!(1))], None)
        .unwrap();
    let config = RunConfig::new().history(env.store.clone());
    assert!(env
        .rt
        .block_on(pipe.run_with(config, &values))
        .is_successful());
    let own = format!("http://{}", env.addr);
    let get = |token: &str, path: &str| {
        let req = env.agent().get(&env.url(path));
        let (status, r) = env.call(req.set("Authorization", &format!("Bearer {token}")), None);
        (status, r.into_string().unwrap())
    };
    let post = |token: &str, form: &[(&str, &str)]| {
        let req = env.agent().post(&env.url("/pipelines/pages_pipe/run"));
        let req = req
            .set("Authorization", &format!("Bearer {token}"))
            .set("Origin", &own);
        let (status, r) = env.call(req, Some(form));
        let location = r.header("location").map(str::to_owned);
        (status, location, r.into_string().unwrap())
    };
    let runs = || {
        let filter = weft::store::RunFilter::new().flow("pages_pipe");
        env.rt.block_on(env.store.runs(&filter)).unwrap().len()
    };

    let (status, list) = get(READER, "/pipelines");
    assert_eq!(status, 200);
    assert!(!list.contains("/pipelines/pages_pipe/run"), "no Run button");
    assert_eq!(get(READER, "/pipelines/pages_pipe/run").0, 403);
    assert_eq!(post(READER, &[("p.n", "2")]).0, 403);
    assert_eq!(runs(), 1, "the reader queued nothing");

    let (_, list) = get(OPERATOR, "/pipelines");
    assert!(
        list.contains("href=\"/pipelines/pages_pipe/run\""),
        "a Run button"
    );
    let (status, form) = get(OPERATOR, "/pipelines/pages_pipe/run");
    assert_eq!(status, 200);
    assert!(form.contains(r#"type="number" step="1" id="p.n" name="p.n" min="1" max="9""#));
    assert!(!form.contains("<script>alert") && !form.contains("<img src=x"));
    assert!(form.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(form.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(form.contains("class=\"required\""));
    assert_eq!(get(OPERATOR, "/pipelines/nobody/run").0, 404);

    let (status, _, page) = post(OPERATOR, &[("p.n", "10"), ("p.what", "x")]);
    assert_eq!(status, 422);
    assert!(page.contains("Nothing was queued"));
    assert!(page.contains("parameter `n`: 10 is more than the maximum 9"));
    let (status, _, page) = post(OPERATOR, &[("p.what", "x")]);
    assert_eq!(status, 422);
    assert!(page.contains("missing required parameter `n`"));
    assert_eq!(runs(), 1, "nothing was queued");
    let (status, location, _) = post(OPERATOR, &[("p.n", "3")]);
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/runs/"));
    assert_eq!(runs(), 2, "listed at once");
}

#[test]
fn the_workers_page_lists_pools_and_workers_escaped_and_pauses_for_operators() {
    let env = Env::start("workers", ServerConfig::new());
    let (status, r) = env.call(env.agent().get(&env.url("/workers")), None);
    assert_eq!(status, 200);
    let html = r.into_string().unwrap();
    assert!(html.contains("No work pool yet"), "{html}");
    assert!(html.contains("href=\"/workers\""), "not in the nav: {html}");
    env.rt.block_on(async {
        let spec = WorkPoolSpec::new("etl<b>x</b>")
            .limit(2)
            .description("<img src=x onerror=alert(1)>");
        env.store.create_work_pool(&spec).await.unwrap();
        let info = WorkerInfo::this_process(
            "etl<b>x</b>",
            "<script>alert(1)</script>",
            vec!["<i>f</i>@1".into()],
        );
        env.store.register_worker(&info).await.unwrap();
        let mut away = WorkerInfo::this_process("etl<b>x</b>", "gone", vec![]);
        away.pid = u32::MAX - 1; // no such process on this host
        env.store.register_worker(&away).await.unwrap();
    });
    let (_, r) = env.call(env.agent().get(&env.url("/workers")), None);
    let html = r.into_string().unwrap();
    for raw in ["<b>x", "<img src=x", "<script>alert", "<i>f"] {
        assert!(!html.contains(raw), "{raw} reached the page unescaped");
    }
    assert!(html.contains("etl&lt;b&gt;x&lt;/b&gt;") && html.contains("&lt;i&gt;f&lt;/i&gt;@1"));
    assert!(html.contains("1 of 2"), "{html}");
    assert!(
        html.contains(">online<") && html.contains(">offline<"),
        "{html}"
    );
    let own = format!("http://{}", env.addr);
    let post = |path: &str, origin: &str| {
        let req = env.agent().post(&env.url(path)).set("Origin", origin);
        env.call(req, Some(&[])).0
    };
    let pause = "/workers/pools/etl%3Cb%3Ex%3C%2Fb%3E/pause";
    assert_eq!(post(pause, "http://evil.example"), 403);
    assert!(
        !env.rt
            .block_on(env.store.work_pool("etl<b>x</b>"))
            .unwrap()
            .paused
    );
    assert_eq!(post(pause, &own), 303);
    assert!(
        env.rt
            .block_on(env.store.work_pool("etl<b>x</b>"))
            .unwrap()
            .paused
    );
    assert_eq!(post("/workers/pools/none/resume", &own), 404);
}
