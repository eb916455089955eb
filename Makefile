# bifente: the two commands are `make demo` and `make test`; both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
APT_PKGS := pcscd vsmartcard-vpcd libpcsclite-dev opensc openssl gcc swig pkg-config procps \
            gnutls-bin libengine-pkcs11-openssl \
            avahi-daemon avahi-utils chromium jq systemd \
            default-jdk-headless libjackson2-databind-java
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup test demo bench lint clean fuzz soak

help:
	@echo "make demo   - bring up simulated cards and run the front-desk scenario"
	@echo "make test   - run every test (unit, firmware, end to end through pcscd + vpcd)"
	@echo "make bench  - print benchmark medians and ratios"
	@echo "make fuzz   - run every fuzz harness in turn (FUZZ_SECONDS each, FUZZ_RUNS inputs at most)"
	@echo "make soak   - 100 paired clients against a real edged (SOAK_SECONDS, default 600)"
	@echo "make setup  - install apt packages, the virtual environment and Python packages"

# apt: install only what is missing, so a second run costs nothing.
.stamp-apt: Makefile
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing apt packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The client SDK (bifente-client, sdk/python/pyproject.toml: what a clinic workstation
# installs alone), the product (bifente, which depends on it) and, for tests and the demo, the
# simulators (bifente-sim, a separate distribution: simulators/pyproject.toml) that a Pi
# install never gets.
.stamp-venv: pyproject.toml sdk/python/pyproject.toml simulators/pyproject.toml $(PY) .stamp-apt
	$(PY) -m pip install -q -e './sdk/python[check]' -e '.[dev]' -e ./simulators
	@touch $@

include mk/firmware.mk
include mk/node-tools.mk
include mk/sdk-js.mk

setup: .stamp-apt .stamp-venv .stamp-firmware .stamp-node-tools .stamp-sdk-js

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest  # exit 5 (no tests collected) fails the target

demo: setup
	$(PY) -m bifente.edged.cli.main demo

bench: setup
	$(PY) -m bench

# Long fuzz run: one harness at a time, niced (the machine is shared); figures on stdout as
# one JSON line per harness, corpora and findings kept in FUZZ_DIR (docs/reliability.md).
FUZZ_SECONDS ?= 600
FUZZ_RUNS    ?= 1000000
FUZZ_DIR     ?= artifacts/fuzz
fuzz: setup
	nice -n 19 $(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) --runs $(FUZZ_RUNS) --keep-going \
	  --workdir $(FUZZ_DIR)

SOAK_SECONDS ?= 600
soak: setup
	$(PY) -m tests.soak --seconds $(SOAK_SECONDS)

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .stamp-* .pytest_cache .ruff_cache .hypothesis typings firmware/tools/node_modules \
	  tools/openrpc/node_modules tools/web/node_modules sdk/js/node_modules sdk/js/dist
