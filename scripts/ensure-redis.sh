#!/usr/bin/env bash
# Installs redis-server with apt when it is missing (Debian/Ubuntu). Sourced by the other scripts.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is not installed; installing it with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
