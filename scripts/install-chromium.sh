#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the report-rendering test (test/eval). Idempotent:
# returns at once when /usr/bin/chromium (or $EMBEDFLOW_CHROMIUM) is already there.
set -euo pipefail
chromium="${EMBEDFLOW_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: apt-get not found; install Chromium yourself and set EMBEDFLOW_CHROMIUM to its path" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
    echo "install-chromium: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi
echo "install-chromium: installing chromium with apt-get (one time)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$chromium" --version >&2
