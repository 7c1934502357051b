# Sourced by build.sh and the image test: sets PODMAN_GLOBAL and PODMAN_LIMITS to the options
# this host needs to run containers, or to nothing where plain `podman run` works.
#
# Seen on a sandboxed Debian 12 host (cgroup v1 only, no CAP_SYS_RESOURCE): crun refuses the
# cgroup layout ("cgroups in hybrid mode not supported"), and both runtimes fail to raise
# RLIMIT_NOFILE/RLIMIT_NPROC to podman's defaults. runc with limits no higher than the host's
# works. Override with ABGATE_PODMAN_GLOBAL / ABGATE_PODMAN_LIMITS.
# Needs: PODMAN_PROBE_IMAGE, an image to probe with (any image with /bin/true).
_probe=$PODMAN_PROBE_IMAGE
if [ -n "${ABGATE_PODMAN_GLOBAL+x}${ABGATE_PODMAN_LIMITS+x}" ]; then
  PODMAN_GLOBAL=${ABGATE_PODMAN_GLOBAL:-}
  PODMAN_LIMITS=${ABGATE_PODMAN_LIMITS:-}
elif podman run --rm --network none "$_probe" true >/dev/null 2>&1; then
  PODMAN_GLOBAL=
  PODMAN_LIMITS=
else
  _nofile=$(ulimit -Hn)
  [ "$_nofile" = unlimited ] && _nofile=65536
  PODMAN_GLOBAL="--runtime runc"
  PODMAN_LIMITS="--ulimit nofile=$_nofile:$_nofile --ulimit nproc=4096:4096"
  if ! podman $PODMAN_GLOBAL run --rm --network none $PODMAN_LIMITS "$_probe" true >/dev/null 2>&1; then
    echo "podman cannot run containers on this host (tried crun, then runc with lower limits)" >&2
    return 2 2>/dev/null || exit 2
  fi
fi
