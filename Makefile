# mksgate: the two commands are `make demo` and `make test`; both install
# what they need (scripts/setup.sh) on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
MODULE := target/mksgate/mksgate_filter.wasm

.PHONY: help setup build test lint test-native test-wasm test-envoy-oldest test-envoy-versions test-observability test-scale-short test-soak-short demo demo-fleet fuzz bench bench-calls bench-stages bench-scale soak-long failover bench-fleet release clean

help:
	@echo "make demo   - build, start ESXi stand-ins + Envoy on localhost, print a signed console link"
	@echo "make demo-fleet - two gateways and a 3-member etcd: one link admitted once, replayed on the other gateway"
	@echo "make test   - the whole suite (lint, unit, wasm, Envoy end-to-end, interop); what CI runs"
	@echo "make build  - build the shipped module: $(MODULE)"
	@echo "make fuzz   - about a minute of each fuzz target, then the long wire fuzzer in real Envoy"
	@echo "make bench  - the benchmark against HAProxy and plain Envoy (writes BENCHMARKS.md)"
	@echo "make bench-calls - what each kind of host call mksgate makes costs Envoy (about 4 minutes)"
	@echo "make bench-stages - mksgate's own decision, stage by stage, timed in V8 (under a minute)"
	@echo "make bench-scale - open consoles per gateway: 1,000-9,500 TLS consoles on four systems (about 15 minutes)"
	@echo "make soak-long  - 30 minutes at 2,000 open consoles with churn: heap, RSS and VM memory sampled (about 32 minutes)"
	@echo "make failover   - five etcd leader kills under load: the failover window against the election"
	@echo "make bench-fleet - the etcd store's cost per handshake as deployed, next to etcd's own transaction"
	@echo "make release - the module, the OCI image and the CLI of this version, checked against each other (target/release-VERSION)"
	@echo "make test-envoy-versions - the core end-to-end suite on every Envoy 1.36-1.40 on PyPI (about 30 minutes)"

setup:
	scripts/setup.sh

build: setup
	scripts/build-module.sh all

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p mksgate-filter --target wasm32-wasip1 -- -D warnings
	# The fuzz crate is outside the workspace: check it still builds.
	cargo check --manifest-path fuzz/Cargo.toml --all-targets

test-native: build
	scripts/setup-browser.sh
	cargo test --workspace

test-wasm: setup
	scripts/test-core-wasm.sh
	scripts/bench-stages.sh 200 3

# The oldest supported Envoy gets the short core suite in every `make test`
# (the newest runs everything, in test-native).
test-envoy-oldest: build
	source scripts/lib/envoy.sh && scripts/test-envoy-versions.sh --short "$$ENVOY_OLDEST_SUPPORTED"

test-envoy-versions: build
	scripts/test-envoy-versions.sh

# The operations kit: the rules parse, each alert fires on what should fire
# it and not otherwise, the scrape config and the dashboard load.
test-observability: setup
	promtool check rules deploy/observability/mksgate-rules.yaml
	cd deploy/observability && promtool test rules mksgate-rules.test.yaml
	promtool check config deploy/observability/scrape.yaml
	python3 -c 'import json,sys; d=json.load(open("deploy/observability/grafana-dashboard.json")); assert d["panels"], "no panels"'

# The short version of `make bench-scale`: 300 TLS consoles held on Envoy +
# noop and Envoy + mksgate, every one carrying its frames to the end.
test-scale-short: build
	scripts/bench-scale.sh --short

# Two minutes of the long soak: 1,000 consoles with churn and refused links.
test-soak-short: build
	scripts/soak-long.sh --short

test: lint test-observability test-native test-wasm test-envoy-oldest test-scale-short test-soak-short
	@echo "make test: all suites passed"

demo: build
	scripts/setup-browser.sh
	cargo run --quiet --release -p mksgate-host-tests --bin mksgate-demo

# Two gateways sharing one-time links in a 3-member etcd cluster, and a
# page that shows a link admitted by one and `replayed` on the other.
demo-fleet: build
	cargo run --quiet --release -p mksgate-host-tests --bin mksgate-demo-fleet

fuzz: build
	scripts/fuzz.sh 60
	scripts/fuzz-wire.sh 12000

bench: build
	scripts/bench.sh

bench-calls: build
	scripts/bench-calls.sh

bench-stages: setup
	scripts/bench-stages.sh

bench-scale: build
	scripts/bench-scale.sh

soak-long: build
	scripts/soak-long.sh

failover: build
	MKSGATE_FAILOVER_KILLS=5 cargo test -p mksgate-host-tests --test e2e_fleet_failover -- --nocapture

# The etcd store's cost per handshake as deployed (3 members, fsync, TLS,
# access control) against the local table and etcd's own transaction.
bench-fleet: build
	MKSGATE_FLEET_COST_N=1000 cargo test -p mksgate-host-tests --test e2e_fleet_cost -- --nocapture

release:
	scripts/release.sh

clean:
	cargo clean
