//! Prefect's ETL tutorial flow: extract consumer complaints from an HTTP API, parse them, load them into
//! a real SQLite file, with the table created concurrently and loading waiting for it.
//!
//! ```text
//! cargo run --example etl
//! ```
//!
//! The machine has no internet, so the example serves the API's JSON shape from
//! `examples/data/complaints.json` on 127.0.0.1 (a real HTTP server, a real HTTP client).
//! `get_complaint_data` has `cache_for = "1d"`: the second run in this program (and any later
//! `cargo run`) shows it `Cached`. Results live in `target/etl-results`, the database in
//! `target/cfpbcomplaints.db`.

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use std::sync::Arc;
use weft::prelude::*;
use weft::results::LocalStore;

/// The tutorial's state handler.
fn alert_failed(change: &StateChange) -> Option<State> {
    if change.new.is_failed() {
        println!("Failed!");
    }
    None
}

#[derive(Debug, Deserialize)]
struct Api {
    hits: Hits,
}

#[derive(Debug, Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hit {
    #[serde(rename = "_source")]
    source: Source,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Source {
    date_received: Option<String>,
    state: Option<String>,
    product: Option<String>,
    company: Option<String>,
    complaint_what_happened: Option<String>,
}

/// One row of the `complaint` table.
#[derive(Debug, Clone)]
struct Complaint {
    date_received: String,
    state: String,
    product: String,
    company: String,
    complaint_what_happened: String,
}

/// Setup: the table, created while the data is being fetched.
#[task]
async fn create_table(db: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS complaint (timestamp TEXT, state TEXT, product TEXT, \
         company TEXT, complaint_what_happened TEXT)",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Extract: a sync task (a blocking HTTP client), cached for a day like the tutorial's.
#[task(cache_for = "1d", retries = 2, retry_delay = "200ms", state_handlers = [alert_failed])]
fn get_complaint_data(url: String, size: u32) -> Result<Vec<Hit>, String> {
    let response = ureq::get(&url)
        .query("size", &size.to_string())
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let api: Api = response
        .into_json()
        .map_err(|e| format!("bad JSON from {url}: {e}"))?;
    Ok(api.hits.hits)
}

/// Transform.
#[task(state_handlers = [alert_failed])]
fn parse_complaint_data(raw: Vec<Hit>) -> Vec<Complaint> {
    let text = |v: Option<String>| v.unwrap_or_default();
    raw.into_iter()
        .map(|h| Complaint {
            date_received: text(h.source.date_received),
            state: text(h.source.state),
            product: text(h.source.product),
            company: text(h.source.company),
            complaint_what_happened: text(h.source.complaint_what_happened),
        })
        .collect()
}

/// Load, in one transaction.
#[task(state_handlers = [alert_failed])]
async fn store_complaints(parsed: Vec<Complaint>, db: &SqlitePool) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin().await?;
    for c in &parsed {
        sqlx::query("INSERT INTO complaint VALUES (?, ?, ?, ?, ?)")
            .bind(&c.date_received)
            .bind(&c.state)
            .bind(&c.product)
            .bind(&c.company)
            .bind(&c.complaint_what_happened)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(parsed.len())
}

#[flow(name = "my etl Flow", state_handlers = [alert_failed])]
async fn etl(url: String, size: u32, db: Arc<SqlitePool>) -> usize {
    let db_table = create_table(&db);
    let raw = get_complaint_data(url, size)?;
    let parsed = parse_complaint_data(raw)?;
    #[wait_for(db_table)]
    let populated = store_complaints(parsed, &db)?;
    populated
}

/// The complaint API, served from the fixture on an ephemeral loopback port.
fn serve_fixture() -> String {
    let fixture: serde_json::Value = serde_json::from_str(include_str!("data/complaints.json"))
        .expect("the shipped fixture is JSON");
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a loopback port");
    let addr = server.server_addr().to_ip().expect("an IP address");
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let size = request
                .url()
                .split_once("size=")
                .and_then(|(_, n)| n.split('&').next()?.parse::<usize>().ok())
                .unwrap_or(10);
            let mut body = fixture.clone();
            if let Some(hits) = body["hits"]["hits"].as_array_mut() {
                hits.truncate(size);
            }
            let header = "Content-Type: application/json"
                .parse::<tiny_http::Header>()
                .unwrap();
            let response = tiny_http::Response::from_string(body.to_string()).with_header(header);
            let _ = request.respond(response);
        }
    });
    format!("http://{addr}/data-research/consumer-complaints/search/api/v1/")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = serve_fixture();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target)?;
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        target.join("cfpbcomplaints.db").display()
    );
    let db = Arc::new(SqlitePool::connect(&db_url).await?);
    let store = Arc::new(LocalStore::new(target.join("etl-results")));

    for attempt in 1..=2 {
        println!("--- run {attempt}");
        let config = RunConfig::new().result_store(store.clone());
        let run = etl::run_with(config, url.clone(), 10, db.clone()).await;
        for r in &run.task_runs {
            println!("  {:<22} {}", r.task, r.state);
        }
        println!("flow state: {}", run.state);
        if attempt == 2 {
            let extract = run
                .task("get_complaint_data")
                .expect("the extract task ran");
            assert_eq!(
                extract.state.kind,
                StateKind::Cached,
                "the second run reuses the extract"
            );
        }
        let loaded = run.result?;
        println!("loaded {loaded} complaints");
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM complaint")
        .fetch_one(&*db)
        .await?;
    println!("the complaint table holds {rows} rows");
    println!("{}", etl::graph().to_dot());
    Ok(())
}
