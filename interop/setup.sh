#!/usr/bin/env bash
# Installs what the interop tests need, once: a Python venv with the Python producer's one
# dependency (redis-py, from PyPI; the tests run the producer from interop/python), and the
# Node producer's packages (ioredis, from npm). Prints the venv's python. Safe to call from
# tests running at once (a lock).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${DTASK_INTEROP_DIR:-$PWD/target/interop}"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ ! -x "$dir/venv/bin/python" ] || ! "$dir/venv/bin/python" -c "import redis" 2>/dev/null; then
  python3 -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q --disable-pip-version-check "redis>=4.2" >&2
fi
if [ ! -d interop/node/node_modules/ioredis ]; then
  (cd interop/node && npm install --no-audit --no-fund --silent >&2)
fi
echo "$dir/venv/bin/python"
