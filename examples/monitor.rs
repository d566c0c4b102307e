//! The service monitor: a status check served on a schedule. A task checks a status page and ends
//! Failed with "Server not available. Status code: 503" when the answer is not 200; the flow is
//! served every 30 seconds (`playstation_monitor.serve(name="playstation-monitor", interval=30)`).
//!
//! The machine has no internet, so the example starts its own status page on 127.0.0.1 whose
//! answer alternates between 200 and 503.
//!
//! ```text
//! cargo run --example monitor                      # every 30s until Ctrl-C
//! cargo run --example monitor -- --every 2s --runs 4
//! cargo run -p weft-cli -- runs --flow playstation_monitor
//! cargo run -p weft-cli -- deployments
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use weft::prelude::*;
use weft::schedule::{Deployment, Schedule, Server};
use weft::store::{RunFilter, Store};

#[task(retries = 0, timeout = "10s")]
fn check_playstation_server_status(url: String) -> Result<(), Signal> {
    let response = ureq::get(&url).timeout(Duration::from_secs(5)).call();
    let status = match response {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => return Err(Signal::fail(format!("Error in the task: {e}"))),
    };
    if status == 200 {
        println!("PlayStation server is up (status code {status})");
        Ok(())
    } else {
        println!("PlayStation server returned status code {status}");
        Err(Signal::fail(format!(
            "Server not available. Status code: {status}"
        )))
    }
}

#[flow]
async fn playstation_monitor(url: String) {
    check_playstation_server_status(url)?;
}

/// A status page on loopback: 200, 503, 200, 503, ...
fn status_page() -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a loopback port");
    let addr = server.server_addr().to_ip().expect("an IP address");
    std::thread::spawn(move || {
        let hits = AtomicU32::new(0);
        for request in server.incoming_requests() {
            let code = if hits.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
                200
            } else {
                503
            };
            let _ =
                request.respond(tiny_http::Response::from_string("status").with_status_code(code));
        }
    });
    format!("http://{addr}/es-mx/")
}

/// `--every 2s --runs 4`: the interval, and how many runs before stopping (default: until
/// Ctrl-C).
fn args() -> Result<(String, Option<usize>), String> {
    let (mut every, mut runs) = ("30s".to_owned(), None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--every" => every = value()?,
            "--runs" => {
                let v = value()?;
                runs = Some(
                    v.parse()
                        .map_err(|_| format!("--runs {v}: expected a number"))?,
                );
            }
            _ => return Err(format!("unknown argument {a}; use --every 2s --runs 4")),
        }
    }
    Ok((every, runs))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (every, runs) = args()?;
    let url = status_page();
    let store = Store::open_default().await?;
    let monitor = Deployment::new("playstation-monitor", playstation_monitor::flow(), (url,))
        .schedule(Schedule::interval(&every)?);
    let server = Server::new([monitor]).store(store.clone());
    match runs {
        None => server.run().await?, // until Ctrl-C or SIGTERM
        Some(n) => {
            let started = chrono::Utc::now();
            let done = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let ended = store
                        .runs(&RunFilter::new().flow("playstation_monitor").limit(1000))
                        .await
                        .map(|r| {
                            r.iter()
                                .filter(|r| r.started >= started && r.ended.is_some())
                                .count()
                        })
                        .unwrap_or(0);
                    if ended >= n {
                        return;
                    }
                }
            };
            server.run_until(done).await?;
        }
    }
    weft::logging::flush();
    println!();
    for r in store
        .runs(
            &RunFilter::new()
                .flow("playstation_monitor")
                .limit(runs.unwrap_or(10) as u32),
        )
        .await?
    {
        println!(
            "{}  {:<9}  {}",
            r.started.format("%H:%M:%S"),
            r.state.to_string(),
            r.message.unwrap_or_default()
        );
    }
    println!(
        "\nhistory: {}  (cargo run -p weft-cli -- runs --flow playstation_monitor)",
        store.url()
    );
    Ok(())
}
