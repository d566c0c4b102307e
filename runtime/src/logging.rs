//! The default console subscriber: one line per event in Prefect's phrasing,
//! `21:07:53.123 | INFO    | Task 'extract': Starting task run...`, on stderr.
//!
//! A flow run installs it on first use unless a global `tracing` subscriber is already set, so
//! users who install their own keep it. The level comes from `WEFT_LOG` (then `RUST_LOG`),
//! default `info`; `WEFT_LOG=off` silences weft.

use std::fmt;
use std::sync::Once;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct WeftFormat;

impl<S, N> FormatEvent<S, N> for WeftFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Local::now();
        write!(
            writer,
            "{} | {:<7} | ",
            now.format("%H:%M:%S%.3f"),
            event.metadata().level()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the console subscriber as the global default. Returns false when another global
/// subscriber was already set (which then stays).
///
/// ```
/// weft::logging::init();
/// ```
pub fn init() -> bool {
    let filter = std::env::var("WEFT_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(WeftFormat)
        .try_init()
        .is_ok()
}

/// Installs the console subscriber once, unless the program set its own.
pub(crate) fn ensure_default() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !tracing::dispatcher::has_been_set() {
            init();
        }
    });
}
