#!/usr/bin/env bash
# Runs a HealthStream service in the background for local use, like kafka.sh does the broker.
#   service.sh up NAME [ARGS]  start `hs-NAME ARGS` unless running; wait until its ready check passes
#   service.sh down NAME    stop it by its own pid (SIGTERM: it finishes what is in hand)
# State: .local/services/NAME.{pid,log}. The service logs in to Kafka as its own principal, with
# .local/kafka-clients/NAME.env (`make dev-credentials` writes it). Ready checks: ingestion answers GET /health, the edge
# GET /healthz over TLS.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$repo/.local/services"
command="${1:-}" name="${2:-}"
pid_file="$state/$name.pid" log_file="$state/$name.log"
mkdir -p "$state"

running() { [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

ready() {
  case "$name" in
    ingestion) python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${HS_INGESTION_HTTP_PORT:-8080}/health', timeout=1)" 2>/dev/null ;;
    edge) python3 -c "import ssl, urllib.request; urllib.request.urlopen('https://127.0.0.1:${HS_EDGE_PORT:-8443}/healthz', timeout=1, context=ssl.create_default_context(cafile='$repo/.local/edge/tls-cert.pem'))" 2>/dev/null ;;
    *) return 0 ;;
  esac
}

case "$command" in
  up)
    if running; then echo "$name already running (pid $(cat "$pid_file"))" >&2; exit 0; fi
    cd "$repo"
    login="$repo/.local/kafka-clients/$name.env"
    if [[ -f "$login" ]]; then set -a; . "$login"; set +a; fi
    HS_KEYRING_FILE="${HS_KEYRING_FILE:-$repo/.local/keyring.json}" setsid uv run --frozen "hs-$name" "${@:3}" >>"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    for _ in $(seq 1 300); do
      if ready; then echo "$name up (pid $(cat "$pid_file"), log $log_file)" >&2; exit 0; fi
      if ! running; then echo "$name exited; log tail:" >&2; tail -20 "$log_file" >&2; exit 1; fi
      sleep 0.1
    done
    echo "$name not ready after 30 s; log $log_file" >&2; exit 1 ;;
  down)
    if running; then
      pid="$(cat "$pid_file")"
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "$name stopped" >&2
    fi
    rm -f "$pid_file" ;;
  *) echo "usage: $0 up|down NAME" >&2; exit 2 ;;
esac
