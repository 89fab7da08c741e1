# closedloop: one Python project in .venv, pinned with hashes by requirements/*.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTO_STAMP := libs/closedloop/.protos-generated
PYTEST_ARGS ?=

# Re-pins the three sets from their sources (keeping today's versions where they still
# fit): runtime (what an image installs), dev (tests, lint, docs, code generation) and
# codegen (the image's build stage). `make lock UPGRADE=--upgrade` takes newest releases.
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet \
	--generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
	--no-emit-find-links $(UPGRADE)
lock: $(STAMP)
	$(PIP_COMPILE) -o requirements/runtime.txt pyproject.toml
	$(PIP_COMPILE) --extra dev -c requirements/runtime.txt -o requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/codegen.txt requirements/codegen.in

.PHONY: install lock protos release-protos lint fmt typecheck test test-unit test-integration test-e2e run demo stop bench clean

install: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

protos: $(PROTO_STAMP)

$(PROTO_STAMP): $(STAMP) $(PROTO_FILES)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=libs --pyi_out=libs \
		--grpc_python_out=libs --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--mypy_grpc_out=libs $(PROTO_FILES)
	touch $(PROTO_STAMP)

# The API as last released, a buf image: `buf breaking` holds every change to it
# additive. Cut a release with `make release-protos VERSION=v0.2.0`, then point
# RELEASED_PROTOS at the new image.
RELEASED_PROTOS := released/closedloop-v0.1.0.binpb

lint: typecheck
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint
	cd protos && ../$(BIN)/buf breaking --against $(RELEASED_PROTOS)

release-protos: $(STAMP)
	test -n "$(VERSION)" || { echo "usage: make release-protos VERSION=v0.2.0"; exit 2; }
	cd protos && ../$(BIN)/buf build -o released/closedloop-$(VERSION).binpb

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: protos
	$(BIN)/mypy libs/closedloop services apps tests

test: protos chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: protos
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: protos
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: protos
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

run: protos
	$(BIN)/python -m apps.devrun

demo: protos
	$(BIN)/python -m apps.demo $(DEMO_ARGS)

stop:
	@if [ -f var/devrun.pid ] && kill -0 "$$(cat var/devrun.pid)" 2>/dev/null; then \
		kill -TERM "$$(cat var/devrun.pid)"; \
		while kill -0 "$$(cat var/devrun.pid)" 2>/dev/null; do sleep 0.2; done; \
		echo "closedloop stopped."; \
	else echo "closedloop is not running in the background."; fi
	@rm -f var/devrun.pid

# Debian's chromium and chromium-driver for the dashboard's browser test, installed only
# where one is missing, apt-get exists and we are root. Never fails the build: where
# they cannot be installed, the browser test skips and says why.
.PHONY: chromium
chromium:
	-@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver for the browser test..."; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
			|| echo "could not install chromium; the browser test will be skipped"; \
	fi

bench: protos
	$(BIN)/python tests/bench/run_all.py

# The documentation site (mkdocs.yml): the API and event reference is generated from the
# protos' comments into docs/reference/ (never committed), then the site is built into
# build/site, strictly: a link to a missing page or anchor fails the build.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m apps.protodocs --protos protos --out docs/reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) var build .pytest_cache .mypy_cache .ruff_cache $(PROTO_STAMP)
	rm -rf docs/reference
	find libs/closedloop -path '*/v1/*_pb2*' -delete
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
