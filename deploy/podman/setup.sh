#!/usr/bin/env bash
# Install and configure podman for the image build and the pod tests (Debian, as root).
# Usage: deploy/podman/setup.sh   (idempotent; quick when done already)
#
# What a machine like the CI one needs: runc as the runtime, cgroupfs (no systemd in the
# machine), and default ulimits no higher than the machine's hard limits: podman's built-in
# default asks for more open files than such a sandbox allows, and runc then fails with
# "error setting rlimit type 7: operation not permitted".
set -euo pipefail

PACKAGES=(podman runc catatonit debootstrap tini uidmap containernetworking-plugins iptables)
CONF=/etc/containers/containers.conf
MARKER="# written by modelport deploy/podman/setup.sh"

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "podman setup: missing ${missing[*]}; run as root" >&2; exit 1; }
    echo "podman setup: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 20000 ] && nofile=20000
# nproc must be set too (podman's default asks for more), and lower than the hard limit shows:
# here 32768 worked and 50000 was refused with a hard limit of 96367, so stay well below both.
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] && nproc=16384
[ "$nproc" -gt 16384 ] && nproc=16384

if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    echo "podman setup: $CONF exists and is not ours; left as it is" >&2
else
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF" <<CONFEOF
$MARKER
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONFEOF
fi
podman --version
