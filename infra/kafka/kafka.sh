#!/usr/bin/env bash
# Runs a real single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, secured:
# SASL_SSL (SCRAM-SHA-512 over TLS 1.3) on KAFKA_PORT, mutual TLS on KAFKA_CERT_PORT and on the
# controller listener, and the StandardAuthorizer (no ACL, no access; see server.properties.template).
#   kafka.sh fetch   resolve the broker jars from Maven Central into the cache (once)
#   kafka.sh up      on first use make a development CA, the broker's certificate and the admin's
#                    SCRAM credential; format storage if new; start; wait until it answers metadata
#   kafka.sh run     as `up`, but the broker runs in the foreground (in a container)
#   kafka.sh down    stop the broker this script started (by its pid)
#   kafka.sh status  say whether it runs
# The admin's client settings (HS_KAFKA_* variables) are written to KAFKA_STATE_DIR/admin.env, the
# CA to KAFKA_STATE_DIR/tls/ca.pem; `hs-admin dev-credentials` issues every other principal's.
# Settings (environment): KAFKA_PORT (9092), KAFKA_CERT_PORT (9094), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_STATE_DIR (<repo>/.local/kafka), KAFKA_CACHE_DIR (~/.cache/healthstream),
# KAFKA_HEAP (512m), KAFKA_READY_TIMEOUT seconds (90), KAFKA_HOST (127.0.0.1: the name clients
# reach it by, advertised and in its certificate), KAFKA_LISTEN_HOST (127.0.0.1; 0.0.0.0 in a
# container). KAFKA_PLAINTEXT=1 starts an unsecured
# broker instead (server.plaintext.properties.template): only as a benchmark's baseline.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
cert_port="${KAFKA_CERT_PORT:-9094}"
host="${KAFKA_HOST:-127.0.0.1}"
listen_host="${KAFKA_LISTEN_HOST:-127.0.0.1}"
state_dir="${KAFKA_STATE_DIR:-$repo/.local/kafka}"
tls_dir="$state_dir/tls"
admin_env="$state_dir/admin.env"
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

plaintext="${KAFKA_PLAINTEXT:-}"

wait_ready() {
  local probe=("127.0.0.1:$cert_port" --tls-dir "$tls_dir")
  if [[ -n "$plaintext" ]]; then probe=("127.0.0.1:$port"); fi
  python3 "$here/wait_ready.py" "${probe[@]}" \
    --timeout "${KAFKA_READY_TIMEOUT:-90}" --pid "$(cat "$pid_file")" --log "$log_file"
}

# A development CA and the broker's certificate (CN=broker, for 127.0.0.1 and KAFKA_HOST), made once.
tls_material() {
  [[ -f "$tls_dir/broker.pem" ]] && return
  mkdir -p "$tls_dir"
  chmod 700 "$tls_dir"
  (
    cd "$tls_dir"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -keyout ca.key -out ca.pem \
      -subj "/CN=HealthStream development CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=broker" 2>/dev/null
    local names="IP:127.0.0.1,DNS:localhost"
    if [[ "$host" =~ ^[0-9.]+$ ]]; then names+=",IP:$host"; else names+=",DNS:$host"; fi
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$names" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
      -extfile broker.ext -out broker.crt 2>/dev/null
    cat broker.key broker.crt >broker.pem
    rm -f broker.csr broker.ext
    chmod 600 ./*.key broker.pem
  )
}

admin_password() {
  if [[ ! -f "$admin_env" ]]; then
    local password
    password="$(openssl rand -hex 24)"
    umask 077
    cat >"$admin_env" <<ENV
HS_KAFKA_BOOTSTRAP=$host:$port
HS_KAFKA_SECURITY_PROTOCOL=SASL_SSL
HS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
HS_KAFKA_SASL_USERNAME=admin
HS_KAFKA_SASL_PASSWORD=$password
HS_KAFKA_SSL_CA_LOCATION=$tls_dir/ca.pem
HS_KAFKA_MTLS_BOOTSTRAP=$host:$cert_port
ENV
  fi
  sed -n 's/^HS_KAFKA_SASL_PASSWORD=//p' "$admin_env"
}

up() {
  fetch
  mkdir -p "$state_dir"
  local foreground="${1:-}"
  if [[ -z "$foreground" ]] && pid="$(running_pid)"; then
    echo "broker already running (pid $pid) on 127.0.0.1:$port" >&2
    wait_ready
    return
  fi
  if [[ -n "$plaintext" ]]; then
    up_plaintext
    return
  fi
  if [[ -f "$state_dir/log/meta.properties" && ! -f "$admin_env" ]]; then
    echo "$state_dir holds a broker formatted without credentials (an unsecured one): remove it," \
      "and the services' state made against it (.local/vitals-state), to start a secured one" >&2
    exit 1
  fi
  tls_material
  local password
  password="$(admin_password)"
  sed -e "s|@PORT@|$port|g" -e "s|@CERT_PORT@|$cert_port|g" \
    -e "s|@CONTROLLER_PORT@|$controller_port|g" -e "s|@DATA_DIR@|$state_dir|g" \
    -e "s|@TLS_DIR@|$tls_dir|g" -e "s|@HOST@|$host|g" -e "s|@LISTEN_HOST@|$listen_host|g" \
    "$here/server.properties.template" >"$state_dir/server.properties"
  local cp
  cp="$(classpath)"
  if [[ ! -f "$state_dir/log/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid)"
    java -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.properties" kafka.tools.StorageTool \
      format --standalone -t "$cluster_id" -c "$state_dir/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=admin,password=$password]" >>"$log_file" 2>&1
  fi
  if [[ -n "$foreground" ]]; then
    echo "broker starting on $host:$port (SASL_SSL; mutual TLS on $cert_port; admin settings $admin_env)" >&2
    exec java -Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
      -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$cp" kafka.Kafka "$state_dir/server.properties"
  fi
  start_broker "$cp"
  echo "broker up on $host:$port (SASL_SSL; mutual TLS on $cert_port; pid $(cat "$pid_file"), log $log_file, admin settings $admin_env)" >&2
}

up_plaintext() {
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    -e "s|@DATA_DIR@|$state_dir|g" "$here/server.plaintext.properties.template" \
    >"$state_dir/server.properties"
  local cp
  cp="$(classpath)"
  if [[ ! -f "$state_dir/log/meta.properties" ]]; then
    java -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.properties" kafka.tools.StorageTool \
      format --standalone -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" \
      -c "$state_dir/server.properties" >>"$log_file" 2>&1
  fi
  start_broker "$cp"
  echo "UNSECURED broker up on 127.0.0.1:$port (benchmark baseline only; pid $(cat "$pid_file"))" >&2
}

start_broker() {
  # setsid: the broker outlives the shell that started it and ignores its terminal's signals.
  setsid java -Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$1" kafka.Kafka "$state_dir/server.properties" >>"$log_file" 2>&1 </dev/null &
  echo $! >"$pid_file"
  wait_ready
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
  if pid="$(running_pid)"; then echo "running (pid $pid) on $host:$port"; else echo "stopped"; return 1; fi
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  run) up foreground ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 fetch|up|run|down|status" >&2; exit 2 ;;
esac
