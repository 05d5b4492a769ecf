# Herald: `make run` starts everything locally, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The PostgreSQL and Redis that `run` uses; dev-deps.sh starts local ones when nothing answers.
export HERALD__DATABASE__URL ?= postgres://postgres@127.0.0.1:5432/herald
export HERALD__REDIS__URL ?= redis://127.0.0.1:6379
# The servers tests create their databases on (each test gets its own database and key prefix).
export HERALD_TEST_PG ?= postgres://postgres@127.0.0.1:5432
export HERALD_TEST_REDIS ?= redis://127.0.0.1:6379

.PHONY: help build clients run test test-clients fuzz fuzz-api deps-test lint-deploy check-vendor deny wire-types bench bench-retention bench-micro lint fmt clippy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## Build the three services (debug)
	cargo build --bins

clients: ## Build clients/: the TypeScript client, the React components, the demo inbox
	scripts/clients-deps.sh
	cd clients && npm run build

# The demo needs Node.js >= 20.19; without it the services run without the demo.
run: build ## Start PostgreSQL/Redis if needed, migrate, create a dev key, run the services and the demo inbox
	@$(MAKE) --no-print-directory clients \
		|| echo "make run: the demo inbox could not be built (see above); the services run without it" >&2
	scripts/dev-deps.sh up
	scripts/run-dev.sh

# The servers every test uses, and the PgBouncer (>= 1.21) the pooler test starts.
deps-test:
	HERALD__DATABASE__URL=$(HERALD_TEST_PG)/postgres HERALD__REDIS__URL=$(HERALD_TEST_REDIS) scripts/dev-deps.sh up
	scripts/pgbouncer.sh >/dev/null

# Binaries and tests in one build: the end-to-end tests run these binaries,
# and the test run then reuses every artifact (one feature set: testkit
# turns on platform's test-support).
test: deps-test lint-deploy check-vendor deny ## Run the whole test suite against real PostgreSQL and Redis
	cargo build --workspace --bins --tests
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
	$(MAKE) test-clients
	$(MAKE) fuzz-api

# schemathesis against each service's /openapi.json (every operation, every
# check, seed 1, HERALD_FUZZ_SECS per service), the debug binaries and real
# PostgreSQL and Redis; any finding fails. Exceptions: schemathesis.toml.
# cargo-fuzz (libFuzzer) on what reads untrusted input: request
# validation, frame decoding, template parsing; FUZZ_SECS per target.
fuzz: ## Fuzz request validation, frame decoding and template parsing (cargo-fuzz, FUZZ_SECS each)
	scripts/fuzz.sh

fuzz-api: ## Fuzz the three HTTP APIs from their OpenAPI documents (needs the debug binaries)
	scripts/schemathesis.sh

# The client's and components' unit tests, then the demo in Chromium against
# the services built above (installs Chromium as root, else says how).
test-clients: ## Unit tests of clients/ and the browser tests (needs the debug binaries)
	scripts/clients-deps.sh --browser
	cd clients && npm run build && npm test && npm run test:browser

lint-deploy: ## Validate deploy/ and k8s/ offline (installs pinned tools into .tools/ on first run)
	scripts/lint-deploy.sh

deny: ## cargo-deny: licenses, sources, bans; advisories when the RustSec database is reachable
	scripts/deny.sh

check-vendor: ## Check vendor/actix-http is the crates.io release plus herald.patch, nothing else
	scripts/check-vendor.sh

wire-types: ## Regenerate clients/js/src/wire.ts from the Rust wire types (domain)
	HERALD_WRITE_WIRE_TYPES=1 cargo test -p domain --test wire_types

bench: ## Release build, start everything, run herald-bench, write bench/results/latest.{json,md,svg}
	scripts/bench.sh

bench-retention: ## Retention on a table of 10 M notifications (fills a scratch database; minutes), writes bench/results/retention.json
	scripts/bench-retention.sh

bench-micro: ## criterion micro-benchmarks of validation, frame encoding and rendering
	cargo bench -p domain --bench hot_paths

lint: fmt clippy ## Formatting and clippy, as CI expects them

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --all-targets -- -D warnings

clean: ## Stop local servers started by dev-deps.sh and remove build output
	scripts/dev-deps.sh down
	cargo clean
