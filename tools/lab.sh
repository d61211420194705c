#!/usr/bin/env bash
# A lab for people: Debian 12 hosts web1..web3 reachable over SSH.
#
#   tools/lab.sh up     start (or keep) the hosts; safe to run again
#   tools/lab.sh down   remove every container, the network and the key
#
# Host N answers SSH on 127.0.0.1:(2220+N) and publishes its app port (8000) on
# 127.0.0.1:(8080+N), as inventories/lab/hosts.yml describes, and a second app's
# port (8003) on 127.0.0.1:(8180+N).
# The benchmarks run their own, separate lab: LAB_NAME=bench LAB_HOSTS=6 gives
# bench-web1..6 on SSH 2231.., HTTP 8091.. and 8191.., network asgi-bench, key .bench/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAB_NAME=${LAB_NAME:-lab}
LAB_HOSTS=${LAB_HOSTS:-3}
if [ "$LAB_NAME" = lab ]; then
  PREFIX="" SSH_BASE=2220 HTTP_BASE=8080 SECOND_BASE=8180
else
  PREFIX="$LAB_NAME-" SSH_BASE=2230 HTTP_BASE=8090 SECOND_BASE=8190
fi
[ "$LAB_HOSTS" -ge 1 ] && [ "$LAB_HOSTS" -le 9 ] || { echo "lab: LAB_HOSTS must be 1..9" >&2; exit 2; }
NETWORK=asgi-$LAB_NAME
LABEL=io.asgi-deploy.$LAB_NAME=true
KEY=.$LAB_NAME/id_ed25519
APP_PORT=8000 SECOND_PORT=8003
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
  mkdir -p ".$LAB_NAME"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C asgi-deploy-lab -f "$KEY"
  podman network exists "$NETWORK" || podman network create --label "$LABEL" "$NETWORK" > /dev/null
  for n in $(seq "$LAB_HOSTS"); do
    name=${PREFIX}web$n
    if podman container exists "$name"; then
      podman start "$name" > /dev/null
      continue
    fi
    podman run -d --name "$name" --hostname "$name" --label "$LABEL" \
      --network "$NETWORK" --systemd=always --privileged \
      --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 \
      -p "127.0.0.1:$((SSH_BASE + n)):22" -p "127.0.0.1:$((HTTP_BASE + n)):$APP_PORT" \
      -p "127.0.0.1:$((SECOND_BASE + n)):$SECOND_PORT" \
      -v "$PWD/$KEY.pub:/root/.ssh/authorized_keys:ro" \
      -v "$PWD/$KEY.pub:/home/deploy/.ssh/authorized_keys:ro" \
      "$image" /lib/systemd/systemd > /dev/null
  done
  for n in $(seq "$LAB_HOSTS"); do
    port=$((SSH_BASE + n))
    deadline=$((SECONDS + 90))
    until ssh_ok "$port"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "lab: ${PREFIX}web$n does not answer SSH on 127.0.0.1:$port" >&2
        podman logs --tail 30 "${PREFIX}web$n" >&2 || true
        exit 1
      fi
      sleep 0.5
    done
  done
  echo "lab: ${PREFIX}web1..${PREFIX}web$LAB_HOSTS answer SSH on 127.0.0.1:$((SSH_BASE + 1))-$((SSH_BASE + LAB_HOSTS))"
}

down() {
  local ids
  ids=$(podman ps -a -q --filter "label=$LABEL")
  [ -z "$ids" ] || podman rm -f -t 5 $ids > /dev/null
  ! podman network exists "$NETWORK" || podman network rm "$NETWORK" > /dev/null
  rm -rf ".$LAB_NAME"
  echo "lab: removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
