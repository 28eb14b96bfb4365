# mtls-sidecar — the two commands a new user needs: `make run` and `make test`.
# npm scripts and everything below run on the Node 24 that the `node` devDependency brings.
SHELL := /bin/bash
NODE := node_modules/.bin/node
CLI := $(NODE) dist/main.js

.PHONY: all install build typecheck lint test test-deps test-h2-node test-node22 run certs check clean bench flood-budgets \
  image test-image ci-summary schema

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: node_modules/.package-lock.json

build: install
	npm run build --silent

typecheck: install
	npx tsc -p tsconfig.json --noEmit

# typescript-eslint with type information (eslint.config.js); zero warnings. Part of `make test`.
lint: install
	npm run lint --silent

# Dev PKI into certs/ (CA, server cert, workload certs orders and billing, empty CRL; ECDSA P-256).
certs: build
	$(CLI) certs --out certs $(CERTS_FLAGS)

certs/ca.crt:
	$(MAKE) certs

# The demo: dev certs if missing; two small apps, orders (:8080, its sidecar on :8443) and billing
# (:8081, its sidecar on :9443); orders calls billing through both sidecars (outbound :15001).
run: build certs/ca.crt
	@bash examples/demo.sh

# The config's JSON Schema for editors, generated from the code's schema (a test keeps them equal).
schema: build
	$(NODE) -e "import('./dist/config/json-schema.js').then((m) => process.stdout.write(JSON.stringify(m.configJsonSchema(), null, 2) + '\\n'))" > docs/sidecar.schema.json

# Every example config, against the dev PKI in certs/ (written first if missing).
check: build certs/ca.crt
	@for f in examples/*.yaml; do echo "$$f:"; $(CLI) check --config "$$f" || exit 2; done

test-deps:
	@bash .ci/deps.sh

# vitest's console output, and its JSON report for .ci/summary.mjs.
REPORT = --reporter=default --reporter=json --outputFile.json=$(1)
# Runs $(1) and keeps its exit status beside its report ($(2).exit): vitest can exit non-zero on an
# unhandled error while its JSON still says every test passed, and the summary must count that run
# as failed. `status` collects the first non-zero exit for the recipe.
RUN = { $(1); }; rc=$$?; echo $$rc > $(2).exit; [ $$rc -eq 0 ] || status=$$rc

# The HTTP/2 suites run once more on node:http2, the other supported engine (the integration
# suite's h2-stream and internal-errors tests run on both by themselves).
H2_NODE_TESTS := test/adversarial/h2.test.ts test/adversarial/floods-h2-control.test.ts \
  test/adversarial/floods-h2-streams.test.ts test/integration/drain.test.ts
H2_NODE_RUN = MTLS_SIDECAR_HTTP2=node npx vitest run $(H2_NODE_TESTS) $(call REPORT,.tmp/vitest-h2-node.json)

# The oldest Node that package.json's engines allows, fetched from the npm registry into .tmp
# (the project's node_modules is not touched), runs the integration suite, the built binary's
# CLI tests and the HTTP/2 adversarial tests.
NODE22_VERSION := 22.13.0
NODE22 := .tmp/node22/node_modules/.bin/node
NODE22_TESTS := test/integration test/cli test/adversarial/h2.test.ts
NODE22_RUN = { [ "$$($(NODE22) --version 2>/dev/null)" = v$(NODE22_VERSION) ] || \
    npm install --no-save --no-audit --no-fund --prefix .tmp/node22 node@$(NODE22_VERSION); } && \
  $(NODE22) node_modules/vitest/vitest.mjs run $(NODE22_TESTS) $(call REPORT,.tmp/vitest-node22.json)

TEST_REPORTS := "Node 24=.tmp/vitest.json" "node:http2 engine=.tmp/vitest-h2-node.json" \
  "Node $(NODE22_VERSION)=.tmp/vitest-node22.json"
IMAGE_REPORT := "image smoke test=.tmp/vitest-image.json"

# Type-check, then every test (unit, integration on real sockets, CLI) on Node 24, the HTTP/2
# suites on node:http2, the integration suite on Node 22; a summary line for each run, and the
# total last.
test: build test-deps
	npx tsc -p tsconfig.json --noEmit
	npm run lint --silent
	@mkdir -p .tmp && rm -f .tmp/vitest.json .tmp/vitest-h2-node.json .tmp/vitest-node22.json .tmp/vitest.json.exit .tmp/vitest-h2-node.json.exit .tmp/vitest-node22.json.exit
	@status=0; $(call RUN,npx vitest run $(call REPORT,.tmp/vitest.json),.tmp/vitest.json); \
	  $(call RUN,$(H2_NODE_RUN),.tmp/vitest-h2-node.json); \
	  $(call RUN,$(NODE22_RUN),.tmp/vitest-node22.json); \
	  $(NODE) .ci/summary.mjs $(TEST_REPORTS); exit $$status

test-h2-node: build test-deps
	@mkdir -p .tmp && rm -f .tmp/vitest-h2-node.json .tmp/vitest-h2-node.json.exit
	@status=0; $(call RUN,$(H2_NODE_RUN),.tmp/vitest-h2-node.json); $(NODE) .ci/summary.mjs .tmp/vitest-h2-node.json; exit $$status

test-node22: build test-deps
	@mkdir -p .tmp && rm -f .tmp/vitest-node22.json .tmp/vitest-node22.json.exit
	@status=0; $(call RUN,$(NODE22_RUN),.tmp/vitest-node22.json); $(NODE) .ci/summary.mjs .tmp/vitest-node22.json; exit $$status

# The container image (Dockerfile), host networking only. Where node:24-bookworm-slim cannot be
# pulled, deploy/image/local-node-image.sh builds a stand-in base first. IMAGE=name:tag to tag it
# otherwise; NODE_IMAGE, NPM_CONFIG_REGISTRY, NPM_CA_FILE: see deploy/image/build.sh.
image:
	@bash deploy/image/build.sh

# The image smoke test (test/image): starts the Docker engine if it is not running, builds the
# image and runs the CLI, the sidecar and the webhook in containers as a cluster runs them.
test-image: install
	@bash .ci/image-deps.sh
	@mkdir -p .tmp && rm -f .tmp/vitest-image.json .tmp/vitest-image.json.exit
	@status=0; $(call RUN,npx vitest run --config test/image/vitest.config.ts $(call REPORT,.tmp/vitest-image.json),.tmp/vitest-image.json); \
	  $(NODE) .ci/summary.mjs $(IMAGE_REPORT); exit $$status

# CI's closing line: every run of `make test` and the image smoke test, and their total.
ci-summary:
	@$(NODE) .ci/summary.mjs $(TEST_REPORTS) $(IMAGE_REPORT)

# Benchmark: the sidecar vs nginx, HAProxy and a bare undici proxy, each on one pinned
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
