# Pod tests (make pod-test): podman, runc, catatonit, debootstrap and tini from Debian's packages,
# and podman's containers.conf for this kind of machine (runc, cgroupfs, ulimits within the hard
# limits). Sourced by `make test` with cwd = repo root and `set -euo pipefail`; quick when done.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    bash deploy/podman/setup.sh >/dev/null
else
    echo "podman.sh: not root on Debian; install podman, runc, catatonit, debootstrap and tini yourself" >&2
fi
