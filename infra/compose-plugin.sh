#!/usr/bin/env bash
# Installs the `docker compose` CLI plugin from the Go module proxy when it is missing, so
# `docker compose config` can validate docker-compose.yml on machines without Docker Desktop.
# Building it takes a few minutes the first time.
set -euo pipefail
if docker compose version >/dev/null 2>&1; then exit 0; fi
version="${COMPOSE_VERSION:-v2.40.3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init compose-plugin-build >/dev/null 2>&1
GOFLAGS=-mod=mod go get "github.com/docker/compose/v2@$version"
GOFLAGS=-mod=mod go build -o docker-compose github.com/docker/compose/v2/cmd
mkdir -p "$HOME/.docker/cli-plugins"
install -m 0755 docker-compose "$HOME/.docker/cli-plugins/docker-compose"
echo "installed docker compose $version into ~/.docker/cli-plugins" >&2
