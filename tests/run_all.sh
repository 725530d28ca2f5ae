#!/usr/bin/env bash
# `make test`: the whole suite. Starts the project's single-node Slurm when this machine can
# (root + apt, as in CI) so the Slurm tests run for real; elsewhere they are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
.venv/bin/hsd data || echo "note: prepared data not linked (tests that need it will say so)"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -f tests/slurm/slurm.sh ]; then
  bash tests/slurm/slurm.sh up
  export HSD_SLURM_UP=1
fi
exec $PY -m pytest tests -q "$@"
