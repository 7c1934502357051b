#!/bin/sh
# Build abgate's images with podman where no image registry is reachable.
#
#   deploy/container/build.sh [gateway|batch ...]        (default: gateway)
#
# The two base images are made from Debian root file systems instead of pulling python:3.11-slim
# (runtime) and python:3.11 (build), and cached:
#   - the root file system tarballs in $ABGATE_IMAGE_CACHE (default ~/.cache/abgate/images),
#     each named after a hash of its recipe (the lines below), so a changed recipe makes a new one;
#   - the imported bases and every layer of the Containerfile in podman's own store: a rebuild
#     after a code change runs only the last, small layer of each stage.
# The build base adds a C compiler and Python's and OpenSSL's headers (setup.py compiles the
# exposure encoder and the assignment hash); the images are the runtime base plus the venv.
# Where a registry is reachable, skip all this: `podman build --target gateway .` (or docker).
#
# Environment: ABGATE_IMAGE_TAG (default "local"), ABGATE_BUILD_CA (a CA bundle for pip inside
# the build, for hosts behind an intercepting proxy; default: the host's bundle when the host
# trusts CAs of its own in /usr/local/share/ca-certificates).
set -eu
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${ABGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Runtime: python3 (its libpython3.11-stdlib brings libssl3, the hash's libcrypto);
# libstdc++6, netbase, tzdata: in python:3.11-slim too (numpy, pyarrow, grpc need libstdc++).
# No python3-venv: the venv is made in the build base and copied.
PACKAGES=python3,ca-certificates,libstdc++6,netbase,tzdata
# Build: the same, the venv module, gcc and the headers of libc, Python and OpenSSL.
BUILD_PACKAGES=$PACKAGES,python3-venv,python3-dev,gcc,libc6-dev,libssl-dev
CACHE=${ABGATE_IMAGE_CACHE:-$HOME/.cache/abgate/images}
TAG=${ABGATE_IMAGE_TAG:-local}

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: $tool is not installed (apt-get install podman buildah mmdebstrap runc)" >&2
    exit 2
  }
done

# base_image NAME PACKAGES: the image localhost/NAME:SUITE-KEY of a root file system with
# PACKAGES, made (about a minute) and imported unless podman has it already.
base_image() {
  recipe="$SUITE $2 essential nodoc-v1"
  key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
  image=localhost/$1:$SUITE-$key
  if ! podman image exists "$image"; then
    mkdir -p "$CACHE"
    tarball="$CACHE/rootfs-$SUITE-$key.tar"
    if [ ! -s "$tarball" ]; then
      echo "build.sh: making the Debian $SUITE root file system of $1 (about a minute)" >&2
      mmdebstrap --quiet --format=tar --variant=essential --include="$2" \
        --aptopt='Acquire::Languages "none"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$SUITE" "$tarball.tmp" "$MIRROR" >&2
      mv "$tarball.tmp" "$tarball"
    fi
    podman import --quiet --change 'CMD ["python3"]' "$tarball" "$image" >/dev/null
  fi
  echo "$image"
}
BASE=$(base_image abgate-base "$PACKAGES")
BUILD_BASE=$(base_image abgate-buildbase "$BUILD_PACKAGES")

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
      --build-arg BASE_IMAGE="$BASE" --build-arg BUILD_BASE_IMAGE="$BUILD_BASE" \
      --build-arg PIP_EXTRA_ARGS="--cert /etc/ssl/certs/host-ca.crt" \
      --volume "$CA:/etc/ssl/certs/host-ca.crt:ro" \
      -f Containerfile -t "localhost/abgate/$target:$TAG" . >/dev/null
  else
    podman $PODMAN_GLOBAL build $PODMAN_LIMITS --quiet --format docker --layers --target "$target" \
      --build-arg BASE_IMAGE="$BASE" --build-arg BUILD_BASE_IMAGE="$BUILD_BASE" \
      -f Containerfile -t "localhost/abgate/$target:$TAG" . >/dev/null
  fi
  echo "localhost/abgate/$target:$TAG"
done
