#!/usr/bin/env bash
# Build the systemd-capable Debian test images with debootstrap + podman import.
#
#   images/build.sh [--print-tag] [debian12|debian13|debian12-postgresql ...]   (default: all)
#
# debian12-postgresql is Debian 12 with Debian's PostgreSQL server: the database
# host (db1) the example Django site's web hosts share.
#
# Each image is tagged with a hash of this recipe, so it is rebuilt only when
# the recipe changes; an existing tag is a no-op. The Debian mirror is read
# from the host's apt sources on a Debian machine; elsewhere (Ubuntu, say) set
# LAB_MIRROR to a Debian mirror, and install debian-archive-keyring.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=localhost/asgi-deploy-lab
# Everything the tests need on a host; no getty or udev.
# nginx: the front door (roles/proxy) the deploy scenario puts in front of apps.
packages=systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,iproute2,procps,curl,ca-certificates,sudo,openssh-server,nginx
masked_units=(
  getty@.service serial-getty@.service console-getty.service getty.target
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service
  systemd-firstboot.service systemd-remount-fs.service systemd-modules-load.service
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer
)

suite_of() {
  case "$1" in
    debian12|debian12-postgresql) echo bookworm ;;
    debian13) echo trixie ;;
    *) echo "unknown image '$1' (choose debian12, debian13 or debian12-postgresql)" >&2; return 1 ;;
  esac
}

# Debian packages a variant adds to the base image.
extra_packages_of() {
  case "$1" in
    *-postgresql) echo ",postgresql" ;;
  esac
}

recipe_hash() {
  sha256sum "$here/build.sh" | cut -c1-12
}

tag_of() {
  echo "$repo:$1-$(recipe_hash)"
}

host_mirror() {
  if [ -n "${LAB_MIRROR:-}" ]; then echo "$LAB_MIRROR"; return; fi
  local id
  id=$(. /etc/os-release 2>/dev/null && echo "${ID:-unknown}")
  if [ "$id" != debian ]; then
    echo "images: this machine runs $id, whose apt mirror has no Debian release: set LAB_MIRROR to a Debian mirror" \
      "(and install debian-archive-keyring), e.g. LAB_MIRROR=<your Debian mirror URL> make images" >&2
    return 1
  fi
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null |
          awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
  fi
  [ -n "$uri" ] || { echo "no Debian mirror in the host's apt sources; set LAB_MIRROR" >&2; return 1; }
  echo "$uri"
}

build_one() {
  local name=$1 suite tag rootfs started
  suite=$(suite_of "$name")
  tag=$(tag_of "$name")
  if podman image exists "$tag"; then
    echo "images: $tag is up to date"
    return 0
  fi
  started=$(date +%s)
  rootfs=$(mktemp -d "/var/tmp/asgi-lab-$name.XXXXXX")
  # shellcheck disable=SC2064  # expand now: the trap must remove this rootfs
  trap "rm -rf '$rootfs'" RETURN
  echo "images: debootstrap $suite into $rootfs"
  debootstrap --variant=minbase --include="$packages$(extra_packages_of "$name")" "$suite" "$rootfs" "$(host_mirror)" \
    > "$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; return 1; }
  rm -f "$rootfs.log"

  # One image serves many containers: let each boot make its own identity
  # (machine-id, SSH host keys).
  : > "$rootfs/etc/machine-id"
  rm -f "$rootfs"/etc/ssh/ssh_host_* "$rootfs/var/lib/dbus/machine-id"
  mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
  cat > "$rootfs/etc/systemd/system/ssh.service.d/host-keys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
  # systemd hands a service its credentials (LoadCredential=) through a mount
  # under /run/credentials, which needs /run to be a shared mount, as it is on
  # any host (systemd's CONTAINER_INTERFACE); podman mounts it private.
  cat > "$rootfs/etc/systemd/system/run-shared.service" <<'UNIT'
[Unit]
Description=Make /run a shared mount, as on a host (credentials need it)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/mount --make-shared /run

[Install]
WantedBy=sysinit.target
UNIT
  chroot "$rootfs" systemctl enable run-shared.service >/dev/null 2>&1
  for unit in "${masked_units[@]}"; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  chroot "$rootfs" systemctl enable ssh.service >/dev/null 2>&1
  chroot "$rootfs" systemctl set-default multi-user.target >/dev/null 2>&1
  echo 'PermitRootLogin prohibit-password' > "$rootfs/etc/ssh/sshd_config.d/lab.conf"
  # Fleets are run by an unprivileged SSH user with sudo: so is the lab (tests
  # connect as `deploy` with become).
  chroot "$rootfs" useradd --create-home --shell /bin/bash deploy
  install -d -m 0700 -o 1000 -g 1000 "$rootfs/home/deploy/.ssh"
  echo 'deploy ALL=(ALL) NOPASSWD: ALL' > "$rootfs/etc/sudoers.d/deploy"
  chmod 0440 "$rootfs/etc/sudoers.d/deploy"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
         "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
         "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log

  tar --numeric-owner --xattrs -C "$rootfs" -c . |
    podman import --quiet \
      --change 'CMD ["/lib/systemd/systemd"]' \
      --change 'STOPSIGNAL SIGRTMIN+3' \
      --change 'ENV container=podman' \
      - "$tag" > /dev/null
  echo "images: built $tag in $(( $(date +%s) - started ))s"
  # Images of an older recipe are dead weight once their successor exists.
  podman images --format '{{.Repository}}:{{.Tag}}' "$repo" |
    grep -E "^$repo:$name-[0-9a-f]{12}$" | grep -vxF "$tag" | xargs -r podman rmi > /dev/null || true
}

print_tag=false
names=()
for arg in "$@"; do
  case "$arg" in
    --print-tag) print_tag=true ;;
    *) names+=("$arg") ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(debian12 debian13 debian12-postgresql)

if $print_tag; then
  for name in "${names[@]}"; do suite_of "$name" > /dev/null; tag_of "$name"; done
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "images: debootstrap and rootful podman need root" >&2; exit 1; }
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/../.config/containers/containers.conf}"
for name in "${names[@]}"; do build_one "$name"; done
