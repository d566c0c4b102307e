//! Running one pipeline node's command safely, and killing it completely.
//!
//! A node's command is either an argv (executed directly, no shell: its elements reach the
//! program byte for byte and are never interpreted) or a script run by `sh -c`. [`run`] starts it
//! in a **new process group**, so that the node and everything it starts (pipelines, background
//! jobs, grandchildren) can be signalled as one:
//!
//! * on timeout or cancellation the whole group gets `SIGTERM`, then, after
//!   [`ShellSpec::kill_grace`], `SIGKILL` (a process that ignores `SIGTERM` still dies); the
//!   child is always reaped;
//! * when the main process exits normally, its stdout and stderr readers get [`PIPE_LINGER`]
//!   (100 ms) to reach end of file; then whatever is left of the group (say a `sleep 1000 &`
//!   that still holds the pipes open) is killed with `SIGKILL` and reading stops. A node never
//!   leaves processes behind, and never hangs waiting for an end of file that a leftover
//!   background process would withhold.
//!
//! Output is read concurrently from both pipes (a child never blocks on a full pipe), kept as raw
//! bytes up to [`ShellSpec::output_cap`] per stream and counted beyond it. Non-UTF-8 output is
//! never an error: [`ShellOutcome::stdout_lossy`] shows it with replacement characters.
//!
//! Limits: a process that leaves the group on purpose (`setsid`, `setpgid`) escapes the group
//! kill; on non-Unix systems [`run`] only reports that it is unsupported.

use std::borrow::Cow;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Default [`ShellSpec::kill_grace`]: time between `SIGTERM` and `SIGKILL`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// Default [`ShellSpec::output_cap`]: bytes kept per stream (1 MiB).
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;

/// How long the output readers get to reach end of file once the main process has exited (or
/// has been killed) before the rest of its process group is killed and reading stops.
pub const PIPE_LINGER: Duration = Duration::from_millis(100);

/// What to run: an argv (no shell involved) or a script run by `sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand {
    /// A program and its arguments, executed directly (`PATH` is searched for the program when
    /// it has no `/`). No element is ever interpreted by a shell.
    Argv(Vec<String>),
    /// A script, run as `sh -c <script>`.
    Script(String),
}

impl ShellCommand {
    /// A display form of the command: argv elements shell-quoted where needed (for humans, and
    /// pasteable into a shell), a script as is.
    pub fn display_line(&self) -> String {
        match self {
            ShellCommand::Argv(argv) => argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            ShellCommand::Script(script) => script.clone(),
        }
    }
}

/// Quotes `s` for a POSIX shell when it holds anything but plainly safe characters.
fn shell_quote(s: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !s.is_empty() && s.bytes().all(safe) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// Everything [`run`] needs to run one node's command.
#[derive(Debug, Clone)]
pub struct ShellSpec {
    /// What to run.
    pub command: ShellCommand,
    /// Variables added to (or overriding) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Working directory; the current one when `None`. It must exist.
    pub workdir: Option<PathBuf>,
    /// Time allowed to the command; then its process group is killed and the outcome is
    /// [`timed_out`](ShellOutcome::timed_out).
    pub timeout: Duration,
    /// Time between `SIGTERM` to the process group and `SIGKILL` to it ([`DEFAULT_KILL_GRACE`]
    /// via [`ShellSpec::new`]).
    pub kill_grace: Duration,
    /// Bytes kept per stream ([`DEFAULT_OUTPUT_CAP`] via [`ShellSpec::new`]); the rest is
    /// counted, not kept.
    pub output_cap: usize,
}

impl ShellSpec {
    /// A spec with no extra environment, the current directory, a [`DEFAULT_KILL_GRACE`] grace
    /// and a [`DEFAULT_OUTPUT_CAP`] cap.
    pub fn new(command: ShellCommand, timeout: Duration) -> ShellSpec {
        ShellSpec {
            command,
            env: Vec::new(),
            workdir: None,
            timeout,
            kill_grace: DEFAULT_KILL_GRACE,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }
}

/// How a command ended, with its (capped) output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutcome {
    /// The exit code; `None` when the process was killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
    /// Standard output, raw bytes (may be non-UTF-8), at most [`ShellSpec::output_cap`] bytes.
    pub stdout: Vec<u8>,
    /// Standard error, raw bytes (may be non-UTF-8), at most [`ShellSpec::output_cap`] bytes.
    pub stderr: Vec<u8>,
    /// Bytes written to standard output, including those beyond the cap.
    pub stdout_total: u64,
    /// Bytes written to standard error, including those beyond the cap.
    pub stderr_total: u64,
    /// The command ran out of time and was killed.
    pub timed_out: bool,
    /// The command was cancelled (the `cancel` future of [`run`] completed first) and killed.
    pub cancelled: bool,
    /// When the process was started.
    pub started: DateTime<Utc>,
    /// When the process had ended and was reaped.
    pub ended: DateTime<Utc>,
    /// A display form of what ran (see [`ShellCommand::display_line`]).
    pub command_line: String,
}

impl ShellOutcome {
    /// Exit code 0, neither timed out nor cancelled.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// Standard output as text, invalid UTF-8 replaced by `U+FFFD`.
    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Standard error as text, invalid UTF-8 replaced by `U+FFFD`.
    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// Some output was dropped because of the cap.
    pub fn truncated(&self) -> bool {
        self.stdout_total > self.stdout.len() as u64 || self.stderr_total > self.stderr.len() as u64
    }
}

/// Runs `spec`'s command to completion, timeout or cancellation.
///
/// The command runs in a new process group, with stdin from `/dev/null` and stdout and stderr
/// piped and read concurrently (reading goes on past the cap, dropping bytes, so the command never
/// blocks on a full pipe). On timeout, or when `cancel` completes first, the whole group gets
/// `SIGTERM`; once the group is gone, or [`ShellSpec::kill_grace`] has passed, it gets `SIGKILL`.
/// After a normal exit, the readers get [`PIPE_LINGER`] to reach end of file, then any process
/// left in the group is killed with `SIGKILL` and reading stops. The child is always reaped; if
/// the returned future is dropped early, the group is killed with `SIGKILL`.
///
/// Errors (`Err(message)`) are failures to start: an empty argv, a program not found or not
/// executable, a missing working directory. Everything after the start is an [`ShellOutcome`].
#[cfg(unix)]
pub async fn run(
    spec: &ShellSpec,
    cancel: impl Future<Output = ()>,
) -> Result<ShellOutcome, String> {
    unix::run(spec, cancel).await
}

/// Runs `spec`'s command: unsupported on this system (process groups need Unix); always an
/// `Err`.
#[cfg(not(unix))]
pub async fn run(
    spec: &ShellSpec,
    cancel: impl Future<Output = ()>,
) -> Result<ShellOutcome, String> {
    drop(cancel);
    Err(format!(
        "cannot run `{}`: shell commands are only supported on Unix",
        spec.command.display_line()
    ))
}

/// Sends `SIGKILL` at once to the process group of every command [`run`] has started in this
/// process and not yet reaped (a second Ctrl-C: no grace). Returns how many groups it signalled.
pub fn kill_all_now() -> usize {
    #[cfg(unix)]
    {
        unix::kill_all_now()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Output of one stream: the first `cap` bytes, and the count of all of them.
struct Capture {
    kept: Vec<u8>,
    total: u64,
    cap: usize,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            kept: Vec::new(),
            total: 0,
            cap,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }
}

#[cfg(unix)]
mod unix {
    use std::future::Future;
    use std::io;
    use std::os::unix::process::ExitStatusExt;
    use std::pin::{pin, Pin};
    use std::process::{ExitStatus, Stdio};
    use std::time::Duration;

    use chrono::Utc;
    use tokio::io::{AsyncRead, AsyncReadExt};
    use tokio::process::Command;
    use tokio::time::{sleep, timeout, Instant};

    use super::{Capture, ShellCommand, ShellOutcome, ShellSpec, PIPE_LINGER};

    /// How often the group is checked while it is given its grace after `SIGTERM`.
    const GRACE_POLL: Duration = Duration::from_millis(20);

    /// The process groups of commands started and not yet reaped: while its leader is unreaped
    /// a group id cannot be reused, so signalling one of these never hits another program.
    static LIVE_GROUPS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

    fn live_groups() -> std::sync::MutexGuard<'static, Vec<libc::pid_t>> {
        LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn kill_all_now() -> usize {
        let groups = live_groups();
        for &pgid in groups.iter() {
            signal_group(pgid, libc::SIGKILL);
        }
        groups.len()
    }

    /// Registers a live group; unregisters it when dropped (after the reap, or with the run).
    struct Registered(libc::pid_t);

    impl Registered {
        fn new(pgid: libc::pid_t) -> Registered {
            live_groups().push(pgid);
            Registered(pgid)
        }
    }

    impl Drop for Registered {
        fn drop(&mut self) {
            let mut groups = live_groups();
            if let Some(i) = groups.iter().position(|g| *g == self.0) {
                groups.swap_remove(i);
            }
        }
    }

    /// Kills the process group with `SIGKILL` when dropped while armed: a dropped [`run`] future
    /// leaves nothing behind. Declared after the child, so it is dropped (and signals) before
    /// the child is, while the unreaped child keeps the group id taken.
    struct GroupGuard {
        pgid: libc::pid_t,
        armed: bool,
    }

    impl Drop for GroupGuard {
        fn drop(&mut self) {
            if self.armed {
                signal_group(self.pgid, libc::SIGKILL);
            }
        }
    }

    /// Sends `signal` to every process of group `pgid`; a group already gone is fine.
    fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
        // SAFETY: killpg has no memory-safety preconditions; errors (ESRCH) are ignored.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }

    /// Some live process is still in group `pgid`. On Linux, zombies (dead, waiting for a parent
    /// to reap them: in containers whose PID 1 does not reap, forever) do not count.
    fn group_alive(pgid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks for existence and permission.
        let r = unsafe { libc::killpg(pgid, 0) };
        if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return false;
        }
        #[cfg(target_os = "linux")]
        if let Some(live) = live_member_in_proc(pgid) {
            return live;
        }
        true
    }

    /// Whether `/proc` lists a process of group `pgid` that is not a zombie; `None` when `/proc`
    /// cannot be read.
    #[cfg(target_os = "linux")]
    fn live_member_in_proc(pgid: libc::pid_t) -> Option<bool> {
        let entries = std::fs::read_dir("/proc").ok()?;
        let live = entries.flatten().any(|entry| {
            let name = entry.file_name();
            if !name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            {
                return false;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold anything, so split at the last ')'.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<libc::pid_t>().ok());
            pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
        });
        Some(live)
    }

    enum End {
        Exited(io::Result<ExitStatus>),
        TimedOut,
        Cancelled,
    }

    async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, into: &mut Capture) {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => into.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Awaits `f` while also driving `readers` (until they finish), so output keeps flowing.
    async fn reading<R: Future<Output = ()>, F: Future>(
        readers: &mut Pin<&mut R>,
        readers_done: &mut bool,
        f: F,
    ) -> F::Output {
        let mut f = pin!(f);
        loop {
            tokio::select! {
                biased;
                v = &mut f => return v,
                () = readers.as_mut(), if !*readers_done => *readers_done = true,
            }
        }
    }

    pub(super) async fn run(
        spec: &ShellSpec,
        cancel: impl Future<Output = ()>,
    ) -> Result<ShellOutcome, String> {
        let command_line = spec.command.display_line();
        let place = match &spec.workdir {
            Some(dir) => format!(" in {}", dir.display()),
            None => String::new(),
        };
        if let Some(dir) = &spec.workdir {
            if !dir.is_dir() {
                return Err(format!(
                    "cannot run `{command_line}`: working directory {} does not exist or is not a directory",
                    dir.display()
                ));
            }
        }
        let (mut cmd, program) = match &spec.command {
            ShellCommand::Argv(argv) => {
                let Some((program, args)) = argv.split_first() else {
                    return Err("cannot run an empty argv (no program given)".to_string());
                };
                let mut cmd = Command::new(program);
                cmd.args(args);
                (cmd, program.as_str())
            }
            ShellCommand::Script(script) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(script);
                (cmd, "sh")
            }
        };
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &spec.workdir {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);

        let started = Utc::now();
        let mut child = cmd.spawn().map_err(|e| {
            format!("cannot start `{program}`{place} (to run `{command_line}`): {e}")
        })?;
        let Some(pid) = child.id() else {
            return Err(format!("`{command_line}` vanished right after its start"));
        };
        // process_group(0): the child leads a new group whose id is its pid.
        let pgid = pid as libc::pid_t;
        // Dropped after the guard below (declared before it): the group leaves the registry only
        // once it has been killed or reaped.
        let _registered = Registered::new(pgid);
        let mut guard = GroupGuard { pgid, armed: true };

        let mut out = Capture::new(spec.output_cap);
        let mut err = Capture::new(spec.output_cap);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (status, timed_out, cancelled) = {
            let mut readers = pin!(async {
                tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err));
            });
            let mut readers_done = false;
            let mut cancel = pin!(cancel);

            let end = reading(&mut readers, &mut readers_done, async {
                tokio::select! {
                    biased;
                    status = child.wait() => End::Exited(status),
                    () = &mut cancel => End::Cancelled,
                    () = sleep(spec.timeout) => End::TimedOut,
                }
            })
            .await;

            let (status, timed_out, cancelled) = match end {
                End::Exited(status) => {
                    // Readers get a moment for end of file; a leftover background process may
                    // hold the pipes open forever, so then the rest of the group goes.
                    if !readers_done && timeout(PIPE_LINGER, readers.as_mut()).await.is_ok() {
                        readers_done = true;
                    }
                    if group_alive(pgid) {
                        signal_group(pgid, libc::SIGKILL);
                    }
                    (status, false, false)
                }
                End::TimedOut | End::Cancelled => {
                    signal_group(pgid, libc::SIGTERM);
                    let deadline = Instant::now() + spec.kill_grace;
                    let mut reaped = None;
                    reading(&mut readers, &mut readers_done, async {
                        loop {
                            if reaped.is_none() {
                                if let Ok(Some(status)) = child.try_wait() {
                                    reaped = Some(status);
                                }
                            }
                            if reaped.is_some() && !group_alive(pgid) {
                                break;
                            }
                            let now = Instant::now();
                            if now >= deadline {
                                break;
                            }
                            sleep(GRACE_POLL.min(deadline - now)).await;
                        }
                    })
                    .await;
                    signal_group(pgid, libc::SIGKILL);
                    let status = match reaped {
                        Some(status) => Ok(status),
                        None => reading(&mut readers, &mut readers_done, child.wait()).await,
                    };
                    (
                        status,
                        matches!(end, End::TimedOut),
                        matches!(end, End::Cancelled),
                    )
                }
            };
            // The group is dead: what is still in the pipes is read; a pipe still held open
            // (by a process that left the group) is abandoned after the linger.
            if !readers_done {
                let _ = timeout(PIPE_LINGER, readers.as_mut()).await;
            }
            (status, timed_out, cancelled)
        };
        let status = status.map_err(|e| format!("waiting for `{command_line}` failed: {e}"))?;
        guard.armed = false;
        Ok(ShellOutcome {
            exit_code: status.code(),
            signal: status.signal(),
            stdout: out.kept,
            stderr: err.kept,
            stdout_total: out.total,
            stderr_total: err.total,
            timed_out,
            cancelled,
            started,
            ended: Utc::now(),
            command_line,
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir().join(format!("weft-shell-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir.canonicalize().unwrap())
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn argv(args: &[&str]) -> ShellCommand {
        ShellCommand::Argv(args.iter().map(|s| s.to_string()).collect())
    }

    fn script(s: &str) -> ShellCommand {
        ShellCommand::Script(s.to_string())
    }

    async fn run_ok(spec: &ShellSpec) -> ShellOutcome {
        run(spec, std::future::pending()).await.unwrap()
    }

    /// The process is gone: no such pid, or only a zombie waiting for its (re)parent.
    fn process_gone(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // State is the field after the parenthesised command name.
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| {
                matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))
            }),
            Err(_) => true,
        }
    }

    /// Polls (up to 5 s, the kernel may need a moment to reap) until `pid` is gone.
    async fn assert_gone_soon(pid: i32) {
        let start = Instant::now();
        while !process_gone(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "process {pid} survived its node"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn read_pid(dir: &Path) -> i32 {
        let text = std::fs::read_to_string(dir.join("pidfile")).expect("pidfile written");
        text.trim().parse().expect("a pid")
    }

    #[tokio::test]
    async fn argv_echo() {
        let spec = ShellSpec::new(
            argv(&["echo", "hello", "big world"]),
            Duration::from_secs(30),
        );
        let out = run_ok(&spec).await;
        assert_eq!(out.stdout, b"hello big world\n");
        assert_eq!(out.stdout_total, 16);
        assert!(out.stderr.is_empty());
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.signal, None);
        assert!(out.success() && !out.truncated() && !out.timed_out && !out.cancelled);
        assert_eq!(out.command_line, "echo hello 'big world'");
        assert!(out.started <= out.ended);
    }

    #[tokio::test]
    async fn exit_codes() {
        let out = run_ok(&ShellSpec::new(
            script("echo oops >&2; exit 3"),
            Duration::from_secs(30),
        ))
        .await;
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stderr_lossy(), "oops\n");
        assert!(!out.success());
        let out = run_ok(&ShellSpec::new(argv(&["false"]), Duration::from_secs(30))).await;
        assert_eq!(out.exit_code, Some(1));
        assert!(!out.success());
        let out = run_ok(&ShellSpec::new(
            script("kill -9 $$"),
            Duration::from_secs(30),
        ))
        .await;
        assert_eq!(out.exit_code, None);
        assert_eq!(out.signal, Some(libc::SIGKILL));
        assert!(!out.success() && !out.timed_out);
    }

    #[tokio::test]
    async fn env_and_workdir_applied() {
        let dir = TempDir::new();
        let mut spec = ShellSpec::new(
            script(r#"printf '%s|%s|' "$WEFT_A" "$WEFT_B"; pwd -P"#),
            Duration::from_secs(30),
        );
        spec.env = vec![
            ("WEFT_A".into(), "one".into()),
            ("WEFT_B".into(), "two words".into()),
        ];
        spec.workdir = Some(dir.path().to_path_buf());
        let out = run_ok(&spec).await;
        assert_eq!(
            out.stdout_lossy(),
            format!("one|two words|{}\n", dir.path().display())
        );
        assert!(out.success());
    }

    #[tokio::test]
    async fn spawn_error_missing_program() {
        let spec = ShellSpec::new(
            argv(&["weft-no-such-program-4711", "x"]),
            Duration::from_secs(5),
        );
        let err = run(&spec, std::future::pending()).await.unwrap_err();
        assert!(err.contains("weft-no-such-program-4711"), "{err}");
    }

    #[tokio::test]
    async fn spawn_error_missing_workdir() {
        let dir = TempDir::new();
        let missing = dir.path().join("not-here");
        let mut spec = ShellSpec::new(argv(&["true"]), Duration::from_secs(5));
        spec.workdir = Some(missing.clone());
        let err = run(&spec, std::future::pending()).await.unwrap_err();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("working directory"), "{err}");
    }

    #[tokio::test]
    async fn empty_argv_is_an_error() {
        let spec = ShellSpec::new(ShellCommand::Argv(Vec::new()), Duration::from_secs(5));
        assert!(run(&spec, std::future::pending()).await.is_err());
    }

    const HOSTILE: &[&str] = &[
        "127.0.0.1; touch FILE",
        "$(touch FILE)",
        "`touch FILE`",
        "a\ntouch FILE",
        "'\"; touch FILE; \"'",
        "-rf",
        "a && touch FILE || touch FILE",
        "| touch FILE",
        "$HOME ${PATH} * ?",
        "",
    ];

    #[tokio::test]
    async fn hostile_values_as_argv_are_not_interpreted() {
        let dir = TempDir::new();
        for value in HOSTILE {
            let mut spec = ShellSpec::new(argv(&["printf", "%s", value]), Duration::from_secs(30));
            spec.workdir = Some(dir.path().to_path_buf());
            let out = run_ok(&spec).await;
            assert_eq!(out.stdout, value.as_bytes(), "value {value:?}");
            assert!(out.success(), "value {value:?}: {}", out.stderr_lossy());
            assert!(
                !dir.path().join("FILE").exists(),
                "value {value:?} was interpreted"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn hostile_values_in_env_are_not_interpreted() {
        let dir = TempDir::new();
        for value in HOSTILE {
            let mut spec = ShellSpec::new(script(r#"printf '%s' "$v""#), Duration::from_secs(30));
            spec.env = vec![("v".into(), value.to_string())];
            spec.workdir = Some(dir.path().to_path_buf());
            let out = run_ok(&spec).await;
            assert_eq!(out.stdout, value.as_bytes(), "value {value:?}");
            assert!(out.success(), "value {value:?}: {}", out.stderr_lossy());
            assert!(
                !dir.path().join("FILE").exists(),
                "value {value:?} was interpreted"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn command_line_quotes_argv_for_humans() {
        let cmd = argv(&["printf", "%s", "a b", "it's", "", "$(x)", "-rf", "k=v"]);
        assert_eq!(
            cmd.display_line(),
            r#"printf %s 'a b' 'it'\''s' '' '$(x)' -rf k=v"#
        );
        assert_eq!(script("echo $HOME | wc").display_line(), "echo $HOME | wc");
    }

    #[tokio::test]
    async fn timeout_kills_sleep() {
        let spec = ShellSpec::new(argv(&["sleep", "1000"]), Duration::from_millis(300));
        let start = Instant::now();
        let out = run_ok(&spec).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert!(out.timed_out && !out.cancelled && !out.success());
        assert_eq!(out.exit_code, None);
        assert_eq!(out.signal, Some(libc::SIGTERM));
    }

    #[tokio::test]
    async fn timeout_sigkills_what_ignores_sigterm() {
        let dir = TempDir::new();
        // The ignored SIGTERM is inherited by the background sleep too.
        let mut spec = ShellSpec::new(
            script(r#"trap "" TERM; sleep 1000 & echo $! > pidfile; wait $!"#),
            Duration::from_millis(1000),
        );
        spec.kill_grace = Duration::from_millis(300);
        spec.workdir = Some(dir.path().to_path_buf());
        let start = Instant::now();
        let out = run_ok(&spec).await;
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "took {:?}",
            start.elapsed()
        );
        assert!(out.timed_out);
        assert_eq!(out.signal, Some(libc::SIGKILL));
        assert_gone_soon(read_pid(dir.path())).await;
    }

    #[tokio::test]
    async fn timeout_kills_background_grandchild() {
        let dir = TempDir::new();
        let mut spec = ShellSpec::new(
            script("sleep 1000 & echo $! > pidfile; sleep 1000"),
            Duration::from_millis(1000),
        );
        spec.workdir = Some(dir.path().to_path_buf());
        let start = Instant::now();
        let out = run_ok(&spec).await;
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "took {:?}",
            start.elapsed()
        );
        assert!(out.timed_out && !out.cancelled);
        assert_gone_soon(read_pid(dir.path())).await;
    }

    #[tokio::test]
    async fn timeout_does_not_wait_the_grace_when_the_group_is_gone() {
        let mut spec = ShellSpec::new(
            script("sleep 1000 & sleep 1000"),
            Duration::from_millis(300),
        );
        spec.kill_grace = Duration::from_secs(60);
        let start = Instant::now();
        let out = run_ok(&spec).await;
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
        assert!(out.timed_out);
        assert_eq!(out.signal, Some(libc::SIGTERM));
    }

    #[tokio::test]
    async fn normal_exit_kills_leftover_background_without_pipes() {
        let dir = TempDir::new();
        let mut spec = ShellSpec::new(
            script("sleep 1000 >/dev/null 2>&1 & echo $! > pidfile"),
            Duration::from_secs(600),
        );
        spec.workdir = Some(dir.path().to_path_buf());
        let out = run_ok(&spec).await;
        assert!(out.success(), "{out:?}");
        assert_gone_soon(read_pid(dir.path())).await;
    }

    #[tokio::test]
    async fn cancel_kills_the_group() {
        let dir = TempDir::new();
        let mut spec = ShellSpec::new(
            script("sleep 1000 & echo $! > pidfile; sleep 1000"),
            Duration::from_secs(600),
        );
        spec.workdir = Some(dir.path().to_path_buf());
        let pidfile = dir.path().join("pidfile");
        // Cancel once the background process is known (its pid written), at the latest after 10 s.
        let cancel = async {
            let start = Instant::now();
            while std::fs::metadata(&pidfile).map_or(true, |m| m.len() == 0)
                && start.elapsed() < Duration::from_secs(10)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let out = run(&spec, cancel).await.unwrap();
        assert!(out.cancelled && !out.timed_out && !out.success());
        assert_eq!(out.signal, Some(libc::SIGTERM));
        assert_gone_soon(read_pid(dir.path())).await;
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let dir = TempDir::new();
        let mut spec = ShellSpec::new(
            script("sleep 1000 & echo $! > pidfile; sleep 1000"),
            Duration::from_secs(600),
        );
        spec.workdir = Some(dir.path().to_path_buf());
        let pidfile = dir.path().join("pidfile");
        let wait_pid = async {
            while std::fs::metadata(&pidfile).map_or(true, |m| m.len() == 0) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = run(&spec, std::future::pending()) => panic!("sleep 1000 ended"),
            () = wait_pid => {}
        }
        assert_gone_soon(read_pid(dir.path())).await;
    }

    #[tokio::test]
    async fn output_cap_counts_the_rest() {
        const THREE_MIB: usize = 3 * 1024 * 1024;
        let mut spec = ShellSpec::new(
            argv(&["head", "-c", &THREE_MIB.to_string(), "/dev/zero"]),
            Duration::from_secs(60),
        );
        spec.output_cap = 1024 * 1024;
        let out = run_ok(&spec).await;
        assert!(out.success());
        assert_eq!(out.stdout.len(), spec.output_cap);
        assert_eq!(out.stdout_total, THREE_MIB as u64);
        assert!(out.truncated());

        // Both streams at once, and stderr filled first: no pipe deadlock either way.
        for body in [
            "head -c 3145728 /dev/zero & head -c 3145728 /dev/zero >&2; wait",
            "head -c 3145728 /dev/zero >&2; head -c 3145728 /dev/zero",
        ] {
            let mut spec = ShellSpec::new(script(body), Duration::from_secs(60));
            spec.output_cap = 1024 * 1024;
            let out = run_ok(&spec).await;
            assert!(out.success(), "{body}");
            assert_eq!(out.stdout.len(), spec.output_cap);
            assert_eq!(out.stderr.len(), spec.output_cap);
            assert_eq!(out.stdout_total, THREE_MIB as u64, "{body}");
            assert_eq!(out.stderr_total, THREE_MIB as u64, "{body}");
            assert!(out.truncated());
        }
    }

    #[tokio::test]
    async fn non_utf8_output_is_kept_as_bytes() {
        let out = run_ok(&ShellSpec::new(
            argv(&["printf", r"caf\351\n"]),
            Duration::from_secs(30),
        ))
        .await;
        assert!(out.success());
        assert_eq!(out.stdout, b"caf\xe9\n");
        assert_eq!(out.stdout_lossy(), "caf\u{FFFD}\n");
        let out = run_ok(&ShellSpec::new(
            script(r"printf '\377\376x' >&2"),
            Duration::from_secs(30),
        ))
        .await;
        assert_eq!(out.stderr, b"\xff\xfex");
        assert_eq!(out.stderr_lossy(), "\u{FFFD}\u{FFFD}x");
    }

    #[tokio::test]
    async fn normal_exit_with_background_holding_pipes_returns_promptly() {
        let dir = TempDir::new();
        let mut spec = ShellSpec::new(
            script("sleep 1000 & echo $! > pidfile; echo done"),
            Duration::from_secs(600),
        );
        spec.workdir = Some(dir.path().to_path_buf());
        let start = Instant::now();
        let out = run_ok(&spec).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout, b"done\n");
        assert_gone_soon(read_pid(dir.path())).await;
    }
}
