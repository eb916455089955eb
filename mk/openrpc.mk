# The published OpenRPC validator (@open-rpc/schema-utils-js) and meta-schema, for
# tests/edged/test_openrpc.py. Idempotent: npm ci installs exactly package-lock.json into
# tools/openrpc/node_modules (git-ignored); npm itself comes with the firmware toolchain.
OPENRPC_TOOLS := tools/openrpc

.stamp-openrpc: .stamp-firmware mk/openrpc.mk $(OPENRPC_TOOLS)/package.json $(OPENRPC_TOOLS)/package-lock.json
	cd $(OPENRPC_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
