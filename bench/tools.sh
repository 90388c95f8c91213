#!/usr/bin/env bash
# Installs the load generators the edge benchmark drives (bench/edge_bench.py) into
# <repo>/.local/bin, from the Go module proxy, unless they are there already:
#   vegeta  constant-rate HTTP load with latency percentiles (REST)
#   ghz     constant-rate and closed-loop gRPC load (gRPC)
# Versions: VEGETA_VERSION, GHZ_VERSION. The first build takes a minute or two.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(cd "$here/.." && pwd)/.local/bin"
mkdir -p "$bin"
export GOBIN="$bin" GOFLAGS=-mod=mod

install_tool() {  # name, module path with version
  if [[ -x "$bin/$1" ]]; then return; fi
  echo "installing $1 ($2) into $bin" >&2
  go install "$2"
}

install_tool vegeta "github.com/tsenart/vegeta/v12@${VEGETA_VERSION:-v12.13.0}"
install_tool ghz "github.com/bojand/ghz/cmd/ghz@${GHZ_VERSION:-v0.121.0}"
