#!/usr/bin/env bash
# A RocketMQ cluster on one machine over loopback: RocketMQ's name server on 9876 and two
# broker groups of broker-lite, broker-a and broker-b, each a SYNC_MASTER and its slave
# (the broker-*.conf files beside this script).
#
#   examples/cluster/cluster.sh start  [DIR]  starts whatever is not running yet
#   examples/cluster/cluster.sh stop   [DIR]  stops everything (SIGTERM: brokers unregister)
#   examples/cluster/cluster.sh status [DIR]  what runs, and the cluster as the name server lists it
#
# DIR (default ./cluster) holds each process's store, log and pid file. Needs the name
# server, rocketmq-namesrv-rust (cargo install rocketmq-namesrv --version =1.0.0 --locked),
# and broker-lite: $BROKER_LITE, else target/release/broker-lite of this checkout, else
# broker-lite on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=${1:-}
dir=${2:-./cluster}
namesrv_port=9876
brokers_up="broker-a-0 broker-b-0 broker-a-1 broker-b-1"   # masters first
brokers_down="broker-a-1 broker-b-1 broker-a-0 broker-b-0" # slaves first

broker_lite=${BROKER_LITE:-}
if [ -z "$broker_lite" ]; then
  if [ -x "$here/../../target/release/broker-lite" ]; then
    broker_lite="$here/../../target/release/broker-lite"
  else
    broker_lite=$(command -v broker-lite || true)
  fi
fi

# Alive and not a zombie (a killed process nobody has reaped yet still answers kill -0).
alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
running() { [ -f "$dir/$1.pid" ] && alive "$(cat "$dir/$1.pid")"; }

wait_for() { # seconds, what, command...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "cluster.sh: $what did not happen within $seconds s (logs in $dir)" >&2
  exit 1
}

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if ! command -v rocketmq-namesrv-rust >/dev/null; then
    echo "cluster.sh: rocketmq-namesrv-rust not found; install RocketMQ's name server with" >&2
    echo "  cargo install rocketmq-namesrv --version =1.0.0 --locked" >&2
    exit 1
  fi
  if [ -z "$broker_lite" ]; then
    echo "cluster.sh: broker-lite not found; build it with cargo build --release -p broker-lite" >&2
    exit 1
  fi
  if running namesrv; then
    echo "namesrv: running (pid $(cat "$dir/namesrv.pid"))"
  else
    mkdir -p "$dir/namesrv"
    # exec: the pid file names the process itself, not a shell around it.
    (cd "$dir/namesrv" && HOME="$dir/namesrv" exec nohup rocketmq-namesrv-rust \
      --listenPort "$namesrv_port" --bindAddress 127.0.0.1 --rocketmqHome "$dir/namesrv" \
      > "$dir/namesrv.log" 2>&1) &
    echo $! > "$dir/namesrv.pid"
    wait_for 30 "the name server listening on $namesrv_port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$namesrv_port"
    echo "namesrv: started on 127.0.0.1:$namesrv_port (pid $(cat "$dir/namesrv.pid"))"
  fi
  for b in $brokers_up; do
    if running "$b"; then
      echo "$b: running (pid $(cat "$dir/$b.pid"))"
      continue
    fi
    rm -f "$dir/$b.out"
    (cd "$dir" && exec nohup "$broker_lite" -c "$here/$b.conf" > "$b.out" 2> "$b.log") &
    echo $! > "$dir/$b.pid"
    wait_for 30 "$b listening" grep -q 'listening on' "$dir/$b.out"
    echo "$b: $(head -1 "$dir/$b.out")"
  done
  # Brokers register at start and then every registerNameServerPeriod (30 s): a name
  # server restarted under running brokers has them all back within one period.
  wait_for 60 "four brokers registered" \
    bash -c "[ \$('$broker_lite' cluster --namesrv 127.0.0.1:$namesrv_port | wc -l) = 4 ]"
  "$broker_lite" cluster --namesrv "127.0.0.1:$namesrv_port"
}

stop_one() {
  local name=$1
  running "$name" || { rm -f "$dir/$name.pid"; return 0; }
  local pid
  pid=$(cat "$dir/$name.pid")
  kill -TERM "$pid"
  for _ in $(seq 1 600); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    echo "$name: still running after 60 s; killing it" >&2
    kill -KILL "$pid"
  fi
  rm -f "$dir/$name.pid"
  echo "$name: stopped"
}

case "$action" in
  start) start ;;
  stop)
    for b in $brokers_down; do stop_one "$b"; done
    stop_one namesrv
    ;;
  status)
    for p in namesrv $brokers_up; do
      if running "$p"; then echo "$p: running (pid $(cat "$dir/$p.pid"))"; else echo "$p: not running"; fi
    done
    if running namesrv && [ -n "$broker_lite" ]; then
      "$broker_lite" cluster --namesrv "127.0.0.1:$namesrv_port"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
