# Convenience targets; the scripts in .ci/ are the source of truth (CI runs `bash .ci/run`).
#   make start   build and start FlexiProxy (tray app with a display, else headless)
#   make test    everything CI checks: fmt, clippy, cargo tests, build, end-to-end tests
#   make e2e     only the end-to-end tests (builds the binary first); PYTEST_ARGS="-k secrets"
#   make lint    cargo fmt --check and clippy -D warnings
#   make fmt     format the Rust code
#   make bench   the benchmark (release build)
#   make soak    1,000 streams through the release flexiproxy binary for 10 minutes (~15 min);
#                SOAK_ARGS="--streams 200 --minutes 1" for a short one
#   make bundle  the release .deb (and the AppImage when its tools can be had), see README "Install"

.PHONY: start test e2e lint fmt bench soak setup bundle

start:
	./.ci/start

test:
	./.ci/run

e2e:
	./.ci/setup
	cargo build -p flexiproxy --quiet
	E2E_ONLY=1 ./.ci/run $(PYTEST_ARGS)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench:
	cargo run --release -p flexiproxy-bench -- run

soak:
	cargo build --release -p flexiproxy -p flexiproxy-bench
	./target/release/flexiproxy-bench soak --gateway-bin target/release/flexiproxy $(SOAK_ARGS)

setup:
	./.ci/setup

bundle:
	./.ci/bundle
