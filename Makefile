# mtls-sidecar — the two commands a new user needs: `make run` and `make test`.
# npm scripts and everything below run on the Node 24 that the `node` devDependency brings.
SHELL := /bin/bash
NODE := node_modules/.bin/node
CLI := $(NODE) dist/main.js

.PHONY: all install build typecheck test test-deps run certs check clean bench flood-budgets

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	npm run build --silent

typecheck: install
	npx tsc -p tsconfig.json --noEmit

# Dev PKI into certs/ (CA, server cert, client certs orders and billing, empty CRL).
certs: build
	$(CLI) certs --out certs $(CERTS_FLAGS)

certs/ca.crt:
	$(MAKE) certs

# The demo: dev certs if missing, a small app on 127.0.0.1:8080, the sidecar on :8443 in front.
run: build certs/ca.crt
	@bash examples/demo.sh

check: build
	$(CLI) check --config examples/sidecar.yaml

test-deps:
	@bash .ci/deps.sh

# Type-check, then every test (unit, integration on real sockets, CLI), then one summary line.
test: build test-deps
	npx tsc -p tsconfig.json --noEmit
	@mkdir -p .tmp
	@status=0; npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest.json || status=$$?; \
	  $(NODE) .ci/summary.mjs .tmp/vitest.json; exit $$status

# Benchmark (issue 9): the sidecar vs nginx, HAProxy and a bare undici proxy, each on one pinned
# core; installs nginx/haproxy from Debian if missing. Writes bench/RESULTS.md + bench/results.svg.
# BENCH_RUNS=3 BENCH_SECONDS=5 by default; see bench/README.md for the other variables.
bench: build
	$(NODE) bench/run.mjs

# Latency and memory budgets under the adversarial suite's floods, measured on the sidecar's own
# process (`make test` checks only the behaviour under the same floods). Meant to run alone on the
# machine; exits 1 if any run is over budget. FLOOD_RUNS=3 by default; see bench/README.md.
flood-budgets: build
	$(NODE) --no-warnings bench/flood-budgets.mjs

clean:
	rm -rf dist .tmp coverage
