#!/usr/bin/env bash
# Runs a real single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1.
#   kafka.sh fetch   resolve the broker jars from Maven Central into the cache (once)
#   kafka.sh up      format storage if new, start the broker, wait until it answers metadata
#   kafka.sh down    stop the broker this script started (by its pid)
#   kafka.sh status  say whether it runs
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_STATE_DIR (<repo>/.local/kafka), KAFKA_CACHE_DIR (~/.cache/healthstream),
# KAFKA_HEAP (512m), KAFKA_READY_TIMEOUT seconds (90).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
state_dir="${KAFKA_STATE_DIR:-$repo/.local/kafka}"
pom_hash="$(sha256sum "$here/pom.xml" | cut -c1-12)"
jars_dir="${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/healthstream}/kafka-jars-$pom_hash"
pid_file="$state_dir/broker.pid"
log_file="$state_dir/broker.log"

fetch() {
  if [[ -f "$jars_dir/.complete" ]]; then return; fi
  echo "fetching Apache Kafka jars from Maven Central into $jars_dir" >&2
  rm -rf "$jars_dir.tmp"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$jars_dir.tmp" >&2
  touch "$jars_dir.tmp/.complete"
  rm -rf "$jars_dir"
  mv "$jars_dir.tmp" "$jars_dir"
}

classpath() { echo "$jars_dir"/*.jar | tr ' ' ':'; }

running_pid() {
  [[ -f "$pid_file" ]] || return 1
  local pid
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka.Kafka'; then
    echo "$pid"
    return 0
  fi
  return 1
}

wait_ready() {
  python3 "$here/wait_ready.py" "127.0.0.1:$port" --timeout "${KAFKA_READY_TIMEOUT:-90}" \
    --pid "$(cat "$pid_file")" --log "$log_file"
}

up() {
  fetch
  mkdir -p "$state_dir"
  if pid="$(running_pid)"; then
    echo "broker already running (pid $pid) on 127.0.0.1:$port" >&2
    wait_ready
    return
  fi
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    -e "s|@DATA_DIR@|$state_dir|g" "$here/server.properties.template" >"$state_dir/server.properties"
  local cp
  cp="$(classpath)"
  if [[ ! -f "$state_dir/log/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid)"
    java -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.properties" kafka.tools.StorageTool \
      format --standalone -t "$cluster_id" -c "$state_dir/server.properties" >>"$log_file" 2>&1
  fi
  # setsid: the broker outlives the shell that started it and ignores its terminal's signals.
  setsid java -Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$state_dir/server.properties" >>"$log_file" 2>&1 </dev/null &
  echo $! >"$pid_file"
  wait_ready
  echo "broker up on 127.0.0.1:$port (pid $(cat "$pid_file"), log $log_file)" >&2
}

down() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "no broker running from $state_dir" >&2
    rm -f "$pid_file"
    return
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "broker did not stop in 30 s; killing pid $pid" >&2
    kill -KILL "$pid"
  fi
  rm -f "$pid_file"
  echo "broker stopped" >&2
}

status() {
  if pid="$(running_pid)"; then echo "running (pid $pid) on 127.0.0.1:$port"; else echo "stopped"; return 1; fi
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 fetch|up|down|status" >&2; exit 2 ;;
esac
