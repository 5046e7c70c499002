# eurochat developer commands. `make test` is what CI runs (.ci/run).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PYTHON ?= python3
CARGO ?= cargo

.PHONY: help setup chromium qemu check-tools fmt-check clippy lint-template lambda-build unit test run deploy-function bench-bootstrap bench-capacity bench-faults bench-handler bench-compare cost-model

help:
	@echo "make setup   install the test tools: Python (moto, cfn-lint, cargo-lambda) into $(VENV),"
	@echo "             checkov into $(CHECKOV_VENV), playwright-core into tests/browser, Debian's chromium,"
	@echo "             qemu-user-static and libc6-arm64-cross (the arm64 bootstraps under emulation)"
	@echo "make run     the local gateway with the demo widget and agent console (cargo run -p local-gateway)"
	@echo "make deploy-function STACK=… FUNCTION=… [REGION=…]  update one function's code on a deployed stack (cargo lambda deploy)"
	@echo "make test    setup + fmt check + clippy -D warnings + cfn-lint + SAM transform + checkov + arm64 Lambda builds + every test (what CI runs)"

CHECKOV_VENV := .venv-checkov

# The venv is rebuilt whenever the pinned requirements change.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet --requirement requirements-dev.txt
	touch $@

# checkov in its own venv: its pins clash with requirements-dev.txt's (boto3, botocore).
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --disable-pip-version-check --quiet --requirement requirements-checkov.txt
	touch $@

# playwright-core only, at the locked version; the browser is Debian's (npm cannot
# download browsers here, and need not).
BROWSER_DIR := tests/browser
$(BROWSER_DIR)/node_modules/.installed: $(BROWSER_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm is not installed (Node.js 20+ is required)" >&2; exit 1; }
	npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund
	touch $@

# Debian's chromium for the browser test, installed if missing (root, or sudo).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian's chromium"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; \
	fi

# qemu-user and the aarch64 glibc for tests/tests/arm64_qemu.rs (runs target/lambda/*/bootstrap
# under emulation against moto). Installed if missing (root, or sudo).
QEMU_AARCH64 := /usr/bin/qemu-aarch64-static
AARCH64_SYSROOT := /usr/aarch64-linux-gnu
qemu:
	@if [ ! -x "$(QEMU_AARCH64)" ] || [ ! -e "$(AARCH64_SYSROOT)/lib/ld-linux-aarch64.so.1" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian's qemu-user-static and libc6-arm64-cross"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq qemu-user-static libc6-arm64-cross >/dev/null; \
	fi

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed $(BROWSER_DIR)/node_modules/.installed chromium qemu check-tools

# Fails loudly, never skips: a missing tool is an error with the command that fixes it.
check-tools:
	@for tool in $(VENV)/bin/moto_server $(VENV)/bin/cfn-lint $(VENV)/bin/cargo-lambda $(CHECKOV_VENV)/bin/checkov; do \
	  if [ ! -x "$$tool" ]; then echo "error: $$tool is missing; run 'make setup'" >&2; exit 1; fi; \
	done
	@command -v $(CARGO) >/dev/null || { echo "error: cargo is not installed" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null || { echo "error: rustfmt is missing (rustup component add rustfmt)" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null || { echo "error: clippy is missing (rustup component add clippy)" >&2; exit 1; }
	@command -v node >/dev/null || { echo "error: node is not installed (Node.js 20+ is required)" >&2; exit 1; }
	@test -d $(BROWSER_DIR)/node_modules/playwright-core || { echo "error: playwright-core is missing; run 'make setup'" >&2; exit 1; }
	@test -x "$(CHROMIUM)" || { echo "error: $(CHROMIUM) is missing; run 'make setup' (apt-get install -y chromium)" >&2; exit 1; }
	@test -x "$(QEMU_AARCH64)" || { echo "error: $(QEMU_AARCH64) is missing; run 'make setup' (apt-get install -y qemu-user-static libc6-arm64-cross)" >&2; exit 1; }
	@test -e "$(AARCH64_SYSROOT)/lib/ld-linux-aarch64.so.1" || { echo "error: $(AARCH64_SYSROOT) (aarch64 glibc) is missing; run 'make setup' (apt-get install -y libc6-arm64-cross)" >&2; exit 1; }

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# cfn-lint runs the SAM transform itself; tests/sam_transform.py runs it once more
# offline (samtranslator, no AWS account) and fails on anything SAM refuses; checkov
# scans the transformed template and fails on any finding not fixed or skipped in
# template.yaml with a written reason.
lint-template: setup
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/python tests/sam_transform.py template.yaml
	tests/checkov_scan.sh template.yaml

# Every function crate, as Lambda runs it: release, arm64, provided.al2023 (cargo-lambda
# installs the aarch64 target itself). Prints each bootstrap's size.
FUNCTIONS := $(notdir $(patsubst %/Cargo.toml,%,$(wildcard functions/*/Cargo.toml)))
lambda-build: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))
	@echo "Lambda bootstrap sizes (arm64, release; limit 6 MiB = 6291456 bytes, issue 14):"
	@for f in $(FUNCTIONS); do \
	  test -f target/lambda/$$f/bootstrap || { echo "error: no bootstrap for $$f" >&2; exit 1; }; \
	  size=$$(stat -c %s target/lambda/$$f/bootstrap); \
	  printf '  %-16s %s bytes\n' "$$f" "$$size"; \
	  test "$$size" -le 6291456 || { echo "error: $$f's bootstrap is over 6 MiB" >&2; exit 1; }; \
	done

run:
	$(CARGO) run -p local-gateway

# One function of a deployed stack, with cargo-lambda (docs/deploy.md, "Updating one function
# of a deployed stack"): make deploy-function STACK=eurochat FUNCTION=message [REGION=eu-central-1]
deploy-function: $(VENV)/.installed
	@test -n "$(STACK)" -a -n "$(FUNCTION)" || { echo "usage: make deploy-function STACK=<stack> FUNCTION=<function> [REGION=<eu region>]" >&2; exit 2; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/deploy-function $(STACK) $(FUNCTION) $(if $(REGION),--region $(REGION))

# Bootstrap size and cold init (scripts/bench-bootstrap; README, "Benchmarks"): builds every
# function (arm64 for Lambda, and natively), prints each bootstrap's size against the 6 MiB
# limit (fails if one is over), the median cold init of the native release binaries to their
# first Runtime API poll, the Secrets Manager read apart, and warm invocations. A benchmark,
# not a test: `make test` does not run it. Options: BENCH_ARGS="--no-build --runs 41 ...".
bench-bootstrap: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/bench-bootstrap $(BENCH_ARGS)

# Tests that need moto start it themselves on a free loopback port (tests/src/moto.rs,
# through tests/moto_serial.py).
# The Lambda binaries are built first: tests/tests/lambda_binaries.rs runs each one as a
# process (cargo test holds the build lock, so it cannot build them itself), and
# tests/tests/arm64_qemu.rs runs the arm64 bootstraps `lambda-build` made (make test
# runs lambda-build before unit; a bare `make unit` uses whatever target/lambda holds).
# The last line totals every test binary's result, so the run ends on the real count
# rather than on cargo's (empty) doc-test summary.
unit: setup
	mkdir -p target
	$(CARGO) build --workspace --bins --locked
	EUROCHAT_MOTO_PYTHON=$(CURDIR)/$(VENV)/bin/python CHROMIUM=$(CHROMIUM) $(CARGO) test --workspace --locked 2>&1 | tee target/test-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' target/test-output.log

test: setup fmt-check clippy lint-template lambda-build unit

# Benchmarks (README.md, "Benchmarks and cost"): reported, never timed unit tests.
# The capacity and fault suites' counts are also asserted by `make test`.
bench-capacity: $(VENV)/.installed
	mkdir -p target/capacity
	EUROCHAT_MOTO_PYTHON=$(CURDIR)/$(VENV)/bin/python EUROCHAT_CAPACITY_JSON=$(CURDIR)/target/capacity \
	  $(CARGO) test --locked -p eurochat-tests --test capacity -- --nocapture --test-threads 1

bench-faults: $(VENV)/.installed
	EUROCHAT_MOTO_PYTHON=$(CURDIR)/$(VENV)/bin/python $(CARGO) test --locked -p eurochat-tests --test faults -- --nocapture

bench-handler:
	$(CARGO) bench --locked -p eurochat-tests --bench handler

bench-compare: $(VENV)/.installed
	scripts/bench-compare $(BASE)

cost-model: bench-capacity
	scripts/cost-model target/capacity/chat.json
