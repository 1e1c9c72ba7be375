#!/usr/bin/env bash
# Runs the example web app with an embedded worker. Uses the Redis at DTASK_REDIS_URL
# (default redis://127.0.0.1:6379); when none answers there, installs redis-server if needed
# and starts one on 127.0.0.1:6379, which is stopped (by pid) when the demo exits.
set -euo pipefail
cd "$(dirname "$0")/.."
DTASK_NO_BROWSER=1 source scripts/ensure-redis.sh
export DTASK_REDIS_URL="${DTASK_REDIS_URL:-redis://127.0.0.1:6379}"
export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:3000}"
hostport="${DTASK_REDIS_URL#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
port="${hostport##*:}"
if ! redis-cli -u "$DTASK_REDIS_URL" ping >/dev/null 2>&1; then
  dir="$(mktemp -d)"
  echo "== no Redis at $DTASK_REDIS_URL; starting redis-server on 127.0.0.1:$port (data in $dir)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
    --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null || true' EXIT
fi
# Built first (so the hints below come after the build's output), then run through cargo,
# which knows where the binary is (CARGO_TARGET_DIR or build.target-dir may move it).
cargo build -q -p dtask-example
echo "== dtask demo on http://$LISTEN_ADDR (Ctrl-C to stop). In another terminal, try:"
echo "   curl -s http://$LISTEN_ADDR/"
echo "   curl -s -X POST http://$LISTEN_ADDR/thumbnails -H 'content-type: application/json' -d '{\"image_url\":\"https://example.com/cat.png\",\"width\":320}'"
echo "   curl -s http://$LISTEN_ADDR/jobs/<job_id>"
cargo run -q -p dtask-example -- "$@"
