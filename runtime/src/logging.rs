//! The default console subscriber: one line per event in Prefect's phrasing,
//! `21:07:53.123 | INFO    | Task 'extract': Starting task run...`, on stderr.
//!
//! A flow run installs it on first use unless a global `tracing` subscriber is already set, so
//! users who install their own keep it. The level comes from `WEFT_LOG` (then `RUST_LOG`) as
//! `target=level` directives (`warn`, `info,my_crate=debug`),
//! default `info`; `WEFT_LOG=off` silences weft.
//!
//! The log lines of a flow run (weft's and its task bodies') also go to the run history at
//! INFO and above, whatever the console shows; `WEFT_HISTORY_LOG` (same syntax) changes that.
//!
//! On a terminal every line is written at once, so it interleaves in order with what task
//! bodies print. Elsewhere (a pipe, a file, CI) weft's own INFO lines, the hot path at two per
//! task run, are not written one system call each: they collect in a buffer that a background
//! thread writes every few milliseconds and that every flow run (and task run outside a flow)
//! flushes when it ends. Warnings, errors and every event that is not weft's are written at
//! once, after whatever is buffered, so the order of the log lines is the order of the events.

use chrono::{FixedOffset, Timelike, Utc};
use std::fmt;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Buffered weft lines waiting for the console.
struct Console {
    pending: Mutex<Vec<u8>>,
    /// Held while writing to stderr, so flushes never interleave; holds the status line shown
    /// under the log on a terminal, if any.
    out: Mutex<Option<String>>,
}

/// How often the background thread writes buffered lines.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

static CONSOLE: OnceLock<Console> = OnceLock::new();

fn console() -> &'static Console {
    CONSOLE.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("weft-console".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
        Console {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            out: Mutex::new(None),
        }
    })
}

/// Writes the buffered console lines now, instead of within the next few milliseconds. Flow runs
/// (and task runs outside a flow) call it when they end; call it yourself before printing to
/// stderr, or before exiting, after logging with `target: "weft"`.
///
/// ```
/// assert!(weft::logging::init(), "no other subscriber was set");
/// tracing::info!(target: "weft", "Flow run 'etl': 3 rows loaded"); // buffered
/// weft::logging::flush(); // on stderr now
/// assert!(!weft::logging::init(), "the first subscriber stays");
/// ```
pub fn flush() {
    if let Some(console) = CONSOLE.get() {
        console.write_through(&[]);
    }
}

impl Console {
    /// Writes what is buffered, then `line`. Lock order: `out`, then `pending`.
    fn write_through(&self, line: &[u8]) {
        let status = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() && line.is_empty() {
            return;
        }
        let mut err = std::io::stderr().lock();
        // The status line is erased, the log lines written, and the status drawn again under
        // them.
        if status.is_some() {
            let _ = err.write_all(b"\r\x1b[2K");
        }
        let _ = err.write_all(&pending);
        let _ = err.write_all(line);
        if let Some(s) = status.as_deref() {
            let _ = err.write_all(s.as_bytes());
        }
        let _ = err.flush();
    }
}

/// Shows `line` as a status line under the log on a terminal (a progress bar), or removes it
/// with `None`. Log lines written meanwhile appear above it. Does nothing when stderr is not a
/// terminal.
///
/// ```
/// weft::logging::status(Some("[====>     ] 2/5 nodes".to_owned()));
/// weft::logging::status(None);
/// ```
pub fn status(line: Option<String>) {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return;
    }
    let console = console();
    let mut status = console.out.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\r\x1b[2K");
    if let Some(s) = &line {
        let _ = err.write_all(s.as_bytes());
    }
    let _ = err.flush();
    *status = line;
}

struct ConsoleWriter {
    /// Buffer weft's INFO lines (stderr is not a terminal).
    buffer: bool,
}

/// One event's bytes: appended to the buffer, or written through after a flush.
enum Line<'a> {
    Buffered(MutexGuard<'a, Vec<u8>>),
    Direct(Vec<u8>),
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Line::Buffered(b) => b.extend_from_slice(buf),
            Line::Direct(v) => v.extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if let Line::Direct(v) = self {
            console().write_through(v);
        }
    }
}

impl<'a> MakeWriter<'a> for ConsoleWriter {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line::Direct(Vec::new())
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        // tracing orders levels by verbosity: INFO, DEBUG and TRACE are `>= INFO`.
        if self.buffer && meta.target().starts_with("weft") && *meta.level() >= Level::INFO {
            Line::Buffered(console().pending.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            Line::Direct(Vec::with_capacity(128))
        }
    }
}

struct WeftFormat {
    offset: FixedOffset,
}

/// Writes the message as is (no escaping pass) and other fields as ` key=value`.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.result = self.result.and_then(|_| self.writer.write_str(value));
        } else {
            self.result = self
                .result
                .and_then(|_| write!(self.writer, " {}={value:?}", field.name()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.result = self.result.and_then(|_| {
            if field.name() == "message" {
                write!(self.writer, "{value:?}")
            } else {
                write!(self.writer, " {}={value:?}", field.name())
            }
        });
    }
}

impl<S, N> FormatEvent<S, N> for WeftFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = Utc::now().with_timezone(&self.offset);
        write!(
            writer,
            "{:02}:{:02}:{:02}.{:03} | {:<7} | ",
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond() / 1_000_000 % 1000,
            event.metadata().level()
        )?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
    }
}

/// Installs the console subscriber as the global default. Returns false when another global
/// subscriber was already set (which then stays).
///
/// ```
/// weft::logging::init();
/// tracing::info!(target: "weft", "buffered until the next flush");
/// weft::logging::flush();
/// ```
pub fn init() -> bool {
    let filter = std::env::var("WEFT_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|s| s.parse::<Targets>().ok())
        // The history store's driver reports reconnects itself; weft says what matters.
        .unwrap_or_else(|| targets("info,sqlx=warn"));
    // The local offset is looked up once: asking for it on every line costs a time zone lookup.
    let offset = *chrono::Local::now().offset();
    let console = tracing_subscriber::fmt::layer()
        .with_writer(ConsoleWriter {
            buffer: !std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
        .event_format(WeftFormat { offset });
    // The history keeps a run's INFO lines even when the console shows less.
    let history = std::env::var("WEFT_HISTORY_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| targets("info,sqlx=off"));
    tracing_subscriber::registry()
        .with(console.with_filter(filter))
        .with(HistoryLayer.with_filter(WhileRecording(history)))
        .try_init()
        .is_ok()
}

/// `target=level` directives (tracing-subscriber's `Targets`: what `RUST_LOG` usually holds,
/// without `EnvFilter`'s span and field filters, whose regex engine costs every build seconds).
fn targets(directives: &str) -> Targets {
    directives.parse().expect("weft's default directives parse")
}

/// The history layer's filter: its own level, and only while some run is being recorded, so
/// `WEFT_LOG=off` without history costs as little as before.
struct WhileRecording(Targets);

impl<S: Subscriber> Filter<S> for WhileRecording {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        crate::store::record::recording() && Filter::<S>::enabled(&self.0, meta, cx)
    }
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Filter::<S>::callsite_enabled(&self.0, meta).is_never() {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }
}

/// A `tracing` layer that records the log lines of a flow run (its engine lines and whatever
/// its task bodies log) into the run history. The console subscriber weft installs has it;
/// add it to your own subscriber to keep run logs in the history:
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer())
///     .with(weft::logging::history_layer())
///     .init();
/// ```
pub fn history_layer<S: Subscriber>() -> impl Layer<S> {
    HistoryLayer
}

struct HistoryLayer;

/// The target of a task run's "Starting task run..." and "Finished task run..." lines: the
/// history keeps them in the task run's row (its `started` and `ended`), not as log rows.
pub(crate) const LIFECYCLE: &str = "weft::lifecycle";

/// `Task 'name': Starting task run...`
pub(crate) struct Starting<'a>(pub &'a str);

impl fmt::Display for Starting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task '{}': Starting task run...", self.0)
    }
}

/// `Task 'name': Finished task run for task with final state: 'Failed' (why)`: the message
/// is shown for a state that is not successful.
pub(crate) struct Finished<'a> {
    pub task: &'a str,
    pub kind: crate::state::StateKind,
    pub message: Option<&'a str>,
}

impl Finished<'_> {
    /// Its level: ERROR for a failure, else INFO.
    pub(crate) fn level(&self) -> Level {
        if self.kind.is_failed() {
            Level::ERROR
        } else {
            Level::INFO
        }
    }
}

impl fmt::Display for Finished<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (task, kind) = (self.task, self.kind);
        write!(
            f,
            "Task '{task}': Finished task run for task with final state: '{kind}'"
        )?;
        match self.message {
            Some(m) if !kind.is_successful() => write!(f, " ({m})"),
            _ => Ok(()),
        }
    }
}

impl<S: Subscriber> Layer<S> for HistoryLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // The store's own complaints are about recording, not about the run.
        if event.metadata().target().starts_with("weft::store") {
            return;
        }
        let Some(recorder) = crate::store::record::current() else {
            return;
        };
        if event.metadata().target() == LIFECYCLE {
            crate::store::record::take_line();
            return;
        }
        let mut line = String::new();
        event.record(&mut Plain(&mut line));
        recorder.log(event.metadata().level().as_str(), line);
    }
}

/// The message, then other fields as ` key=value`.
struct Plain<'a>(&'a mut String);

impl Visit for Plain<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
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
