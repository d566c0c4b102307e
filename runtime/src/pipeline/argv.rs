//! Which arguments of a `command` a program runs as code, or uses to choose what runs.
//!
//! A `{name}` placeholder fills part of ONE argument and no shell splits it; but some programs
//! read an argument as a program of their own: `sh -c 'echo {ip}'` hands the value to a shell as
//! code, and `env {prog}` lets it choose what runs. `analyze` finds those arguments by looking
//! at the argv as written (before any value is filled in), and the file check refuses a
//! placeholder in any of them. The analysis is deliberately generous: when in doubt, an argument
//! counts as code.
//!
//! What counts (the program is recognised by its file name, without its directory or a version
//! suffix, so `/bin/sh`, `python3.12` and `/usr/bin/env` are covered):
//!
//! * **Shells** `sh bash dash zsh ksh mksh ash yash posh rbash lksh pdksh oksh fish tcsh csh rc es
//!   elvish nu xonsh pwsh powershell`: with `-c` (also in a group of flags such as `-ec`, `-xc`,
//!   `-lc`; fish's `--command`/`-C`; pwsh's `-Command`/`-EncodedCommand`, any case and prefix) the
//!   first operand is code (pwsh: every argument after it); without `-c` the first operand is the
//!   script that runs. Every option argument before it counts as code as well (`--rcfile`, `-o`).
//!   Later arguments are positional data (`$1`...), the safe way to hand a value to `sh -c`.
//! * **Interpreters**: `python`/`pypy` `-c` (code) and `-m` (the module that runs); `perl`
//!   `-e`/`-E` (and, with `-n`/`-p`, every operand, which `<>` may open as a command); `ruby -e`;
//!   `node`/`nodejs`/`bun` `-e`/`--eval`/`-p`/`--print`, `deno eval`; `php -r/-R/-B/-E` and `-d`;
//!   `lua`/`luajit -e`; `Rscript -e`, `R -e`; `julia -e/-E`; `osascript -e`; `expect -c`;
//!   `awk`/`gawk`/`mawk`/`nawk` (the program operand, `-e`/`--source`); `sed` (the script operand,
//!   `-e`/`--expression`: GNU sed's `e` command runs commands); `psql -c`, `mysql`/`mariadb -e`,
//!   `sqlite3` (SQL and dot commands such as `.shell`). Without their code option, their first
//!   operand is the script that runs.
//! * **Commands that run their arguments through a shell**: `ssh` (every argument after the
//!   destination, and `-o` values whose option ends in `Command`), `su` (`-c`, and everything after
//!   the user), `runuser -c`, `sg`, `watch` (without `-x`), `flock -c`, `env -S`, `sudo -s`/`-i`,
//!   `rsync -e`/`--rsh`/`--rsync-path`, `git -c`, `tar --to-command`/`-I`/`--use-compress-program`/
//!   `--checkpoint-action`/`--info-script`/`-F`/`--rsh-command`/`--rmt-command`.
//! * **Wrappers** whose command is analysed in turn: `env` (options and `NAME=VALUE`), `sudo`,
//!   `doas`, `nice`, `nohup`, `timeout`, `stdbuf`, `ionice`, `chrt`, `taskset`, `setsid`, `time`,
//!   `exec`, `command`, `builtin`, `xargs`, `flock`, `chroot`, `unshare`, `nsenter`, `runuser -u`,
//!   `strace`, `ltrace`, `valgrind`, `firejail`, `systemd-run`, `fakeroot`, `unbuffer`,
//!   `proxychains`, `torsocks`, `caffeinate`, `catchsegv`, `busybox`, `toybox`, `watch -x`, and
//!   `find`'s `-exec`/`-execdir`/`-ok`/`-okdir`. The argument where their command goes is "what
//!   runs": a placeholder there is refused like one in `command[0]`.
//!
//! Arguments of any other program are data; the run-time rule about a leading `-` (see
//! [`Pipeline::check_values`](super::Pipeline::check_values)) keeps a value from becoming one
//! of its options.

use super::params::{parse_template, Part};

/// What an argument is to the programs of an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Run as code by `what` (e.g. "sh -c"); `positional`: a value can go as a separate argument
    /// after the code instead (`sh -c '...' sh {v}`).
    Code { what: String, positional: bool },
    /// Chooses the program (or script, module) that `by` runs.
    Program { by: String },
}

/// The result of [`analyze`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// The index of the program that finally runs (after wrappers such as `env`, `sudo`).
    pub program: usize,
    /// Arguments that are code or choose what runs, ascending, each once.
    pub roles: Vec<(usize, Role)>,
}

/// Analyses an argv template (placeholders not filled in).
pub(crate) fn analyze(argv: &[String]) -> Analysis {
    let mut a = Walker {
        argv,
        out: Analysis::default(),
    };
    a.program(0, None);
    a.out.roles.sort_by_key(|r| r.0);
    a.out.roles.dedup_by_key(|r| r.0);
    a.out
}

/// Whether an argument holds a placeholder.
pub(crate) fn has_placeholder(arg: &str) -> bool {
    match parse_template(arg) {
        Ok(parts) => parts.iter().any(|p| matches!(p, Part::Param { .. })),
        // Malformed: reported by the file check; count it as holding one.
        Err(_) => arg.contains('{'),
    }
}

/// The literal text an argument starts with, up to its first placeholder.
fn literal_prefix(arg: &str) -> String {
    match parse_template(arg) {
        Ok(parts) => match parts.first() {
            Some(Part::Text(t)) => t.clone(),
            _ => String::new(),
        },
        Err(_) => arg.to_owned(),
    }
}

/// The program's name as recognised: its file name, lowercase, without a version suffix
/// (`/usr/bin/python3.12` -> `python`).
fn program_name(arg: &str) -> String {
    let base = arg.rsplit('/').next().unwrap_or(arg).to_ascii_lowercase();
    let base = base.strip_suffix(".exe").unwrap_or(&base).to_owned();
    let trimmed = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-');
    if trimmed.is_empty() {
        base
    } else {
        trimmed.to_owned()
    }
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "rbash", "lksh", "pdksh",
    "oksh", "fish", "tcsh", "csh", "rc", "es", "elvish", "nu", "xonsh",
];

struct Walker<'a> {
    argv: &'a [String],
    out: Analysis,
}

impl Walker<'_> {
    fn arg(&self, i: usize) -> Option<&str> {
        self.argv.get(i).map(String::as_str)
    }

    /// Whether argument `i` is written as an option: it starts with a literal `-` (a value
    /// cannot start one: see the leading-dash rule), and is not `-` alone.
    fn is_option(&self, i: usize) -> bool {
        let p = literal_prefix(self.arg(i).unwrap_or(""));
        p.starts_with('-') && p != "-"
    }

    fn code(&mut self, i: usize, what: &str, positional: bool) {
        if i < self.argv.len() {
            self.out.roles.push((
                i,
                Role::Code {
                    what: what.to_owned(),
                    positional,
                },
            ));
        }
    }

    fn code_from(&mut self, i: usize, what: &str) {
        for k in i..self.argv.len() {
            self.code(k, what, false);
        }
    }

    fn chooses(&mut self, i: usize, by: &str) {
        if i < self.argv.len() {
            self.out
                .roles
                .push((i, Role::Program { by: by.to_owned() }));
        }
    }

    /// Skips a wrapper's options from `i`: arguments written as options (and the value of those
    /// in `with_value`, unless attached with `=`), up to and past a `--`; then `operands` more
    /// arguments. Returns the index of the wrapped command.
    fn skip_options(&self, mut i: usize, with_value: &[&str], operands: usize) -> usize {
        while i < self.argv.len() && self.is_option(i) {
            let a = self.argv[i].as_str();
            i += 1;
            if a == "--" {
                break;
            }
            if with_value.contains(&a) {
                i += 1;
            }
        }
        i + operands
    }

    /// `argv[i]` is the program of a command (`by`: the wrapper that runs it, if any).
    fn program(&mut self, i: usize, by: Option<&str>) {
        let argv = self.argv;
        let Some(arg) = argv.get(i) else {
            return;
        };
        self.out.program = i;
        if has_placeholder(arg) {
            self.chooses(i, by.unwrap_or("the node"));
            return;
        }
        let name = program_name(arg);
        let n = name.as_str();
        match n {
            _ if SHELLS.contains(&n) => self.shell(i, n),
            "pwsh" | "powershell" => self.pwsh(i),
            "python" | "pypy" => self.short_cluster(i, n, "c", "m", "WX", "", false),
            "perl" => self.perl(i),
            "ruby" => self.short_cluster(i, n, "e", "r", "ICEF", "0", true),
            "node" | "nodejs" | "bun" => self.node(i, n),
            "deno" => self.deno(i),
            "php" => self.flags(
                i,
                n,
                &["-r", "-R", "-B", "-E", "-d"],
                &["-f", "-F"],
                &["-c", "-z", "-t"],
            ),
            "lua" | "luajit" => self.flags(i, n, &["-e"], &["-l"], &[]),
            "rscript" | "r" => self.flags(i, n, &["-e"], &["--file"], &[]),
            "julia" => self.flags(i, n, &["-e", "-E", "--eval", "--print"], &["-L"], &[]),
            "osascript" => self.flags(i, n, &["-e"], &[], &["-l", "-s"]),
            "expect" => self.flags(i, n, &["-c"], &["-f"], &[]),
            "tclsh" | "wish" => self.flags(i, n, &[], &[], &[]),
            "awk" | "gawk" | "mawk" | "nawk" | "original-awk" => self.awk(i, n),
            "sed" | "gsed" => self.sed(i, n),
            "psql" => self.data_flags(i, n, &["-c", "--command"]),
            "mysql" | "mariadb" => self.data_flags(i, n, &["-e", "--execute", "--init-command"]),
            "sqlite" => self.sqlite(i, n),
            "ssh" => self.ssh(i),
            "scp" | "sftp" => self.scp(i, n),
            "rsync" => self.data_flags(i, n, &["-e", "--rsh", "--rsync-path"]),
            "git" => self.data_flags(i, n, &["-c", "--config-env"]),
            "tar" | "gtar" | "bsdtar" => self.data_flags(
                i,
                n,
                &[
                    "--to-command",
                    "-I",
                    "--use-compress-program",
                    "--checkpoint-action",
                    "--info-script",
                    "--new-volume-script",
                    "-F",
                    "--rsh-command",
                    "--rmt-command",
                ],
            ),
            "su" => self.su(i),
            "runuser" => self.runuser(i),
            "sg" => self.code_from(i + 1, "sg"),
            "watch" => self.watch(i),
            "env" => self.env(i),
            "sudo" | "doas" => self.sudo(i, n),
            "flock" => self.flock(i),
            "find" => self.find(i),
            "busybox" | "toybox" => self.program(i + 1, Some(n)),
            _ => {
                if let Some((with_value, operands)) = wrapper(n) {
                    let j = self.skip_options(i + 1, with_value, operands);
                    self.program(j, Some(n));
                }
            }
        }
    }

    /// A POSIX-like shell: options (with `-c` somewhere), then the code or the script.
    fn shell(&mut self, i: usize, n: &str) {
        let mut code = false;
        let mut k = i + 1;
        while k < self.argv.len()
            && (self.is_option(k) || literal_prefix(&self.argv[k]).starts_with('+'))
        {
            let a = self.argv[k].clone();
            self.code(k, &format!("{n} (its options)"), false);
            k += 1;
            if a == "--" || a == "-" {
                break;
            }
            let short = !a.starts_with("--") && a.len() > 1;
            if (short && a[1..].contains('c')) || a == "--command" {
                code = true;
                if n == "fish" {
                    // fish: `-c` takes the next argument, wherever the options end.
                    self.code(k, &format!("{n} -c"), true);
                }
            }
            if [
                "-C",
                "--init-command",
                "-o",
                "+o",
                "-O",
                "+O",
                "--rcfile",
                "--init-file",
            ]
            .contains(&a.as_str())
            {
                // Their value is code (fish's init command), or chooses code (an rc file).
                self.code(k, &format!("{n} {a}"), false);
                k += 1;
            }
        }
        if code {
            self.code(k, &format!("{n} -c"), true);
        } else {
            self.chooses(k, n);
        }
    }

    /// pwsh: `-Command` (any prefix of it, any case) makes the rest code; `-File` names the script.
    fn pwsh(&mut self, i: usize) {
        let mut k = i + 1;
        while k < self.argv.len() {
            let a = self.argv[k].to_ascii_lowercase();
            let opt = a.trim_start_matches('-');
            if !a.starts_with('-') {
                // The command (pwsh reads a bare first argument as -File, or -Command).
                self.code_from(k, "pwsh");
                return;
            }
            self.code(k, "pwsh (its options)", false);
            if opt.is_empty() {
                return;
            }
            if "command".starts_with(opt) || "encodedcommand".starts_with(opt) || opt == "ec" {
                self.code_from(k + 1, "pwsh -Command");
                return;
            }
            if "file".starts_with(opt) {
                self.chooses(k + 1, "pwsh -File");
                return;
            }
            k += 1;
        }
    }

    /// A program whose short options may be grouped (`-Sc`): `code` letters take code (attached
    /// or next), `choose` letters name what runs, `value` letters take a value (attached or
    /// next), `digits` letters take attached digits only; then the first operand is the script
    /// unless code was given. `repeat`: code options may repeat.
    #[allow(clippy::too_many_arguments)]
    fn short_cluster(
        &mut self,
        i: usize,
        n: &str,
        code: &str,
        choose: &str,
        value: &str,
        digits: &str,
        repeat: bool,
    ) {
        let mut k = i + 1;
        let mut had_code = false;
        while k < self.argv.len() && self.is_option(k) {
            let a: Vec<char> = self.argv[k].chars().collect();
            k += 1;
            if a == ['-', '-'] {
                break;
            }
            if a.get(1) == Some(&'-') {
                continue;
            }
            let mut pos = 1;
            while pos < a.len() {
                let c = a[pos];
                let rest_empty = pos + 1 == a.len();
                if code.contains(c) {
                    had_code = true;
                    if rest_empty {
                        self.code(k, &format!("{n} -{c}"), true);
                        k += 1;
                    } else {
                        self.code(k - 1, &format!("{n} -{c}"), true);
                    }
                    break;
                }
                if choose.contains(c) {
                    if rest_empty {
                        self.chooses(k, &format!("{n} -{c}"));
                    } else {
                        self.chooses(k - 1, &format!("{n} -{c}"));
                    }
                    return;
                }
                if value.contains(c) {
                    if rest_empty {
                        self.code(k, &format!("{n} -{c}"), false);
                        k += 1;
                    }
                    break;
                }
                pos += 1;
                if digits.contains(c) {
                    while pos < a.len() && a[pos].is_ascii_hexdigit() && !code.contains(a[pos]) {
                        pos += 1;
                    }
                }
            }
            if had_code && !repeat {
                return;
            }
        }
        if !had_code {
            self.chooses(k, n);
        }
    }

    fn perl(&mut self, i: usize) {
        let magic = self.argv[i + 1..]
            .iter()
            .take_while(|a| literal_prefix(a).starts_with('-') && a.as_str() != "--")
            .any(|a| !a.starts_with("--") && (a.contains('n') || a.contains('p')));
        let before = self.out.roles.len();
        self.short_cluster(i, "perl", "eE", "Mm", "Ix", "0l", true);
        if magic {
            // `-n`/`-p` read the operands with `<>`, whose open runs `cmd|` as a command.
            let first = self.out.roles[before..]
                .iter()
                .map(|r| r.0)
                .max()
                .map_or(i + 1, |m| m + 1);
            self.code_from(first, "perl -n/-p (`<>` opens `cmd|` as a command)");
        }
    }

    /// Options in `code` take code, in `choose` name what runs, in `value` take data; a `--x=v`
    /// form counts too. Without a code option, the first operand is the script.
    fn flags(&mut self, i: usize, n: &str, code: &[&str], choose: &[&str], value: &[&str]) {
        let mut k = i + 1;
        let mut had_code = false;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            let (key, attached) = match a.split_once('=') {
                Some((key, _)) if a.starts_with("--") => (key.to_owned(), true),
                _ => (a.clone(), false),
            };
            k += 1;
            if a == "--" {
                break;
            }
            if code.contains(&key.as_str()) {
                had_code = true;
                if attached {
                    self.code(k - 1, &format!("{n} {key}"), true);
                } else {
                    self.code(k, &format!("{n} {key}"), true);
                    k += 1;
                }
            } else if choose.contains(&key.as_str()) {
                if attached {
                    self.chooses(k - 1, &format!("{n} {key}"));
                } else {
                    self.chooses(k, &format!("{n} {key}"));
                }
                return;
            } else if value.contains(&key.as_str()) && !attached {
                k += 1;
            } else if code
                .iter()
                .any(|c| c.len() == 2 && !c.starts_with("--") && a.starts_with(c))
            {
                // `-eCODE`: attached.
                had_code = true;
                self.code(k - 1, &format!("{n} {}", &a[..2]), true);
            }
        }
        if !had_code {
            self.chooses(k, n);
        }
    }

    /// A program whose arguments are data, except the values of options in `code`.
    fn data_flags(&mut self, i: usize, n: &str, code: &[&str]) {
        let mut k = i + 1;
        while k < self.argv.len() {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                return;
            }
            if code.contains(&a.as_str()) {
                self.code(k, &format!("{n} {a}"), false);
                k += 1;
                continue;
            }
            for c in code {
                let attached = if c.starts_with("--") {
                    a.strip_prefix(&format!("{c}="))
                } else {
                    a.strip_prefix(c).filter(|rest| !rest.is_empty())
                };
                if attached.is_some() {
                    self.code(k - 1, &format!("{n} {c}"), false);
                }
            }
        }
    }

    fn node(&mut self, i: usize, n: &str) {
        self.flags(
            i,
            n,
            &["-e", "--eval", "-p", "--print"],
            &[
                "-r",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
            ],
            &[],
        )
    }

    fn deno(&mut self, i: usize) {
        let k = self.skip_options(i + 1, &[], 0);
        match self.arg(k) {
            Some("eval") => {
                let j = self.skip_options(k + 1, &[], 0);
                self.code(j, "deno eval", true);
            }
            Some("run") => {
                let j = self.skip_options(k + 1, &[], 0);
                self.chooses(j, "deno run");
            }
            _ => self.chooses(k, "deno"),
        }
    }

    fn awk(&mut self, i: usize, n: &str) {
        let mut k = i + 1;
        let mut had_program = false;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            match a.as_str() {
                "--" => break,
                "-f" | "--file" | "-i" | "--include" | "-l" | "--load" | "-E" | "--exec" => {
                    had_program = true;
                    self.chooses(k, &format!("{n} {a}"));
                    k += 1;
                }
                "-e" | "--source" => {
                    had_program = true;
                    self.code(k, &format!("{n} {a}"), true);
                    k += 1;
                }
                "-v" | "--assign" | "-F" | "--field-separator" => k += 1,
                _ => {
                    if a.starts_with("--source=") || a.starts_with("--file=") {
                        had_program = true;
                        self.code(k - 1, n, true);
                    }
                }
            }
        }
        if !had_program {
            self.code(k, &format!("{n} (its program)"), true);
        }
    }

    fn sed(&mut self, i: usize, n: &str) {
        let mut k = i + 1;
        let mut had_script = false;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            match a.as_str() {
                "--" => break,
                "-e" | "--expression" => {
                    had_script = true;
                    self.code(k, &format!("{n} {a}"), true);
                    k += 1;
                }
                "-f" | "--file" => {
                    had_script = true;
                    self.chooses(k, &format!("{n} {a}"));
                    k += 1;
                }
                "-l" | "--line-length" => k += 1,
                _ => {
                    if a.starts_with("--expression=") || a.starts_with("-e") {
                        had_script = true;
                        self.code(k - 1, n, true);
                    }
                }
            }
        }
        if !had_script {
            self.code(k, &format!("{n} (its script)"), true);
        }
    }

    fn sqlite(&mut self, i: usize, n: &str) {
        let mut k = i + 1;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if ["-cmd", "-init", "-separator", "-newline", "-nullvalue"].contains(&a.as_str()) {
                self.code(k, &format!("{n} {a}"), false);
                k += 1;
            }
        }
        // The database, then SQL and dot commands (`.shell`, `.system`).
        self.code_from(k + 1, &format!("{n} (its SQL)"));
    }

    fn ssh(&mut self, i: usize) {
        const WITH_VALUE: &[&str] = &[
            "-B", "-b", "-c", "-D", "-E", "-e", "-F", "-I", "-i", "-J", "-L", "-l", "-m", "-O",
            "-o", "-P", "-p", "-Q", "-R", "-S", "-W", "-w",
        ];
        let mut k = i + 1;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                break;
            }
            let option_value = if a == "-o" {
                k += 1;
                Some((k - 1, self.arg(k - 1).unwrap_or("").to_owned()))
            } else if let Some(rest) = a.strip_prefix("-o") {
                Some((k - 1, rest.to_owned()))
            } else {
                if WITH_VALUE.contains(&a.as_str()) {
                    k += 1;
                }
                None
            };
            if let Some((at, value)) = option_value {
                let key = value
                    .split(['=', ' ', '\t'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if key.ends_with("command") || has_placeholder(&key) {
                    self.code(at, "ssh -o ...Command", false);
                }
            }
        }
        // The destination, then the remote command: joined with spaces and run by the remote
        // user's shell, so even a separate argument is code.
        self.code_from(k + 1, "the remote shell of ssh");
    }

    fn scp(&mut self, i: usize, n: &str) {
        let mut k = i + 1;
        while k < self.argv.len() {
            let a = self.argv[k].clone();
            k += 1;
            if a == "-S" {
                self.chooses(k, &format!("{n} -S"));
                k += 1;
            } else if a == "-o" {
                let key = self.arg(k).unwrap_or("").to_ascii_lowercase();
                if key
                    .split(['=', ' '])
                    .next()
                    .unwrap_or("")
                    .ends_with("command")
                {
                    self.code(k, &format!("{n} -o ...Command"), false);
                }
                k += 1;
            }
        }
    }

    fn su(&mut self, i: usize) {
        let mut k = i + 1;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                break;
            }
            if ["-c", "--command", "--session-command"].contains(&a.as_str()) {
                self.code(k, &format!("su {a}"), false);
                k += 1;
            } else if ["-g", "-G", "-s", "-w", "--group", "--supp-group", "--shell"]
                .contains(&a.as_str())
            {
                k += 1;
            }
        }
        // The user, then arguments handed to the user's shell.
        self.code_from(k + 1, "the shell su starts");
    }

    fn runuser(&mut self, i: usize) {
        let mut k = i + 1;
        let mut user_mode = false;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                break;
            }
            if ["-c", "--command", "--session-command"].contains(&a.as_str()) {
                self.code(k, &format!("runuser {a}"), false);
                return;
            }
            if a == "-u" || a == "--user" {
                user_mode = true;
            }
            if [
                "-u",
                "--user",
                "-g",
                "-G",
                "-s",
                "-w",
                "--group",
                "--supp-group",
                "--shell",
            ]
            .contains(&a.as_str())
            {
                k += 1;
            }
        }
        if user_mode {
            self.program(k, Some("runuser"));
        } else {
            self.code_from(k + 1, "the shell runuser starts");
        }
    }

    fn watch(&mut self, i: usize) {
        let mut k = i + 1;
        let mut exec = false;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                break;
            }
            if a == "-x" || a == "--exec" {
                exec = true;
            } else if ["-n", "--interval", "-q", "--equexit"].contains(&a.as_str()) {
                k += 1;
            }
        }
        if exec {
            self.program(k, Some("watch -x"));
        } else {
            // watch joins its arguments and runs them with `sh -c`.
            self.code_from(k, "watch (sh -c)");
        }
    }

    fn env(&mut self, i: usize) {
        let mut k = i + 1;
        while k < self.argv.len() {
            let a = self.argv[k].clone();
            let prefix = literal_prefix(&a);
            if self.is_option(k) {
                k += 1;
                if a == "--" {
                    break;
                }
                if a == "-S" || a == "--split-string" {
                    self.code_from(k, "env -S");
                    return;
                }
                if (a.starts_with("-S") && !a.starts_with("--")) || a.starts_with("--split-string=")
                {
                    self.code_from(k - 1, "env -S");
                    return;
                }
                if ["-u", "--unset", "-C", "--chdir"].contains(&a.as_str()) {
                    k += 1;
                }
            } else if prefix.contains('=') {
                // NAME=VALUE: the value is data in the environment.
                k += 1;
            } else {
                break;
            }
        }
        while k < self.argv.len() && literal_prefix(&self.argv[k]).contains('=') {
            k += 1;
        }
        self.program(k, Some("env"));
    }

    fn sudo(&mut self, i: usize, n: &str) {
        const WITH_VALUE: &[&str] = &[
            "-u",
            "-g",
            "-C",
            "-D",
            "-h",
            "-p",
            "-r",
            "-t",
            "-U",
            "-T",
            "--user",
            "--group",
            "--chdir",
            "--prompt",
            "--role",
            "--type",
            "--other-user",
            "--host",
            "--close-from",
            "--command-timeout",
        ];
        let mut k = i + 1;
        let mut shell = false;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                break;
            }
            if a == "--shell"
                || a == "--login"
                || (!a.starts_with("--") && (a.contains('s') || a.contains('i')))
            {
                shell = true;
            }
            if WITH_VALUE.contains(&a.as_str()) {
                k += 1;
            }
        }
        while k < self.argv.len() && literal_prefix(&self.argv[k]).contains('=') {
            k += 1;
        }
        if shell {
            // `sudo -s CMD`: the command goes to a shell's `-c`.
            self.code_from(k, &format!("{n} -s/-i (a shell)"));
        } else {
            self.program(k, Some(n));
        }
    }

    fn flock(&mut self, i: usize) {
        let mut k = i + 1;
        while k < self.argv.len() && self.is_option(k) {
            let a = self.argv[k].clone();
            k += 1;
            if a == "--" {
                break;
            }
            if a == "-c" || a == "--command" {
                self.code(k, "flock -c", false);
                return;
            }
            if ["-w", "--timeout", "--wait", "-E", "--conflict-exit-code"].contains(&a.as_str()) {
                k += 1;
            }
        }
        // The lock file, then `-c CMD` or the command.
        match self.arg(k + 1) {
            Some("-c") | Some("--command") => self.code(k + 2, "flock -c", false),
            _ => self.program(k + 1, Some("flock")),
        }
    }

    fn find(&mut self, i: usize) {
        for k in i + 1..self.argv.len() {
            if ["-exec", "-execdir", "-ok", "-okdir"].contains(&self.argv[k].as_str()) {
                let what = format!("find {}", self.argv[k]);
                let program = self.out.program;
                self.program(k + 1, Some(&what));
                self.out.program = program;
            }
        }
    }
}

/// Wrappers that run a command: (options taking a separate value, operands before the command).
fn wrapper(n: &str) -> Option<(&'static [&'static str], usize)> {
    Some(match n {
        "nice" => (&["-n", "--adjustment"], 0),
        "nohup" | "setsid" | "exec" | "command" | "builtin" | "caffeinate" | "unbuffer"
        | "fakeroot" | "proxychains" | "torsocks" | "catchsegv" | "valgrind" | "firejail" => {
            (&[], 0)
        }
        "time" => (&["-f", "--format", "-o", "--output"], 0),
        "stdbuf" => (&["-i", "-o", "-e", "--input", "--output", "--error"], 0),
        "timeout" => (&["-s", "--signal", "-k", "--kill-after"], 1),
        "ionice" => (&["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"], 0),
        "chrt" => (&["-T", "-P", "-D"], 1),
        "taskset" => (&[], 1),
        "chroot" => (&["--userspec", "--groups"], 1),
        "unshare" | "nsenter" => (&["-t", "--target", "-S", "-G", "--setuid", "--setgid"], 0),
        "strace" | "ltrace" => (
            &[
                "-o", "-p", "-e", "-s", "-E", "-u", "-P", "-a", "-b", "-I", "-S", "-X", "-U",
            ],
            0,
        ),
        "systemd-run" => (
            &[
                "-p",
                "--property",
                "-u",
                "--unit",
                "-E",
                "--setenv",
                "-M",
                "--machine",
                "-H",
                "--host",
                "--uid",
                "--gid",
                "--nice",
                "--working-directory",
                "-D",
                "--description",
                "--slice",
            ],
            0,
        ),
        "xargs" => (
            &[
                "-a",
                "-d",
                "-E",
                "-I",
                "-L",
                "-n",
                "-P",
                "-s",
                "--arg-file",
                "--delimiter",
                "--eof",
                "--replace",
                "--max-lines",
                "--max-args",
                "--max-procs",
                "--max-chars",
                "--process-slot-var",
            ],
            0,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(argv: &[&str]) -> Vec<usize> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        analyze(&argv).roles.into_iter().map(|r| r.0).collect()
    }

    #[test]
    fn names_and_positions() {
        assert_eq!(program_name("/usr/bin/python3.12"), "python");
        assert_eq!(program_name("BASH"), "bash");
        assert_eq!(program_name("busybox"), "busybox");
        assert_eq!(roles(&["sh", "-c", "x", "sh", "y"]), [1, 2]);
        assert_eq!(roles(&["ls", "-l", "x"]), Vec::<usize>::new());
        assert_eq!(
            roles(&["env", "A=1", "sudo", "-u", "me", "bash", "-ec", "x"]),
            [6, 7]
        );
        let argv: Vec<String> = ["env", "A=1", "sort", "--", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(analyze(&argv).program, 2);
        assert_eq!(roles(&["python3", "-m", "http.server"]), [2]);
        assert_eq!(roles(&["perl", "-ne", "print", "f"]), [2, 3]);
        assert_eq!(roles(&["ssh", "-p", "22", "host", "ls", "-l"]), [4, 5]);
        assert_eq!(roles(&["awk", "-F", ":", "{{print}}", "f"]), [3]);
    }
}
