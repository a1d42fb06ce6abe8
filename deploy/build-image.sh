#!/usr/bin/env bash
# Build the modelport image with podman: `make image` runs this from the repository root.
# Usage: deploy/build-image.sh [TAG]          (default localhost/modelport:dev)
#        deploy/build-image.sh --torch [TAG]  (default localhost/modelport:dev-torch: the image
#                                             above plus torch, for the pytorch pod test)
#
# The base: $MODELPORT_BASE_IMAGE when set; else the public base named in deploy/Dockerfile when
# it is present or can be pulled; else the local Debian base, made first by
# deploy/base/make-base.sh when missing (and kept: later builds reuse it).
# The build reaches the package index with host networking, the host's CA bundle and its
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS; nothing of them lands in the image.
set -euo pipefail
cd "$(dirname "$0")/.."

variant=
if [ "${1:-}" = "--torch" ]; then
    variant=torch
    shift
fi
IMAGE=localhost/modelport:dev
TAG="${1:-$IMAGE${variant:+-$variant}}"
LOCAL_BASE=localhost/modelport-base:bookworm
PUBLIC_BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' deploy/Dockerfile | head -n 1)

base="${MODELPORT_BASE_IMAGE:-}"
if [ -n "$variant" ]; then
    podman image exists "$IMAGE" || bash "$0" "$IMAGE"
elif [ -z "$base" ]; then
    if podman image exists "$PUBLIC_BASE" || podman pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
        base="$PUBLIC_BASE"
    else
        echo "build-image: $PUBLIC_BASE cannot be pulled here; using $LOCAL_BASE"
        bash deploy/base/make-base.sh
        base="$LOCAL_BASE"
    fi
fi

if [ -n "$variant" ]; then
    args=(--network host --build-arg "IMAGE=$IMAGE" -f "deploy/test/$variant.Containerfile" -t "$TAG")
    base="$IMAGE"
else
    args=(--network host --build-arg "BASE_IMAGE=$base" -f deploy/Dockerfile -t "$TAG")
fi
ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
if [ -f "$ca" ]; then
    args+=(-v "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
    [ -z "${!v:-}" ] || args+=(--build-arg "$v=${!v}")
done
# Local wheel folders (file paths) are mounted at the same path so that pip finds them.
links=()
dirs="${PIP_FIND_LINKS:-}"
# The torch variant takes torch's CPU wheel from a local folder when there is one (PyPI's default
# torch is a multi-GB CUDA build): MODELPORT_WHEELS, by default /opt/wheels.
[ -z "$variant" ] || dirs="$dirs ${MODELPORT_WHEELS:-/opt/wheels}"
for dir in $dirs; do
    case " ${links[*]} " in *" $dir "*) continue ;; esac
    if [ -d "$dir" ]; then
        args+=(-v "$dir:$dir:ro")
        links+=("$dir")
    fi
done
[ "${#links[@]}" -eq 0 ] || args+=(--build-arg "PIP_FIND_LINKS=${links[*]}")

echo "build-image: $TAG from $base"
start=$(date +%s)
podman build "${args[@]}" .
echo "build-image: $TAG built in $(( $(date +%s) - start )) s, $(podman image inspect --format '{{.Size}}' "$TAG" | numfmt --to=iec)"
