//! The dashboard in a real headless Chromium, driven through chromedriver (WebDriver) with
//! fantoccini, over the real weft server and a real SQLite history written by running real
//! flows. Each page's screenshot is saved under `target/browser-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` on the PATH (Debian: `apt-get install chromium
//! chromium-driver`; CI installs them). Without them every test here fails saying so.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use weft::pipeline::params::resolve;
use weft::pipeline::Pipeline;
use weft::prelude::*;
use weft::store::{DeploymentRecord, Store, WorkPoolSpec, WorkerInfo};
use weft_server::{Server, ServerConfig, Token};

const OPERATOR: &str = "operator-token-0123456789";
const GREEN: &str = "#28a745";
const RED: &str = "#dc3545";

// ---------------------------------------------------------------- flows the tests record

#[task]
fn double(x: u32) -> u32 {
    x * 2
}

#[flow(name = "browser ok")]
async fn ok_flow(x: u32) -> u32 {
    let y = double(x)?;
    y
}

#[task]
fn boom(x: u32) -> Result<u32, String> {
    Err(format!("boom at {x}: the disk is full"))
}

#[flow(name = "browser mixed")]
async fn mixed(x: u32) -> u32 {
    let a = double(x)?;
    let b = boom(a)?;
    b
}

#[task]
fn square(x: u32) -> Result<u32, String> {
    if x == 3 {
        return Err("three is refused".into());
    }
    Ok(x * x)
}

#[flow(name = "browser mapped")]
async fn mapped(n: u32) -> usize {
    let ys = square::map(0..n);
    ys.len()
}

/// Released by the live test once the page is open.
static RELEASE: OnceLock<tokio::sync::Notify> = OnceLock::new();

#[task]
async fn wait_for_release() -> u32 {
    RELEASE.get_or_init(Default::default).notified().await;
    weft::tracing::info!("released by the test");
    7
}

#[flow(name = "browser live")]
async fn live_flow() -> u32 {
    let x = wait_for_release()?;
    x
}

#[task]
async fn nap(secs: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    secs
}

#[flow(name = "browser long")]
async fn long_flow(secs: u64) -> u64 {
    let n = nap(secs)?;
    n
}

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";
const JS_URL: &str = "javascript:alert(1)";

#[task(name = "<script>alert(1)</script>")]
fn hostile_task(v: String) -> Result<u32, String> {
    weft::tracing::info!("log line {}", SCRIPT);
    Err(format!("error {IMG}: {v}"))
}

#[flow(name = "\"><img src=x onerror=alert(1)>")]
async fn hostile_flow(v: String) -> u32 {
    let n = hostile_task(v)?;
    n
}

#[flow(name = "javascript:alert(1)")]
async fn js_named(x: u32) -> u32 {
    let y = double(x)?;
    y
}

const HOSTILE_PIPELINE: &str = r#"
name = "hostile_pipe"
[params.what]
type = "string"
default = "<script>alert(1)</script>"
[[nodes]]
id = "echo"
command = ["echo", "\"><img src=x onerror=alert(1)>", "{what}"]
"#;

// ---------------------------------------------------------------- the browser and the server

/// chromedriver on a free port and a headless Chromium session through it; both end when
/// dropped.
struct Browser {
    client: Option<Client>,
    driver: Child,
}

fn need(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed: the browser tests need Chromium and its driver. \
             Install them with `apt-get update && apt-get install -y chromium chromium-driver` \
             (Debian; .ci/run does it)"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start() -> Browser {
        let chromium = need("chromium");
        let driver_path = need("chromedriver");
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            client: None,
            driver,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--window-size=1280,1400"],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }

    /// Saves a screenshot of the page as `target/browser-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Text of the first element matching `css`.
    async fn text(&self, css: &str) -> String {
        let e = self.c().find(Locator::Css(css)).await;
        e.unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// The page's visible text.
    async fn body_text(&self) -> String {
        self.c()
            .execute("return document.body.innerText", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Fails if an alert dialog is open (a script ran).
    async fn assert_no_alert(&self) {
        if let Ok(text) = self.c().get_alert_text().await {
            panic!("an alert dialog opened: {text:?}");
        }
    }

    /// Fill attribute of the graph's box of the task node `node`.
    async fn node_fill(&self, node: u32) -> Option<String> {
        let css = format!("#graph g[data-node=\"{node}\"] rect");
        let rect = self.c().find(Locator::Css(&css)).await.ok()?;
        rect.attr("fill").await.ok().flatten()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("browser-screenshots")
}

/// A served history: the store, the server's address, its temporary home.
struct Served {
    store: Store,
    addr: SocketAddr,
    home: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    async fn start(name: &str, config: ServerConfig) -> Served {
        let home = std::env::temp_dir().join(format!("weft-browser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let url = format!("sqlite://{}/weft.db", home.display());
        let store = Store::connect(&url).await.unwrap();
        let server = Server::bind(store.clone(), config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = rx.await;
        }));
        Served {
            store,
            addr,
            home,
            stop: Some(tx),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn config(&self) -> RunConfig {
        RunConfig::new().history(self.store.clone())
    }

    async fn deployment(&self, name: &str, flow: &str, parameters: serde_json::Value) {
        self.store
            .register_deployment(&DeploymentRecord {
                name: name.into(),
                flow: flow.into(),
                schedule: Some("every 1h".into()),
                parameters,
                paused: false,
                last_run: None,
                last_run_at: None,
                next_run_at: Some(chrono::Utc::now() + chrono::Duration::minutes(30)),
                updated: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// One browser at a time: two Chromiums on a 2-core machine make each other's waits flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_history_the_test_recorded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start("pages", ServerConfig::new()).await;
    for x in 0..3 {
        assert!(ok_flow::run_with(s.config(), x).await.is_successful());
    }
    let failed = mixed::run_with(s.config(), 5).await;
    assert_eq!(failed.state.kind, StateKind::Failed);
    let map_run = mapped::run_with(s.config(), 12).await;
    let pipe = Pipeline::from_toml(HOSTILE_PIPELINE, "hostile_pipe.toml").unwrap();
    let values = resolve(&pipe.params, &[], None).unwrap();
    assert!(pipe.run_with(s.config(), &values).await.is_successful());
    s.deployment("nightly", "browser ok", json!({ "x": 1 }))
        .await;
    let pool = "gpu \"><img src=x onerror=alert(1)>";
    let spec = WorkPoolSpec::new(pool)
        .limit(2)
        .description("<script>alert(1)</script>");
    s.store.create_work_pool(&spec).await.unwrap();
    let flows = vec!["javascript:alert(1)@1".to_owned()];
    let worker = WorkerInfo::this_process(pool, "<b>w1</b>", flows);
    s.store.register_worker(&worker).await.unwrap();

    let b = Browser::start().await;
    b.c().goto(&s.url("/")).await.unwrap();
    // 3 ok + 1 mixed (Failed) + 1 mapped (Failed: one element refused) + 1 pipeline.
    assert_eq!(b.text("[data-count=\"flow:total\"]").await, "6");
    assert_eq!(b.text("[data-count=\"flow:Completed\"]").await, "4");
    assert_eq!(b.text("[data-count=\"flow:Failed\"]").await, "2");
    assert!(
        b.body_text().await.contains("the disk is full"),
        "latest failures"
    );
    assert!(!b
        .c()
        .find_all(Locator::Css("svg.chart rect.bar"))
        .await
        .unwrap()
        .is_empty());
    b.screenshot("dashboard").await;

    b.c()
        .goto(&s.url(&format!("/runs/{}", failed.id)))
        .await
        .unwrap();
    let g = failed.graph;
    let (ok_node, boom_node) = (g.node("double").unwrap().id, g.node("boom").unwrap().id);
    assert_eq!(b.node_fill(ok_node).await.as_deref(), Some(GREEN));
    assert_eq!(b.node_fill(boom_node).await.as_deref(), Some(RED));
    assert!(b.text("#run-state").await.contains("Failed"));
    assert!(b.body_text().await.contains("boom at 10: the disk is full"));
    assert!(!b
        .c()
        .find_all(Locator::Css("svg.gantt rect"))
        .await
        .unwrap()
        .is_empty());
    b.screenshot("run").await;

    // The mapped task is one row with its counts; its elements are a page of their own.
    b.c()
        .goto(&s.url(&format!("/runs/{}", map_run.id)))
        .await
        .unwrap();
    let rows = b.c().find_all(Locator::Css("#tasks tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "12 elements collapsed to one row");
    assert!(b.text("#tasks td.detail").await.contains("Completed 11"));
    b.c()
        .find(Locator::Css("a.elements"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("table.elements"))
        .await
        .unwrap();
    assert_eq!(
        b.c()
            .find_all(Locator::Css("table.elements tbody tr"))
            .await
            .unwrap()
            .len(),
        12
    );
    b.screenshot("elements").await;

    for (path, name, expect) in [
        ("/runs", "runs", "browser mixed"),
        ("/runs?state=failed", "runs-failed", "browser mapped"),
        ("/flows", "flows", "Versions"),
        ("/deployments", "deployments", "nightly"),
        ("/pipelines", "pipelines", "hostile_pipe"),
        ("/workers", "workers", "<script>alert(1)</script>"),
        ("/workers", "workers", "<b>w1</b>"),
        ("/workers", "workers", "gpu \"><img src=x onerror=alert(1)>"),
    ] {
        b.c().goto(&s.url(path)).await.unwrap();
        assert!(
            b.body_text().await.contains(expect),
            "{path} shows {expect}"
        );
        b.assert_no_alert().await;
        b.screenshot(name).await;
    }
    // A bad filter is a 400 page saying why, not a 500.
    b.c().goto(&s.url("/runs?state=sideways")).await.unwrap();
    assert!(b.body_text().await.contains("invalid state"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_updates_live_when_a_task_finishes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start("live", ServerConfig::new()).await;
    let id = uuid::Uuid::new_v4();
    let config = s.config().run_id(id);
    let run = tokio::spawn(live_flow::run_with(config));
    // Wait until the history shows the task running.
    let store = s.store.clone();
    wait_until("the task is recorded Running", || {
        let store = store.clone();
        async move {
            store
                .run_overview(id)
                .await
                .is_ok_and(|o| o.tasks.iter().any(|t| t.state == StateKind::Running))
        }
    })
    .await;

    let b = Browser::start().await;
    b.c().goto(&s.url(&format!("/runs/{id}"))).await.unwrap();
    let node = live_flow::graph().node("wait_for_release").unwrap().id;
    assert_eq!(
        b.node_fill(node).await.as_deref(),
        Some("#ffc107"),
        "Running: yellow"
    );
    b.screenshot("run-live-before").await;

    RELEASE.get_or_init(Default::default).notify_one();
    assert!(run.await.unwrap().is_successful());
    wait_until("the node turns green without a reload", || async {
        b.node_fill(node).await.as_deref() == Some(GREEN)
    })
    .await;
    wait_until("the run's state and the new log line appear", || async {
        let text = b.body_text().await;
        text.contains("released by the test") && b.text("#run-state").await.contains("Completed")
    })
    .await;
    assert!(b.text("#tasks td.st").await.contains("Completed"));
    b.screenshot("run-live-after").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicking_cancel_on_a_running_flow_turns_it_cancelled_live() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start("cancel", ServerConfig::new()).await;
    let id = uuid::Uuid::new_v4();
    let run = tokio::spawn(long_flow::run_with(s.config().run_id(id), 3600));
    let store = s.store.clone();
    wait_until("the task is recorded Running", || {
        let store = store.clone();
        async move {
            store
                .run_overview(id)
                .await
                .is_ok_and(|o| o.tasks.iter().any(|t| t.state == StateKind::Running))
        }
    })
    .await;

    let b = Browser::start().await;
    b.c().goto(&s.url(&format!("/runs/{id}"))).await.unwrap();
    assert!(b.text("#run-state").await.contains("Running"));
    b.screenshot("run-cancel-before").await;
    let button = b.c().find(Locator::Css("#cancel-run")).await.unwrap();
    button.click().await.unwrap();
    // Back on the run's page (still Running for a moment), which follows the run live.
    wait_until("the page says the cancellation was requested", || async {
        b.body_text().await.contains("Cancellation requested")
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await;
    let ended = ended.expect("the run ended").unwrap();
    assert_eq!(ended.state.kind, StateKind::Cancelled);
    wait_until(
        "the run's state and its task turn Cancelled without a reload",
        || async {
            b.text("#run-state").await.contains("Cancelled")
                && b.text("#tasks td.st").await.contains("Cancelled")
        },
    )
    .await;
    wait_until("the Cancel button goes", || async {
        b.c().find(Locator::Css("#cancel-run")).await.is_err()
    })
    .await;
    b.assert_no_alert().await;
    b.screenshot("run-cancel-after").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_form_checks_values_and_pause_works() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start("deploy", ServerConfig::new()).await;
    assert!(ok_flow::run_with(s.config(), 1).await.is_successful());
    s.deployment("hourly", "browser ok", json!({ "x": 1, "label": "a" }))
        .await;
    let names = vec!["hourly".to_owned()];

    let b = Browser::start().await;
    b.c().goto(&s.url("/deployments")).await.unwrap();
    b.c()
        .find(Locator::Css("a.button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("form.run"))
        .await
        .unwrap();
    let field = b.c().find(Locator::Id("p.x")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("five").await.unwrap();
    b.c()
        .find(Locator::Css("form.run button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css(".reason"))
        .await
        .unwrap();
    assert!(b
        .text(".field.invalid .reason")
        .await
        .contains("not a whole number"));
    assert!(b.text("#form-error").await.contains("Nothing was queued"));
    b.screenshot("run-form-refused").await;
    assert!(
        s.store.claim_requests(&names).await.unwrap().is_empty(),
        "nothing queued"
    );

    let field = b.c().find(Locator::Id("p.x")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("5").await.unwrap();
    b.c()
        .find(Locator::Css("form.run button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Id("requested"))
        .await
        .unwrap();
    b.screenshot("run-requested").await;
    let queued = s.store.claim_requests(&names).await.unwrap();
    assert_eq!(queued.len(), 1, "exactly one run request");
    assert_eq!(queued[0].parameters.get("x"), Some(&json!(5)));
    assert_eq!(queued[0].parameters.get("label"), Some(&json!("a")));

    b.c()
        .find(Locator::Css("td.actions button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until("the page shows the deployment paused", || async {
        b.body_text().await.contains("paused")
    })
    .await;
    assert!(s.store.deployment("hourly").await.unwrap().paused);
    b.screenshot("deployment-paused").await;
    b.c()
        .find(Locator::Css("td.actions button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until("resumed", || async {
        b.body_text().await.contains("active")
    })
    .await;
    assert!(!s.store.deployment("hourly").await.unwrap().paused);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_wrong_then_a_right_token() {
    let _one = ONE_AT_A_TIME.lock().await;
    let config = ServerConfig::new().token(Token::new(OPERATOR).unwrap());
    let s = Served::start("signin", config).await;
    assert!(ok_flow::run_with(s.config(), 1).await.is_successful());

    let b = Browser::start().await;
    b.c().goto(&s.url("/flows")).await.unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("form.signin"))
        .await
        .unwrap();
    assert!(b
        .c()
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/signin"));
    b.screenshot("signin").await;

    let token = b.c().find(Locator::Id("token")).await.unwrap();
    token.send_keys("not-the-token-0123456789").await.unwrap();
    b.c()
        .find(Locator::Css("form.signin button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Id("signin-error"))
        .await
        .unwrap();
    assert!(b.text("#signin-error").await.contains("Unknown token"));
    assert!(
        b.c().get_all_cookies().await.unwrap().is_empty(),
        "no cookie for a wrong token"
    );
    b.screenshot("signin-wrong").await;

    let token = b.c().find(Locator::Id("token")).await.unwrap();
    token.send_keys(OPERATOR).await.unwrap();
    b.c()
        .find(Locator::Css("form.signin button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("section.flow"))
        .await
        .unwrap();
    assert!(
        b.c()
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/flows"),
        "back where it was going"
    );
    let cookies = b.c().get_all_cookies().await.unwrap();
    assert_eq!(cookies.len(), 1);
    let c = &cookies[0];
    assert_eq!(c.name(), "weft_session");
    assert_ne!(
        c.value(),
        OPERATOR,
        "the cookie is a session id, not the token"
    );
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(format!("{:?}", c.same_site()), "Some(Strict)");

    b.c()
        .find(Locator::Css("form.signout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("form.signin"))
        .await
        .unwrap();
    b.c().goto(&s.url("/")).await.unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("form.signin"))
        .await
        .unwrap();
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_shown_as_text_and_never_runs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start("xss", ServerConfig::new()).await;
    let run = hostile_flow::run_with(s.config(), JS_URL.to_owned()).await;
    assert_eq!(run.state.kind, StateKind::Failed);
    let js = js_named::run_with(s.config(), 2).await;
    let pipe = Pipeline::from_toml(HOSTILE_PIPELINE, "hostile_pipe.toml").unwrap();
    let values = resolve(&pipe.params, &[], None).unwrap();
    let pipe_run = pipe.run_with(s.config(), &values).await;
    s.deployment(JS_URL, IMG, json!({ "v": SCRIPT })).await;

    let b = Browser::start().await;
    let pages = [
        ("/".to_owned(), "xss-dashboard", vec![IMG]),
        ("/runs".to_owned(), "xss-runs", vec![IMG, JS_URL]),
        (
            format!("/runs/{}", run.id),
            "xss-run",
            vec![SCRIPT, IMG, JS_URL],
        ),
        (
            format!("/runs/{}", pipe_run.id),
            "xss-pipeline-run",
            vec![SCRIPT, IMG],
        ),
        ("/flows".to_owned(), "xss-flows", vec![IMG, JS_URL]),
        (
            "/deployments".to_owned(),
            "xss-deployments",
            vec![JS_URL, IMG],
        ),
        ("/pipelines".to_owned(), "xss-pipelines", vec![SCRIPT]),
    ];
    for (path, shot, texts) in pages {
        b.c().goto(&s.url(&path)).await.unwrap();
        b.assert_no_alert().await;
        let text = b.body_text().await;
        for t in texts {
            assert!(text.contains(t), "{path} shows {t:?} as text");
        }
        let imgs = b.c().find_all(Locator::Css("img")).await.unwrap();
        assert!(imgs.is_empty(), "{path}: no <img> was injected");
        let scripts = b.c().find_all(Locator::Css("script")).await.unwrap();
        assert_eq!(scripts.len(), 1, "{path}: only the page's own script");
        assert_eq!(
            scripts[0].attr("src").await.unwrap().as_deref(),
            Some("/static/app.js")
        );
        // No link leads to a javascript: URL.
        for a in b.c().find_all(Locator::Css("a")).await.unwrap() {
            let href = a.prop("href").await.unwrap().unwrap_or_default();
            assert!(!href.starts_with("javascript:"), "{path}: link {href}");
        }
        b.screenshot(shot).await;
    }
    // The run page's hostile task name inside the graph is text in the SVG.
    b.c()
        .goto(&s.url(&format!("/runs/{}", run.id)))
        .await
        .unwrap();
    let label = b.text("#graph g.node text").await;
    assert_eq!(label, SCRIPT);
    // The deployment named `javascript:alert(1)`: its Run link stays on this server.
    b.c().goto(&s.url("/deployments")).await.unwrap();
    b.c()
        .find(Locator::Css("a.button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("form.run"))
        .await
        .unwrap();
    b.assert_no_alert().await;
    assert!(b.body_text().await.contains(&format!("Run {JS_URL}")));
    let _ = js;
    b.close().await;
}

const FORM_PIPELINE: &str = r#"
name = "browser_pipe"
description = "Greets someone."
[params.who]
type = "regex"
pattern = "[a-z]+"
required = true
description = "lower-case letters only"
[params.times]
type = "int"
min = 1
max = 3
default = 2
[params.loud]
type = "bool"
default = false
[params.tone]
type = "choice"
choices = ["calm", "warm"]
default = "warm"
[[nodes]]
id = "greet"
command = ["echo", "hi {who} x{times} loud={loud} {tone}"]
"#;

/// Clears the field `id` and types `text` into it, then submits the run form.
async fn submit_with(b: &Browser, id: &str, text: &str) {
    let field = b.c().find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
    b.c()
        .find(Locator::Css("form.run button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The runs of `browser_pipe` in the history.
async fn pipe_runs(s: &Served) -> Vec<weft::store::RunRecord> {
    let filter = weft::store::RunFilter::new().flow("browser_pipe");
    s.store.runs(&filter).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_run_form_checks_values_then_runs_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = Served::start("pipeline-run", ServerConfig::new()).await;
    let pipe = Pipeline::from_toml(FORM_PIPELINE, "browser_pipe.toml").unwrap();
    let given = [("who".to_owned(), json!("first"))];
    let values = pipe.values_for(&given, None).unwrap();
    assert!(pipe.run_with(s.config(), &values).await.is_successful());

    let b = Browser::start().await;
    b.c().goto(&s.url("/pipelines")).await.unwrap();
    b.screenshot("pipelines-with-run").await;
    let run = b.c().find(Locator::Css("h2 a.button.run")).await.unwrap();
    run.click().await.unwrap();
    b.c()
        .wait()
        .for_element(Locator::Css("form.run"))
        .await
        .unwrap();
    // Inputs by kind, defaults filled in.
    let times = b.c().find(Locator::Id("p.times")).await.unwrap();
    assert_eq!(times.attr("type").await.unwrap().as_deref(), Some("number"));
    assert_eq!(times.attr("max").await.unwrap().as_deref(), Some("3"));
    assert_eq!(times.prop("value").await.unwrap().as_deref(), Some("2"));
    let loud = b.c().find(Locator::Id("p.loud")).await.unwrap();
    assert_eq!(
        loud.attr("type").await.unwrap().as_deref(),
        Some("checkbox")
    );
    let tone = b.c().find(Locator::Id("p.tone")).await.unwrap();
    assert_eq!(tone.prop("value").await.unwrap().as_deref(), Some("warm"));
    let text = b.body_text().await;
    assert!(text.contains("lower-case letters only"), "{text}");
    assert!(text.contains("working directory"), "{text}");
    b.screenshot("pipeline-run-form").await;

    submit_with(&b, "p.who", "Not Lower").await;
    b.c()
        .wait()
        .for_element(Locator::Css(".field.invalid .reason"))
        .await
        .unwrap();
    let reason = b.text("[data-param=\"who\"] .reason").await;
    assert!(
        reason.contains("does not match the pattern [a-z]+"),
        "{reason}"
    );
    assert!(b.text("#form-error").await.contains("Nothing was queued"));
    b.screenshot("pipeline-run-refused").await;
    assert_eq!(pipe_runs(&s).await.len(), 1, "no run was created");

    submit_with(&b, "p.who", "tester").await;
    b.c()
        .wait()
        .for_element(Locator::Css("#run"))
        .await
        .unwrap();
    let url = b.c().current_url().await.unwrap();
    assert!(url.path().starts_with("/runs/"), "{url}");
    wait_until("the run ends", || async {
        pipe_runs(&s)
            .await
            .iter()
            .filter(|r| r.state.is_final())
            .count()
            == 2
    })
    .await;
    b.c().refresh().await.unwrap();
    wait_until("the node's output shows", || async {
        b.body_text().await.contains("hi tester x2 loud=false warm")
    })
    .await;
    assert!(b.text("#run-state").await.contains("Completed"));
    b.screenshot("pipeline-run-output").await;
    b.close().await;
}
