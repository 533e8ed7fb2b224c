#!/usr/bin/env bash
# Runs the crates.io RocketMQ client (rocketmq-client-rust 1.0, unmodified) against
# broker-lite through its built-in route service, in three modes: JSON headers with
# SEND_MESSAGE (the client's default), binary ROCKETMQ headers, and SEND_MESSAGE_V2
# (sendSmartMsg). Each mode sends sync/async/oneway/batch messages with KEYS and TAGS and
# consumes them with a clustering push consumer subscribed to one tag: exactly once each.
# Then the delivery scenario: transaction producer, delayed message, ReconsumeLater,
# orderly consumer, query by key.
#
# Then the client's ACL hook against a broker with aclEnable=true, a replicating pair, and a cluster: RocketMQ's name server (rocketmq-namesrv-rust,
# which must be installed) and two broker groups of master + slave (examples/cluster),
# with the name server and then one master killed mid-run.
#
# usage: compat/run.sh <broker-lite binary> <compat-rust-client binary> [messages per kind] [cluster messages]
set -euo pipefail
broker=$1
client=$2
n=${3:-50}
n_cluster=${4:-600}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/broker.conf" <<CONF
brokerClusterName=CompatCluster
brokerName=broker-a
mappedFileSizeCommitLog=67108864
mappedFileSizeConsumeQueue=600000
maxIndexNum=400000
maxHashSlotNum=100000
# Short delay levels (level 2 = 2 s, first retry = level 3 = 1 s) and quick check-backs
# for the delivery scenario.
messageDelayLevel=1s 2s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s
transactionCheckInterval=1000
transactionTimeOut=1000
CONF
RUST_LOG=info,broker_lite=trace "$broker" -c "$work/broker.conf" --store "$work/store" --port 0 --namesrv-port 0 \
  > "$work/out.log" 2> "$work/broker.log" &
pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/out.log" 2>/dev/null && break; sleep 0.1; done
ns=$(grep -o 'route service on [0-9.:]*' "$work/out.log" | awk '{print $4}')
echo "broker-lite up, route service $ns"
run() {
  local label=$1; shift
  echo "--- $label"
  env "$@" timeout 180 "$client" "$ns" "Compat_$label" "compat_$label" "$n"
}
run json RUST_LOG=off
run binary ROCKETMQ_SERIALIZE_TYPE=ROCKETMQ
run v2 org.apache.rocketmq.client.sendSmartMsg=true
echo "--- delivery (transactions, delay, ReconsumeLater send-back, orderly consumer, query by key)"
RUST_LOG=off timeout 180 "$client" "$ns" Compat_delivery compat_delivery delivery
echo "--- admin: the client's DefaultMQAdminExt, each answer checked against the running clients"
baddr=$(grep -o 'clients dial [0-9.:]*' "$work/out.log" | awk '{print $3}')
RUST_LOG=off timeout 180 "$client" "$ns" Compat_admin compat_admin admin "$baddr" CompatCluster
echo "--- request codes the client sent (code, flag, service, header type)"
grep ' request ' "$work/broker.log" | grep -o 'code=[0-9]* \|flag=[0-9]* \|service=[A-Za-z]*\|ser=[A-Za-z]*' \
  | paste -d' ' - - - - | sort | uniq -c
kill -TERM "$pid"
wait "$pid" || { echo "broker-lite exited with an error"; exit 1; }
pid=""
grep -q 'stopped cleanly' "$work/out.log" || { echo "broker-lite did not stop cleanly"; exit 1; }

echo "--- ACL: aclEnable=true, the client signing with its own AclClientRPCHook"
mkdir -p "$work/acl"
cat > "$work/acl/plain_acl.yml" <<ACL
accounts:
  - accessKey: compatPubSub
    secretKey: compatSecret1
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - Compat_acl=PUB|SUB
      - Compat_denied=DENY
  - accessKey: compatAdmin
    secretKey: compatSecret2
    admin: true
ACL
cat > "$work/acl/broker.conf" <<CONF
brokerName=broker-acl
aclEnable=true
mappedFileSizeCommitLog=1048576
mappedFileSizeConsumeQueue=600000
maxIndexNum=400000
maxHashSlotNum=100000
CONF
RUST_LOG=warn,broker_lite::requests=debug "$broker" -c "$work/acl/broker.conf" --store "$work/acl/store" --port 0 --namesrv-port 0 \
  > "$work/acl/out.log" 2> "$work/acl/broker.log" &
pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/acl/out.log" 2>/dev/null && break; sleep 0.1; done
ans=$(grep -o 'route service on [0-9.:]*' "$work/acl/out.log" | awk '{print $4}')
aaddr=$(grep -o 'clients dial [0-9.:]*' "$work/acl/out.log" | awk '{print $3}')
for t in Compat_acl Compat_denied; do
  "$broker" topic create --broker "$aaddr" --topic "$t" --queues 4 --access-key compatAdmin --secret-key compatSecret2
done
if "$broker" topic create --broker "$aaddr" --topic Compat_sneaky --access-key compatPubSub --secret-key compatSecret1 2>/dev/null; then
  echo "a non-admin account created a topic"; exit 1
fi
RUST_LOG=off timeout 180 "$client" "$ans" Compat_acl compat_acl acl "$n" compatPubSub compatSecret1 Compat_denied "$aaddr"
kill -TERM "$pid"; wait "$pid" || { echo "the ACL broker exited with an error"; exit 1; }
pid=""
# The client's errors are its own words: the broker's log shows what it refused, and why.
echo "refused by the ACL (request, count):"
grep 'refused by ACL' "$work/acl/broker.log" | grep -o 'code="*[A-Z_0-9]*' | sort | uniq -c
for code in UPDATE_AND_CREATE_TOPIC SEND_MESSAGE GET_ROUTEINFO_BY_TOPIC; do
  grep 'refused by ACL' "$work/acl/broker.log" | grep -q "code=\"*$code" \
    || { echo "the broker never refused $code"; exit 1; }
done
grep 'refused by ACL' "$work/acl/broker.log" | grep -q 'Compat_denied' || { echo "no refusal names Compat_denied"; exit 1; }

echo "--- replication: a SYNC_MASTER and its slave; the client produces to and consumes from the group"
status_of() { "$broker" status --broker "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
mkdir -p "$work/master" "$work/slave"
cat > "$work/master/broker.conf" <<CONF
brokerName=broker-r
brokerRole=SYNC_MASTER
mappedFileSizeCommitLog=1048576
mappedFileSizeConsumeQueue=600000
maxIndexNum=400000
maxHashSlotNum=100000
CONF
RUST_LOG=warn "$broker" -c "$work/master/broker.conf" --store "$work/master/store" --port 0 --namesrv-port 0 \
  > "$work/master/out.log" 2>> "$work/broker.log" &
pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/master/out.log" 2>/dev/null && break; sleep 0.1; done
mns=$(grep -o 'route service on [0-9.:]*' "$work/master/out.log" | awk '{print $4}')
maddr=$(grep -o 'clients dial [0-9.:]*' "$work/master/out.log" | awk '{print $3}')
cat > "$work/slave/broker.conf" <<CONF
brokerName=broker-r
brokerRole=SLAVE
brokerId=1
namesrvAddr=$mns
mappedFileSizeCommitLog=1048576
mappedFileSizeConsumeQueue=600000
maxIndexNum=400000
maxHashSlotNum=100000
CONF
RUST_LOG=warn "$broker" -c "$work/slave/broker.conf" --store "$work/slave/store" --port 0 --no-namesrv \
  > "$work/slave/out.log" 2>> "$work/broker.log" &
spid=$!
trap 'cleanup; [ -n "$spid" ] && kill -9 "$spid" 2>/dev/null; true' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$work/slave/out.log" 2>/dev/null && break; sleep 0.1; done
saddr=$(grep -o 'clients dial [0-9.:]*' "$work/slave/out.log" | awk '{print $3}')
for _ in $(seq 1 300); do [ "$(status_of "$maddr" haConnections)" = 1 ] && break; sleep 0.1; done
[ "$(status_of "$maddr" haConnections)" = 1 ] || { echo "the slave never connected"; exit 1; }
RUST_LOG=off timeout 180 "$client" "$mns" Compat_replicated compat_replicated "$n"
end=$(status_of "$maddr" commitLogMaxOffset)
for _ in $(seq 1 300); do [ "$(status_of "$saddr" commitLogMaxOffset)" = "$end" ] && break; sleep 0.1; done
[ "$(status_of "$saddr" commitLogMaxOffset)" = "$end" ] || { echo "the slave did not catch up to $end"; exit 1; }
"$broker" status --broker "$maddr"
kill -TERM "$spid"; wait "$spid" || { echo "the slave exited with an error"; exit 1; }
spid=""
kill -TERM "$pid"; wait "$pid" || { echo "the master exited with an error"; exit 1; }
pid=""
# Byte for byte, file by file, up to the master's end.
size=1048576
for f in "$work/master/store/commitlog"/*; do
  name=$(basename "$f"); start=$((10#$name))
  [ "$start" -ge "$end" ] && continue
  len=$(( end - start < size ? end - start : size ))
  cmp -n "$len" "$f" "$work/slave/store/commitlog/$name" || { echo "CommitLog $name differs"; exit 1; }
done
"$broker" verify --quiet -c "$work/master/broker.conf" --store "$work/master/store"
"$broker" verify --quiet -c "$work/slave/broker.conf" --store "$work/slave/store"
echo "replication: the slave's CommitLog equals the master's up to $end; both verify clean"

echo "--- cluster: RocketMQ's name server and two broker groups (examples/cluster), the client routed only through the name server"
command -v rocketmq-namesrv-rust >/dev/null || {
  echo "rocketmq-namesrv-rust not found: cargo install rocketmq-namesrv --version =1.0.0 --locked"
  exit 1
}
# examples/cluster uses the fixed ports 9876 and 10911..10942: nothing else may hold them.
cdir="$work/cluster"
ns=127.0.0.1:9876
export BROKER_LITE
BROKER_LITE=$(cd "$(dirname "$broker")" && pwd)/$(basename "$broker")
cluster=$(cd "$(dirname "$0")/../examples/cluster" && pwd)/cluster.sh
trap '"$cluster" stop "$cdir" >/dev/null 2>&1; cleanup; true' EXIT
"$cluster" start "$cdir"
"$broker" topic create --topic Compat_cluster --queues 4 --cluster DefaultCluster --namesrv "$ns"
"$broker" topic route --topic Compat_cluster --namesrv "$ns"
signal="$cdir/signal"
RUST_LOG=off timeout 900 "$client" "$ns" Compat_cluster compat_cluster cluster "$n_cluster" "$signal" \
  > "$cdir/client.out" 2>&1 &
cpid=$!
await_line() { # pattern, seconds
  for _ in $(seq 1 $(($2 * 10))); do
    grep -q "$1" "$cdir/client.out" && return 0
    kill -0 "$cpid" 2>/dev/null || { cat "$cdir/client.out"; echo "the client ended before: $1"; exit 1; }
    sleep 0.1
  done
  cat "$cdir/client.out"; echo "not within $2 s: $1"; exit 1
}
# The group's committed offsets on a broker: "total lag 0" once it holds the final ones
# (a slave copies them from its master every 10 s).
offsets_final() { # port
  for _ in $(seq 1 300); do
    "$broker" offsets --broker "127.0.0.1:$1" --group compat_cluster --topic Compat_cluster | grep -q '^total lag 0$' && break
    sleep 0.1
  done
  echo "  127.0.0.1:$1: $("$broker" offsets --broker "127.0.0.1:$1" --group compat_cluster --topic Compat_cluster | tail -1)"
  "$broker" offsets --broker "127.0.0.1:$1" --group compat_cluster --topic Compat_cluster | grep -q '^total lag 0$' \
    || { echo "127.0.0.1:$1 does not hold the group's final offsets"; exit 1; }
}
# Phase 1: the name server dies under running clients and comes back.
await_line "PROGRESS one sent=100" 120
kill -9 "$(cat "$cdir/namesrv.pid")"
echo "name server killed (SIGKILL) during phase 1"
sleep 3
ns_restart=$(date +%s%N)
"$cluster" start "$cdir" > "$cdir/restart-namesrv.out"
echo "name server restarted: all four brokers registered again $(( ($(date +%s%N) - ns_restart) / 1000000 )) ms later (registerNameServerPeriod 30 s)"
await_line "phase 1 done" 120
echo "phase 1 offsets, masters then slaves:"
for b in 10911 10931 10921 10941; do offsets_final "$b"; done
touch "$signal.1"
# Phase 2: master a dies a third of the way through.
await_line "PROGRESS two sent=$(( n_cluster / 3 / 50 * 50 ))" 180
kill -9 "$(cat "$cdir/broker-a-0.pid")"
echo "master a killed (SIGKILL) during phase 2"
await_line "phase 2 drained" 300
"$cluster" start "$cdir" > "$cdir/restart-a.out"
echo "master a restarted and registered"
touch "$signal.2"
wait "$cpid" || { cat "$cdir/client.out"; echo "the cluster scenario failed"; exit 1; }
grep -E '^CLUSTER|COMPAT' "$cdir/client.out"
echo "final offsets, masters then slaves:"
for b in 10911 10931 10921 10941; do offsets_final "$b"; done
"$cluster" stop "$cdir"

echo "compat: all modes passed"
