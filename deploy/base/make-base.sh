#!/usr/bin/env bash
# Make the local base images from Debian's packages, for machines that reach Debian's archive but
# no image registry. Usage: deploy/base/make-base.sh [--force]
#   localhost/modelport-base:bookworm     debootstrap (minbase) of the release this machine runs,
#                                         with python3, python3-venv, ca-certificates and tini;
#                                         apt's lists, docs and locales removed
#   localhost/modelport-busybox:bookworm  Debian's static busybox alone (sh, ln, ls, sleep): the
#                                         base of modelcar images (`modelport package --modelcar`)
# Both come from one debootstrap and are imported with `podman import`. Skipped when both exist
# (delete them or pass --force to remake them).
# The archive is the one this machine's apt uses (MODELPORT_DEBIAN_MIRROR overrides it).
set -euo pipefail

IMAGE=localhost/modelport-base:bookworm
BUSYBOX_IMAGE=localhost/modelport-busybox:bookworm
SUITE="${MODELPORT_DEBIAN_SUITE:-bookworm}"
PACKAGES="python3,python3-venv,ca-certificates,tini,busybox-static"

if [ "${1:-}" != "--force" ] && podman image exists "$IMAGE" && podman image exists "$BUSYBOX_IMAGE"; then
    echo "make-base: $IMAGE and $BUSYBOX_IMAGE exist; not remade (pass --force to remake them)"
    exit 0
fi
for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || { echo "make-base: $tool not found (apt-get install $tool)" >&2; exit 1; }
done

mirror="${MODELPORT_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    # The first archive (not -security) in this machine's apt sources, deb822 or one-line format.
    mirror=$(
        { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
          grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } \
        | grep -v -e security -e '^$' | grep -i debian | head -n 1 || true
    )
fi
[ -n "$mirror" ] || { echo "make-base: no Debian archive in /etc/apt; set MODELPORT_DEBIAN_MIRROR" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/var/tmp}/modelport-base.XXXXXX")
box=$(mktemp -d "${TMPDIR:-/var/tmp}/modelport-busybox.XXXXXX")
trap 'rm -rf "$root" "$box"' EXIT
echo "make-base: debootstrap $SUITE from $mirror into $root"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    rm -f "$root.log"
    exit 1
}
rm -f "$root.log"

# The busybox image: the static binary and the applets a modelcar runs, nothing else.
mkdir -p "$box/bin" "$box/tmp"
cp "$root/bin/busybox" "$box/bin/busybox"
for applet in sh ln ls sleep cat echo test "["; do ln -s busybox "$box/bin/$applet"; done
chmod 1777 "$box/tmp"
rm -f "$root/bin/busybox"
chroot "$root" dpkg --purge busybox-static >/dev/null 2>&1 || true

# What an image needs no copy of: package lists and caches, docs, man pages, other locales, logs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
find "$root"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
# Point apt at the archive by name only if someone wants to add packages in a derived image.
: >"$root"/etc/apt/sources.list
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$SUITE" >"$root"/etc/apt/sources.list.d/debian.sources

tar --numeric-owner -C "$root" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/usr/bin/python3"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES" \
    - "$IMAGE" >/dev/null
tar --numeric-owner -C "$box" -c . | podman import --quiet \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["sh"]' \
    --message "busybox-static from Debian $SUITE" \
    - "$BUSYBOX_IMAGE" >/dev/null
for image in "$IMAGE" "$BUSYBOX_IMAGE"; do
    echo "make-base: $image ($(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
done
