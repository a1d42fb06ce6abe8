#!/usr/bin/env bash
# Regenerate the gRPC stubs in modelport/protocols/proto/ from inference.proto (`make proto`).
#
# grpcio-tools is pinned, and runs in a venv of its own (.cache/proto-venv): its protoc decides the
# gencode version the stubs demand of the protobuf runtime. 1.78.0 bundles protoc 6.31.1, so the stubs
# load on protobuf 6.31.1 up to 7.x (pyproject: protobuf>=6.31.1,<8), and the *_pb2_grpc.py needs
# grpcio >= 1.78.0. Protoc runs from the repo root so that the stubs import each other as
# modelport.protocols.proto.*.
set -euo pipefail
cd "$(dirname "$0")/.."
GRPCIO_TOOLS_VERSION=1.78.0
TOOLS=.cache/proto-venv
PYTHON=${PYTHON:-python3}
if ! "$TOOLS/bin/python" -c "import grpc_tools, importlib.metadata as m, sys; sys.exit(m.version('grpcio-tools') != '$GRPCIO_TOOLS_VERSION')" 2>/dev/null; then
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi
"$TOOLS/bin/python" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    modelport/protocols/proto/inference.proto
# The messages go in a descriptor pool of their own, not protobuf's default one: Triton's and KServe's
# stubs declare the same `inference.*` symbols, and the default pool refuses a second definition, so
# without this modelport's stubs and tritonclient.grpc could not be imported in one process.
"$TOOLS/bin/python" - <<'PY'
from pathlib import Path

path = Path("modelport/protocols/proto/inference_pb2.py")
text = path.read_text()
default = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
assert text.count(default) == 1, "protoc's output changed: update scripts/gen_proto.sh"
own = (
    "# A pool of its own, not the default one (scripts/gen_proto.sh): tritonclient.grpc and kserve\n"
    "# define the same inference.* symbols, and may be imported in the same process.\n"
    "POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = POOL.AddSerializedFile("
)
path.write_text(text.replace(default, own))
PY
echo "generated: $(ls modelport/protocols/proto/inference_pb2*)"
