# taskq: every command a contributor or operator needs. `make help` lists them.

IMAGE ?= taskq:dev
COMPOSE ?= docker compose

.DEFAULT_GOAL := help
.PHONY: help run build test test-rust fmt lint docker-build docker-up docker-down run-k8s k8s-down \
        migrate-up migrate-down bench check-deploy clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: ## Run API, dashboard and a worker on SQLite (http://localhost:8080)
	cargo run --release

build: ## Build the release binary (target/release/taskq)
	cargo build --release --locked

test: ## The whole suite: PostgreSQL + SQLite, README run, browser, deployment checks
	bash scripts/test.sh

test-rust: ## Only the Rust tests (finds or starts PostgreSQL first)
	bash -c 'source scripts/postgres.sh && cargo test --locked'

fmt: ## Format the code
	cargo fmt --all

lint: ## Formatting and clippy, warnings as errors
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

docker-build: ## Build the container image
	docker build -t $(IMAGE) .

docker-up: ## Start PostgreSQL, migrations, server and workers with Docker Compose
	$(COMPOSE) up -d --build

docker-down: ## Stop the Compose stack (volumes kept)
	$(COMPOSE) down

run-k8s: ## Create a kind cluster and deploy taskq with PostgreSQL
	bash k8s/kind/up.sh

k8s-down: ## Delete the kind cluster
	bash k8s/kind/down.sh

migrate-up: ## Apply migrations to DATABASE_URL
	cargo run --release -- migrate

migrate-down: ## Revert the last migration on DATABASE_URL
	cargo run --release -- migrate down

bench: ## Run the benchmark suite against DATABASE_URL (see docs/benchmarks.md)
	bash bench/run.sh

check-deploy: ## Validate Dockerfile, compose, manifests and Helm chart
	bash deploy/check.sh

clean: ## Remove build artifacts
	cargo clean
