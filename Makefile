# The README's two commands: `make demo` (install, then serve the offline CPU demo) and
# `make test` (install, then run the whole suite). Everything installs into $(VENV).

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8081
# A portable llama.cpp build (no -march=native), so a cached wheel runs on any x86-64 CPU.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install demo test lint bench check clients browser soak stateful webui

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml deploy/requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: the versions every runtime here (transformers, torchvision for
	# Qwen3.5 vision, torchaudio for Chatterbox) was seen working with.
	$(PIP) install --quiet torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1
	$(PIP) install --quiet -e '.[all,test]'
	# Packages whose metadata pins conflict with the above but which run fine with it.
	$(PIP) install --quiet --no-deps -r deploy/requirements-nodeps.txt
	touch $@

demo: install
	$(VENV)/bin/llmux serve --config config/demo --host $(HOST) --port $(PORT) --allow-demo-keys

# Static checks, part of `make test`: lint and format (ruff), types (mypy), and the layer
# contract (import-linter: layers point down, no cycles, lazy imports included).
lint: install
	$(VENV)/bin/ruff check llmux
	$(VENV)/bin/ruff format --check llmux
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The real clients the end-to-end tests drive (OpenCode's and Codex's CLIs, prebuilt binaries from npm),
# pinned by clients/package-lock.json, installed into clients/node_modules (gitignored).
clients: clients/node_modules/.installed

clients/node_modules/.installed: clients/package.json clients/package-lock.json
	npm install --prefix clients --no-audit --no-fund
	touch $@

# The dashboard's browser test (tests/e2e/test_dashboard.py) drives Debian's Chromium with
# playwright-core from npm: both are part of `make test`.
browser: clients/browser/node_modules/.installed /usr/bin/chromium

test: lint clients browser
	$(PY) -m pytest

# Open WebUI in a real browser against the demo (not part of `make test`: ~3 GB, its own torch).
# Open WebUI's wheel needs Python <3.13, so it gets its own virtualenv; torch is pinned first (CPU).
# Chromium comes from Debian, playwright-core (pinned by clients/browser/package-lock.json) from npm.
WEBUI_PYTHON ?= python3.11
WEBUI_VENV := clients/webui-venv

webui: install $(WEBUI_VENV)/.installed browser
	$(PY) -m pytest -q -s -p no:cacheprovider tests/webui

$(WEBUI_VENV)/.installed:
	$(WEBUI_PYTHON) -m venv $(WEBUI_VENV)
	$(WEBUI_VENV)/bin/pip install --quiet --upgrade pip
	$(WEBUI_VENV)/bin/pip install --quiet torch==2.13.0
	$(WEBUI_VENV)/bin/pip install --quiet open-webui==0.12.4
	touch $@

clients/browser/node_modules/.installed: clients/browser/package.json clients/browser/package-lock.json
	npm ci --prefix clients/browser --no-audit --no-fund
	touch $@

/usr/bin/chromium:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

# The full soak (the suite runs a bounded 1,200 requests): 5,000 mixed requests, 16 clients,
# a fifth of them abandoned, a twentieth to a model whose loads fail or hang; figures in soak.json.
soak: install
	LLMUX_SOAK_REQUESTS=5000 LLMUX_SOAK_REPORT=soak.json $(PY) -m pytest -q tests/soak

# The residency controller's stateful property suite with long runs: 50 runs of 10,000 steps
# each (the test sizes Hypothesis's choice buffer for them); steps reached in stateful.json.
stateful: install
	LLMUX_STATEFUL_EXAMPLES=50 LLMUX_STATEFUL_STEPS=10000 LLMUX_STATEFUL_REPORT=stateful.json $(PY) -m pytest -q tests/property/test_controller_stateful.py

bench: install
	$(PY) -m bench

check: install
	$(VENV)/bin/llmux check --config config
