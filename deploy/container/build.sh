#!/bin/sh
# Build abgate's images with podman where no image registry is reachable.
#
#   deploy/container/build.sh [gateway|batch ...]        (default: gateway)
#
# The base image is made from a Debian root file system (mmdebstrap: python3, python3-venv,
# ca-certificates) instead of pulling python:3.11-slim, and cached:
#   - the root file system tarball in $ABGATE_IMAGE_CACHE (default ~/.cache/abgate/images),
#     named after a hash of its recipe (the lines below), so a changed recipe makes a new one;
#   - the imported base and every layer of the Containerfile in podman's own store: a rebuild
#     after a code change runs only the last, small layer of each stage.
# Where a registry is reachable, skip all this: `podman build --target gateway .` (or docker).
#
# Environment: ABGATE_IMAGE_TAG (default "local"), ABGATE_BUILD_CA (a CA bundle for pip inside
# the build, for hosts behind an intercepting proxy; default: the host's bundle when the host
# trusts CAs of its own in /usr/local/share/ca-certificates).
set -eu
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${ABGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# libstdc++6, netbase, tzdata: in python:3.11-slim too (numpy, pyarrow, grpc need libstdc++).
PACKAGES=python3,python3-venv,ca-certificates,libstdc++6,netbase,tzdata
CACHE=${ABGATE_IMAGE_CACHE:-$HOME/.cache/abgate/images}
TAG=${ABGATE_IMAGE_TAG:-local}
RECIPE="$SUITE $PACKAGES essential nodoc-v1"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)
BASE=localhost/abgate-base:$SUITE-$KEY

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: $tool is not installed (apt-get install podman buildah mmdebstrap runc)" >&2
    exit 2
  }
done

if ! podman image exists "$BASE"; then
  mkdir -p "$CACHE"
  tarball="$CACHE/rootfs-$SUITE-$KEY.tar"
  if [ ! -s "$tarball" ]; then
    echo "build.sh: making the Debian $SUITE root file system (about a minute)" >&2
    mmdebstrap --quiet --format=tar --variant=essential --include="$PACKAGES" \
      --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$SUITE" "$tarball.tmp" "$MIRROR"
    mv "$tarball.tmp" "$tarball"
  fi
  podman import --quiet --change 'CMD ["python3"]' "$tarball" "$BASE" >/dev/null
fi

PODMAN_PROBE_IMAGE=$BASE
. deploy/container/podman-host.sh

CA=${ABGATE_BUILD_CA:-}
if [ -z "$CA" ] && ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  CA=/etc/ssl/certs/ca-certificates.crt
fi
[ $# -gt 0 ] || set -- gateway
for target in "$@"; do
  if [ -n "$CA" ]; then
    podman $PODMAN_GLOBAL build $PODMAN_LIMITS --quiet --format docker --layers --target "$target" \
      --build-arg BASE_IMAGE="$BASE" \
      --build-arg PIP_EXTRA_ARGS="--cert /etc/ssl/certs/host-ca.crt" \
      --volume "$CA:/etc/ssl/certs/host-ca.crt:ro" \
      -f Containerfile -t "localhost/abgate/$target:$TAG" . >/dev/null
  else
    podman $PODMAN_GLOBAL build $PODMAN_LIMITS --quiet --format docker --layers --target "$target" \
      --build-arg BASE_IMAGE="$BASE" \
      -f Containerfile -t "localhost/abgate/$target:$TAG" . >/dev/null
  fi
  echo "localhost/abgate/$target:$TAG"
done
