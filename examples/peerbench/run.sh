#!/usr/bin/env bash
# dtask beside BullMQ's Rust port in one sitting, through the peers harness in ../shared/peers
# (its README explains every column). Usage: bash examples/peerbench/run.sh [N=50000]
# Builds this crate and the harness's bullmq-rs, starts the harness's private Redis on
# 127.0.0.1:6390, runs 3 reps of each variant alternately, and writes rows to
# target/peer-results/*.tsv (the harness's own results folder is left alone).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS="$HERE/../../../shared/peers"
export RESULTS="$HERE/../../target/peer-results"
mkdir -p "$RESULTS"
source "$PEERS/common.sh"
N=${1:-50000}
(cd "$HERE" && CARGO_TARGET_DIR="$PB/cargo-target-dtask" cargo build --release -q)
(cd "$PEERS/rust-bullmq" && CARGO_TARGET_DIR="$PB/cargo-target" cargo build --release -q)
D="$PB/cargo-target-dtask/release/peerbench-dtask"
B="$PB/cargo-target/release/peerbench-bullmq-rs"
start_redis
for rep in 1 2 3; do
  REP=$rep run_case bullmq-rs bulk-c50    "$N" "$B enqueue $N bulk"    "$B work $N 50"
  REP=$rep run_case dtask     bulk-c50    "$N" "$D enqueue $N bulk"    "$D work $N 50"
  REP=$rep run_case dtask     bulk-c50-ff "$N" "$D enqueue $N bulk ff" "$D work $N 50 ff"
  REP=$rep run_case bullmq-rs addconc-c50 "$N" "$B enqueue $N addconc" "$B work $N 50"
  REP=$rep run_case dtask     conc-c50    "$N" "$D enqueue $N conc"    "$D work $N 50"
done
stop_redis
echo "rows in $RESULTS"
