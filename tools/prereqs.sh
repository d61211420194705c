#!/usr/bin/env bash
# The system packages the lab and the tests need, on Debian 12 or 13 (or Ubuntu).
#
#   tools/prereqs.sh check     say what is missing, and the one command that installs it (exit 1)
#   tools/prereqs.sh install   install what is missing with apt (root); `make prereqs` runs this
#
# Debian 13 has them all under the same names. Ubuntu too, but its mirror has no
# Debian: the lab images then need LAB_MIRROR (images/build.sh says so at once).
set -euo pipefail

# podman with runc (crun refuses hybrid cgroups), debootstrap for the images,
# ssh for the lab, wrk and chromium for the benchmarks and the front door's
# browser tests, certutil (libnss3-tools) to trust the lab's test CA there.
PACKAGES=(podman runc debootstrap openssh-client make git wrk chromium libnss3-tools python3-venv)

missing() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || echo "$pkg"
  done
}

case "${1:-check}" in
  check)
    mapfile -t absent < <(missing)
    if [ ${#absent[@]} -gt 0 ]; then
      echo "prereqs: missing ${absent[*]}; install them with: sudo make prereqs" >&2
      exit 1
    fi
    ;;
  install)
    mapfile -t absent < <(missing)
    if [ ${#absent[@]} -gt 0 ]; then
      echo "prereqs: installing ${absent[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${absent[@]}" > /dev/null
    fi
    ;;
  *) echo "usage: $0 check|install" >&2; exit 2 ;;
esac
