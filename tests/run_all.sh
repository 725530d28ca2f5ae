#!/usr/bin/env bash
# `make test`: the whole suite. Starts the project's multi-node Slurm (tests/slurm/README.md) when this machine can
# (root + apt, as in CI) so the Slurm tests run for real; elsewhere they are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
.venv/bin/hsd data || echo "note: prepared data not linked (tests that need it will say so)"
# Headless Chromium renders the HTML reports in tests/integration/test_report_html.py.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    || echo "note: could not install chromium (the HTML rendering test will say so)"
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -f tests/slurm/slurm.sh ]; then
  bash tests/slurm/slurm.sh up
  export HSD_SLURM_UP=1
fi
exec $PY -m pytest tests -q "$@"
