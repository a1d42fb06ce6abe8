#!/usr/bin/env bash
# Set up everything the test suite needs: the package with its test extra, torch
# (CPU, for the pytorch model tests) and each area's extra servers (scripts/setup.d/).
set -euo pipefail
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e '.[test]'
"$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
export VENV
for snippet in scripts/setup.d/*.sh; do
    [ -e "$snippet" ] || continue
    echo "setup: $snippet"
    # shellcheck source=/dev/null
    source "$snippet"
done
