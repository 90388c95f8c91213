# HealthStream developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= uv
RUN := $(UV) run --frozen
BASE ?= origin/main
REPO ?= .
PYTEST_ARGS ?=
DEMO_DIR ?= .local/demo
DEMO_PEOPLE ?= 500
# The broker administrator's login (kafka.sh writes it); KAFKA_ADMIN_ENV=none keeps the HS_KAFKA_*
# variables already set, for a cluster of your own.
KAFKA_ADMIN_ENV ?= .local/kafka/admin.env
AS_ADMIN = $(if $(wildcard $(KAFKA_ADMIN_ENV)),set -a && . $(KAFKA_ADMIN_ENV) && set +a &&,)
# every registered source is an institution with its own principal and inbound topics
SENDERS = .local/ingestion-senders
INSTITUTIONS := $(addprefix --institution ,$(basename $(notdir $(wildcard services/ingestion/sources/*.toml))))

.PHONY: help install up demo down kafka-jars fhir-validator kafka-up kafka-down kafka-status dev-keys dev-credentials topics \
	pg-up pg-down lint format typecheck test test-unit test-integration check check-compat \
	schemas-check schemas-release proto compose-config synth clean

help: ## list the commands
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: ## install the Python workspace from the lockfile (.venv)
	$(UV) sync --frozen

up: install kafka-up dev-credentials dev-keys topics ## run the platform locally: broker, logins and ACLs, keys, topics
	@echo "HealthStream is up: Kafka on 127.0.0.1:$${KAFKA_PORT:-9092}; topics:"
	@$(RUN) python -c "from hs_common import topics; print('\n'.join('  ' + t.name for t in topics.ALL))"

demo: up ## run the platform: broker, every service, and a generated feed replayed into it
	$(AS_ADMIN) $(RUN) hs-ingestion-tools dev-senders --out $(SENDERS) >/dev/null
	set -a && . $(SENDERS)/ingestion.env && set +a && infra/service.sh up ingestion
	infra/service.sh up normalize
	infra/service.sh up empi
	infra/service.sh up vitals
	infra/service.sh up quality
	$(RUN) hs-edge dev-setup > .local/edge-clients.txt
	HS_EDGE_DEV_CLIENTS=.local/edge/clients.json infra/service.sh up edge serve
	$(RUN) hs-synth generate --out $(DEMO_DIR) --people $(DEMO_PEOPLE) --days 14 --quiet
	$(RUN) hs-synth replay $(DEMO_DIR) --mllp 127.0.0.1:2575 --http http://127.0.0.1:8080 \
		--senders $(SENDERS) --quiet
	@sleep 10  # the normalizer, the EMPI, vitals and the edge's read model catch up
	@$(AS_ADMIN) $(RUN) hs-admin counts
	@echo
	@echo "Where to look:"
	@echo "  ingestion    MLLP over TLS 127.0.0.1:2575 (a client certificate per source), HTTP http://127.0.0.1:8080 (a"
	@echo "               bearer token per source; OpenAPI: /docs); credentials in $(SENDERS), log .local/services/ingestion.log"
	@echo "  normalizer   log .local/services/normalize.log"
	@echo "  EMPI         hs.identity.link.v1 (a person per record, with score and evidence), log .local/services/empi.log"
	@echo "  vitals       hs.vitals.alert.v1 (CGM, blood pressure, SpO2, heart rate, NEWS2 alerts), hs.vitals.summary.v1"
	@echo "               (daily CGM and blood pressure), hs.vitals.flag.v1 (readings not used); rules: docs/vitals-rules.md"
	@echo "  quality      hs.quality.result.v1 (each canonical event scored: the checks failed, with reasons),"
	@echo "               hs.quality.summary.v1 (each source's hourly and daily windows), hs.quality.alert.v1; rules:"
	@echo "               services/quality/src/hs_quality/data/rules.csv (docs/quality.md), log .local/services/quality.log;"
	@echo "               reports: https://127.0.0.1:8443/quality/sources/HZ01/report?window=HOUR with a token of"
	@echo "               admin-console (every source) or hz01-it (HZ01's IT team: its own only)"
	@echo "  edge         https://127.0.0.1:8443 (OpenAPI: /docs; TLS certificate .local/edge/tls-cert.pem); client"
	@echo "               secrets in .local/edge-clients.txt; a token: curl --cacert .local/edge/tls-cert.pem"
	@echo "               https://127.0.0.1:8443/oauth/token -d grant_type=client_credentials -d client_id=ward-app -d client_secret=..."
	@echo "               integrators' clients: POST /admin/clients (docs/edge.md, five commands to a first search)"
	@echo "               then GET /persons/{person_id}, /persons/{person_id}/observations, /alerts/stream, /reviews,"
	@echo "               /fhir/Patient/{person_id}/\$$everything; gRPC on 127.0.0.1:8444 (proto/); guide: docs/edge.md"
	@echo "  metrics      http://127.0.0.1:9401/metrics (ingestion), :9402 (normalizer), :9403 (EMPI), :9404 (vitals), :9405 (edge), :9406 (quality)"
	@echo "  broker       SASL_SSL on 127.0.0.1:9092, mutual TLS on :9094 (CA .local/kafka/tls/ca.pem); logins:"
	@echo "               .local/kafka/admin.env, one per service and institution in .local/kafka-clients/;"
	@echo "               publish as an institution: examples/publish_to_kafka.py (docs/institutions.md)"
	@echo "  topics       hs.ingest.raw.v1 (as received), canonical hs.identity.* hs.clinical.* hs.device.*,"
	@echo "               hs.ops.deadletter.v1 (what was refused, with reasons)"
	@echo "  demo feed    $(DEMO_DIR) (truth in $(DEMO_DIR)/truth/)"
	@echo "  stop         make down"

down: ## stop the local platform (services, then the broker and PostgreSQL)
	infra/service.sh down ingestion
	infra/service.sh down normalize
	infra/service.sh down empi
	infra/service.sh down vitals
	infra/service.sh down quality
	infra/service.sh down edge
	infra/kafka/kafka.sh down
	infra/postgres/pg.sh down

kafka-jars: ## fetch the Apache Kafka broker jars from Maven Central (cached)
	infra/kafka/kafka.sh fetch

fhir-validator: ## fetch HAPI FHIR's reference validator from Maven Central (cached; the tests use it)
	infra/fhir-validator/validator.sh fetch

kafka-up: ## start the local Kafka broker (idempotent; waits until it answers)
	infra/kafka/kafka.sh up

kafka-down: ## stop the local Kafka broker
	infra/kafka/kafka.sh down

kafka-status: ## say whether the local broker runs
	infra/kafka/kafka.sh status

pg-up: ## start the local PostgreSQL (idempotent; creates the healthstream database; prints the DSN)
	infra/postgres/pg.sh up

pg-down: ## stop the local PostgreSQL
	infra/postgres/pg.sh down

dev-keys: ## write a development keyring to .local/keyring.json unless one exists
	$(RUN) hs-admin dev-keys

dev-credentials: ## a SCRAM login per service and institution in .local/kafka-clients/, and the ACLs
	$(AS_ADMIN) $(RUN) hs-admin dev-credentials $(INSTITUTIONS)

topics: ## create every catalogued topic that is missing, and each institution's inbound topics
	$(AS_ADMIN) $(RUN) hs-admin create-topics $(INSTITUTIONS)

lint: ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

typecheck: ## mypy --strict over all code
	$(RUN) mypy services tests bench examples

test-unit: ## unit tests (no broker)
	$(RUN) pytest -m "not integration" $(PYTEST_ARGS)

test-integration: ## integration tests against a real Kafka broker (started when needed)
	$(RUN) pytest -m integration $(PYTEST_ARGS)

test: ## every test: unit and integration
	$(RUN) pytest $(PYTEST_ARGS)

check: lint typecheck test ## what CI runs: lint, types, every test (schema history included)

check-compat: ## refuse schema changes old data cannot be read with (BASE=<commit>, REPO=<path>)
	$(RUN) hs-check-compat --base $(BASE) --repo $(REPO)

schemas-check: ## current schemas read every released version, and are released themselves
	$(RUN) hs-check-compat --history

proto: ## regenerate the gRPC code from proto/ (commit it)
	$(RUN) python -m grpc_tools.protoc -Iproto --python_out=services/edge/src \
		--grpc_python_out=services/edge/src --mypy_out=quiet:services/edge/src \
		--mypy_grpc_out=quiet:services/edge/src proto/healthstream/edge/v1/edge.proto

schemas-release: ## record the current schema versions in schemas/history/ (commit them)
	$(RUN) hs-admin release-schemas

synth: ## generate the default synthetic data set (10,000 people) into .local/synth
	$(RUN) hs-synth generate --out .local/synth

compose-config: ## validate docker-compose.yml (builds the compose plugin with Go if missing)
	infra/compose-plugin.sh
	docker compose config --quiet && echo "docker-compose.yml: valid"

clean: ## remove caches and local state (stops the broker and PostgreSQL first)
	-infra/kafka/kafka.sh down
	-infra/postgres/pg.sh down
	rm -rf .local .mypy_cache .ruff_cache .pytest_cache .hypothesis
