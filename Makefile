# bifente: the two commands are `make demo` and `make test`; both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
APT_PKGS := pcscd vsmartcard-vpcd libpcsclite-dev opensc openssl gcc swig pkg-config procps \
            avahi-daemon avahi-utils chromium
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup test demo bench lint clean

help:
	@echo "make demo   - bring up simulated cards and run the front-desk scenario"
	@echo "make test   - run every test (unit, firmware, end to end through pcscd + vpcd)"
	@echo "make bench  - print benchmark medians and ratios"
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

.stamp-venv: pyproject.toml $(PY) .stamp-apt
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

include mk/firmware.mk
include mk/node-tools.mk
include mk/sdk-js.mk

setup: .stamp-apt .stamp-venv .stamp-firmware .stamp-node-tools .stamp-sdk-js

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest  # exit 5 (no tests collected) fails the target

demo: setup
	$(PY) -m edged.cli.main demo

bench: setup
	$(PY) -m bench

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .stamp-* .pytest_cache .ruff_cache .hypothesis typings firmware/tools/node_modules \
	  tools/openrpc/node_modules tools/web/node_modules sdk/js/node_modules sdk/js/dist
