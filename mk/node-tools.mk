# Node tools for the tests, each pinned by its package-lock.json and installed by npm ci into
# its own node_modules (git-ignored); npm itself comes with the firmware toolchain.
# - tools/openrpc: the published OpenRPC validator (@open-rpc/schema-utils-js) and meta-schema,
#   for tests/edged/test_openrpc.py;
# - tools/web: axe-core, injected into the patient pages by tests/web/test_patient_a11y.py;
# - tools/codegen: quicktype, which generates docs/integrators.md's Java data classes in
#   tests/sdk_js/test_java_example.py.
NODE_TOOLS := tools/openrpc tools/web tools/codegen

.stamp-node-tools: .stamp-firmware mk/node-tools.mk $(foreach t,$(NODE_TOOLS),$(t)/package.json $(t)/package-lock.json)
	for t in $(NODE_TOOLS); do (cd $$t && npm ci --no-audit --no-fund --loglevel=error) || exit 1; done
	@touch $@
