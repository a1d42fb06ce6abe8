# gRPC tests: KServe's own gRPC client (kserve.InferenceGRPCClient) in a venv of its own, because the
# kserve package pins pandas and protobuf below what .venv has (tests/protocols/test_grpc_kserve.py runs it
# as a subprocess). Sourced by `make test` with cwd = repo root, $VENV set and `set -euo pipefail`;
# quick when already installed.
MODELPORT_KSERVE_VERSION="${MODELPORT_KSERVE_VERSION:-0.21.0}"
KSERVE_VENV=.cache/kserve-venv
if ! "$KSERVE_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kserve') != '$MODELPORT_KSERVE_VERSION')" 2>/dev/null; then
    rm -rf "$KSERVE_VENV"
    "$VENV/bin/python" -m venv "$KSERVE_VENV"
    "$KSERVE_VENV/bin/python" -m pip install -q --upgrade pip
    "$KSERVE_VENV/bin/python" -m pip install -q "kserve==${MODELPORT_KSERVE_VERSION}"
fi
