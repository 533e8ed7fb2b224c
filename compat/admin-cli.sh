#!/usr/bin/env bash
# Runs RocketMQ's admin tool as operators use it — the crates.io rocketmq-admin-cli 1.0,
# unmodified (it must be installed) — against broker-lite and its built-in route service,
# and checks each command's output against what the broker holds: 40 messages in 4 queues,
# a group that consumed 25 of them.
#
# usage: compat/admin-cli.sh <broker-lite binary>
set -euo pipefail
bl=$1
cli=rocketmq-admin-cli
work=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
printf 'brokerClusterName=AdminCluster\nbrokerName=broker-a\nmappedFileSizeCommitLog=67108864\n' > "$work/broker.conf"
"$bl" -c "$work/broker.conf" --store "$work/store" --port 0 --namesrv-port 0 > "$work/out.log" 2> "$work/broker.log" &
pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/out.log" 2>/dev/null && break; sleep 0.1; done
ns=$(grep -o 'route service on [0-9.:]*' "$work/out.log" | awk '{print $4}')
b=$(grep -o 'clients dial [0-9.:]*' "$work/out.log" | awk '{print $3}')
export NAMESRV_ADDR=$ns
echo "broker-lite at $b, route service $ns; $($cli --version 2>/dev/null | tr '\n' ' ')"

"$bl" topic create --broker "$b" --topic CliT --queues 4 > /dev/null
"$bl" send --broker "$b" --topic CliT --count 40 --keys 'cli-<n>' --tag T | tail -1
"$bl" consume --broker "$b" --topic CliT --group cli_group --count 25 --idle-ms 500 | tail -1

# check <what> <extended regex the output must match> <command…>
check() {
  local what=$1 pattern=$2
  shift 2
  local out
  if ! out=$("$@" 2>&1); then
    echo "FAILED: $what exited non-zero:"; echo "$out"; exit 1
  fi
  if ! grep -qE -- "$pattern" <<< "$out"; then
    echo "FAILED: $what: nothing matches /$pattern/ in:"; echo "$out"; exit 1
  fi
  echo "admin-cli $what: ok"
  last_output=$out
}
# sum_column <n> <text>: the sum of column n over the data lines (those starting with broker-a or CliT).
sum_column() { awk -v c="$1" '$1 == "broker-a" || $1 == "CliT" { s += $c } END { print s + 0 }' <<< "$2"; }

check "cluster clusterList" "^AdminCluster +broker-a +0 +$b +V4_9_4" $cli cluster clusterList
check "topic topicList" '^CliT$' $cli topic topicList -n "$ns"
check "topic topicStatus" '^broker-a +3 +0 +[0-9]+' $cli topic topicStatus -n "$ns" -t CliT
[ "$(sum_column 4 "$last_output")" = 40 ] || { echo "FAILED: topicStatus max offsets do not add up to 40:"; echo "$last_output"; exit 1; }
check "topic topicRoute" '"writeQueueNums":4' $cli topic topicRoute -n "$ns" -t CliT
check "topic updateTopic" 'success' $cli topic updateTopic -n "$ns" -c AdminCluster -t CliNew -r 2 -w 2 -y
check "topic topicList after updateTopic" '^CliNew$' $cli topic topicList -n "$ns"
check "topic deleteTopic" "delete topic CliNew from broker $b success" $cli topic deleteTopic -n "$ns" -c AdminCluster -t CliNew -y
if $cli topic topicList -n "$ns" 2>&1 | grep -q '^CliNew$'; then echo "FAILED: CliNew listed after deleteTopic"; exit 1; fi
check "consumer consumerProgress" 'Consume Diff Total: 15' $cli consumer consumerProgress -n "$ns" -g cli_group
[ "$(sum_column 5 "$last_output")" = 25 ] || { echo "FAILED: consumer offsets do not add up to 25:"; echo "$last_output"; exit 1; }
check "broker brokerStatus" 'msgPutTotalTodayNow +: 40' $cli broker brokerStatus -b "$b"
check "broker getBrokerConfig" 'brokerClusterName += +AdminCluster' $cli broker getBrokerConfig -n "$ns" -b "$b"
check "message queryMsgByKey" '@CliT@K@cli-9@' $cli message queryMsgByKey -t CliT -k cli-9
id=$(awk '/@CliT@K@cli-9@/ { print $1 }' <<< "$last_output")
check "message queryMsgById" 'Topic: CliT' $cli message queryMsgById -t CliT -i "$id"
# The group is offline: RocketMQ 4.9's broker answers CONSUMER_NOT_ONLINE and the tool
# falls back to committing each queue's offset itself.
check "offset resetOffsetByTime" 'broker-a +0 ' $cli offset resetOffsetByTime -n "$ns" -g cli_group -t CliT -s 0 -y
check "consumer consumerProgress after the reset" 'Consume Diff Total: 40' $cli consumer consumerProgress -n "$ns" -g cli_group
echo "ADMIN CLI OK"
