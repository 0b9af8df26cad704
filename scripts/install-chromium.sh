#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (and a Japanese font, so the report's screenshot shows
# the corpus text instead of empty boxes) for the report-rendering test (test/eval). Idempotent:
# returns at once when $EMBEDFLOW_CHROMIUM (default /usr/bin/chromium) and a Japanese font are there.
set -euo pipefail
chromium="${EMBEDFLOW_CHROMIUM:-/usr/bin/chromium}"
have_ja_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ja 2>/dev/null)" ]; }
if [ -x "$chromium" ] && have_ja_font; then
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
echo "install-chromium: installing chromium and fonts-ipafont-gothic with apt-get (one time)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-ipafont-gothic fontconfig >/dev/null
"$chromium" --version >&2 2>/dev/null || true
