#!/usr/bin/env bash
# A lab for people: three Debian 12 hosts web1..web3 reachable over SSH.
#
#   tools/lab.sh up     start (or keep) the hosts; safe to run again
#   tools/lab.sh down   remove every container, the network and the key
#
# Host N answers SSH on 127.0.0.1:222N and publishes its app port (8000) on
# 127.0.0.1:808N, as inventories/lab/hosts.yml describes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOSTS=(web1 web2 web3)
NETWORK=asgi-lab
LABEL=io.asgi-deploy.lab=true
KEY=.lab/id_ed25519
APP_PORT=8000
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/.config/containers/containers.conf}"

ssh_ok() {  # port
  ssh -i "$KEY" -p "$1" -o BatchMode=yes -o ConnectTimeout=2 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    root@127.0.0.1 true 2>/dev/null
}

up() {
  local image n name port deadline
  image=$(images/build.sh --print-tag debian12)
  images/build.sh debian12
  mkdir -p .lab
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C asgi-deploy-lab -f "$KEY"
  podman network exists "$NETWORK" || podman network create --label "$LABEL" "$NETWORK" > /dev/null
  for n in 1 2 3; do
    name=web$n
    if podman container exists "$name"; then
      podman start "$name" > /dev/null
      continue
    fi
    podman run -d --name "$name" --hostname "$name" --label "$LABEL" \
      --network "$NETWORK" --systemd=always --privileged \
      --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 \
      -p "127.0.0.1:222$n:22" -p "127.0.0.1:808$n:$APP_PORT" \
      -v "$PWD/$KEY.pub:/root/.ssh/authorized_keys:ro" \
      "$image" /lib/systemd/systemd > /dev/null
  done
  for n in 1 2 3; do
    port=222$n
    deadline=$((SECONDS + 90))
    until ssh_ok "$port"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "lab: web$n does not answer SSH on 127.0.0.1:$port" >&2
        podman logs --tail 30 "web$n" >&2 || true
        exit 1
      fi
      sleep 0.5
    done
  done
  echo "lab: web1..web3 answer SSH on 127.0.0.1:2221-2223 (inventory: inventories/lab/hosts.yml)"
}

down() {
  local ids
  ids=$(podman ps -a -q --filter "label=$LABEL")
  [ -z "$ids" ] || podman rm -f -t 5 $ids > /dev/null
  ! podman network exists "$NETWORK" || podman network rm "$NETWORK" > /dev/null
  rm -rf .lab
  echo "lab: removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
