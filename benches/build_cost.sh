#!/usr/bin/env bash
# What weft costs a user's build: CPU seconds (user + system, all processes) and peak compiler
# memory of clean dev builds of small crates made in a temporary directory, each next to its
# baseline measured in the same run:
#
#   1. a crate depending on tokio + serde (the baseline), then the same crate depending on weft
#      without default features (the macros and the engine), with its default features (and
#      so SQLite run history), and with every feature (`full`);
#   2. adding a #[flow] of N statements to the weft crate once it is built (N = 0, 50, 1000: the
#      rebuild of the crate alone), and the size of its macro expansion per statement;
#   3. with --cli, the size of the release `weft` binary (built in the repository's target).
#
#   bash benches/build_cost.sh [--reps K] [--sizes "0 50 1000"] [--cli] [--flows-only]
#
# Every build of a crate is clean (its own target directory, removed before each repetition);
# registry downloads are not counted (fetched once first). Medians of K repetitions (default 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=1
sizes="0 50 1000"
cli=false
crates=true
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --cli) cli=true; shift ;;
    --flows-only) crates=false; shift ;;
    *) echo "usage: $0 [--reps K] [--sizes \"0 50 1000\"] [--cli] [--flows-only]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/weft-build-cost.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0

# Runs "$@" in the current directory; prints "CPU_SECONDS PEAK_MIB" (the command's children
# included: cargo, rustc, build scripts, the C compiler).
measure() {
  /usr/bin/time -f "%U %S %M" -o "$work/time" "$@" >"$work/out" 2>&1 || {
    cat "$work/out" >&2
    echo "failed: $*" >&2
    exit 1
  }
  awk '{ printf "%.1f %d\n", $1 + $2, $3 / 1024 }' "$work/time"
}

# The median of the numbers on stdin.
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# A crate at $work/$1 with the dependencies $2 and main.rs $3.
make_crate() {
  mkdir -p "$work/$1/src"
  cat >"$work/$1/Cargo.toml" <<EOF
[package]
name = "$1"
version = "0.1.0"
edition = "2021"

[dependencies]
$2

[workspace]
EOF
  printf '%s\n' "$3" >"$work/$1/src/main.rs"
}

make_crate plain 'tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
serde = { version = "1", features = ["derive"] }' '
#[derive(serde::Serialize)]
struct Row { n: u32 }
#[tokio::main]
async fn main() { let r = Row { n: 1 }; println!("{}", r.n); }'

make_crate with_full "weft = { path = \"$root\", features = [\"full\"] }
tokio = { version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }" 'fn main() {}'

make_crate engine_only "weft = { path = \"$root\", default-features = false }
tokio = { version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }" '
use weft::prelude::*;
#[task] fn one() -> u32 { 1 }
#[flow] async fn hello() -> u32 { let x = one()?; x }
#[tokio::main]
async fn main() { let _ = hello().await; }'

make_crate with_weft "weft = { path = \"$root\" }
tokio = { version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }" '
use weft::prelude::*;
mod generated;
#[task] fn one() -> u32 { 1 }
#[flow] async fn hello() -> u32 { let x = one()?; x }
#[tokio::main]
async fn main() { let _ = hello::run_with(RunConfig::new().no_history()).await; generated::touch(); }'

# A flow of $1 statements, each a task call on the previous one's value.
generate_flow() {
  local n=$1 out="$work/with_weft/src/generated.rs"
  {
    echo "#![allow(dead_code)]"
    echo "use weft::prelude::*;"
    echo "#[task] fn step(x: u32) -> u32 { x + 1 }"
    echo "pub fn touch() {}"
    if [ "$n" -gt 0 ]; then
      echo "#[flow] pub async fn big() -> u32 {"
      echo "    let v0 = step(0)?;"
      for i in $(seq 1 $((n - 1))); do echo "    let v$i = step(v$((i - 1)))?;"; done
      echo "    v$((n - 1))"
      echo "}"
    fi
  } >"$out"
}
generate_flow 0

echo "Fetching dependencies (not counted)..." >&2
for crate in plain engine_only with_weft with_full; do (cd "$work/$crate" && cargo fetch -q); done

# Median "CPU PEAK" of $reps clean builds of crate $1.
clean_builds() {
  local crate=$1 cpus="" peaks=""
  for _ in $(seq 1 "$reps"); do
    rm -rf "$work/$crate/target"
    read -r cpu peak < <(cd "$work/$crate" && measure cargo build -q)
    cpus="$cpus $cpu"
    peaks="$peaks $peak"
  done
  echo "$(tr ' ' '\n' <<<"$cpus" | grep . | median) $(tr ' ' '\n' <<<"$peaks" | grep . | median)"
}

if $crates; then
echo "## A user crate's clean dev build (CPU s = user + system; $reps repetition(s), median)"
echo
echo "| crate | CPU s | × tokio + serde | peak compiler memory |"
echo "|---|---:|---:|---:|"
read -r base base_peak < <(clean_builds plain)
echo "| tokio + serde | $base | 1.0 | $base_peak MiB |"
read -r engine engine_peak < <(clean_builds engine_only)
echo "| weft (default-features = false: macros + engine) + tokio | $engine | $(awk -v a="$engine" -v b="$base" 'BEGIN { printf "%.1f", a / b }') | $engine_peak MiB |"
read -r weft weft_peak < <(clean_builds with_weft)
echo "| weft (default features) + tokio | $weft | $(awk -v a="$weft" -v b="$base" 'BEGIN { printf "%.1f", a / b }') | $weft_peak MiB |"
read -r full full_peak < <(clean_builds with_full)
echo "| weft (features = [\"full\"]) + tokio | $full | $(awk -v a="$full" -v b="$base" 'BEGIN { printf "%.1f", a / b }') | $full_peak MiB |"
echo
fi

if ! $crates; then
  # The crate built once, not measured: the rows below are its rebuilds.
  (cd "$work/with_weft" && cargo build -q)
fi

echo "## Adding a #[flow] of N statements to the built weft crate (the crate's rebuild alone)"
echo
echo "| statements | CPU s | CPU s beyond N = 0 | peak compiler memory | expanded source | per statement | per statement, whitespace collapsed |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
zero=""
for n in $sizes; do
  generate_flow "$n"
  cpus="" peaks=""
  for _ in $(seq 1 "$reps"); do
    touch "$work/with_weft/src/main.rs"
    read -r cpu peak < <(cd "$work/with_weft" && measure cargo build -q)
    cpus="$cpus $cpu"
    peaks="$peaks $peak"
  done
  cpu=$(tr ' ' '\n' <<<"$cpus" | grep . | median)
  peak=$(tr ' ' '\n' <<<"$peaks" | grep . | median)
  [ -z "$zero" ] && zero=$cpu
  # The expansion of the whole crate, as rustc sees it after macros (stable rustc, with the
  # bootstrap switch that lets it print it).
  # A target directory of its own: the switch would make cargo rebuild the measured one.
  (cd "$work/with_weft" && CARGO_TARGET_DIR="$work/expand-target" RUSTC_BOOTSTRAP=1 \
    cargo rustc -q --profile check -- -Zunpretty=expanded >"$work/expanded.rs" 2>/dev/null) || true
  bytes=$(wc -c <"$work/expanded.rs")
  # rustc's pretty-printer indents nested blocks deeply; the same tokens one space apart:
  tight=$(tr -s ' \n' ' ' <"$work/expanded.rs" | wc -c)
  if [ -z "${empty_bytes:-}" ]; then empty_bytes=$bytes empty_tight=$tight; fi
  per="-" per_tight="-"
  if [ "$n" -gt 0 ]; then
    per="$(( (bytes - empty_bytes) / n )) B"
    per_tight="$(( (tight - empty_tight) / n )) B"
  fi
  echo "| $n | $cpu | $(awk -v a="$cpu" -v b="$zero" 'BEGIN { printf "%.1f", a - b }') | $peak MiB | $((bytes / 1024)) KiB | $per | $per_tight |"
done
echo

if $cli; then
  echo "## The weft CLI binary (release, in the repository's target)"
  echo
  (cd "$root" && cargo build -q --release -p weft-cli)
  size=$(stat -c %s "$root/target/release/weft")
  echo "| binary | size |"
  echo "|---|---:|"
  echo "| target/release/weft | $(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }') |"
fi
