#!/usr/bin/env bash
# Runs dtask's whole test suite: formatting, lints, unit, integration, UI and doc tests.
# Every test that needs Redis starts its own redis-server on 127.0.0.1 and stops it by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-redis.sh
echo "== redis: $(redis-server --version)"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== torture run, short mode (faults injected into real workers and a real redis-server)"
cargo run --release -q -p dtask-torture -- --mode short
echo "== benchmark smoke run (small sizes; the figures are not the point here)"
cargo run --release -q -p dtask-bench -- --sizes 2000 --concurrency 64 --scenarios 1,2,3,4 --no-baseline > /dev/null
echo "== all checks passed"
