# The TypeScript SDK (sdk/js): npm ci installs exactly package-lock.json into sdk/js/node_modules
# (git-ignored); tests/sdk_js compiles it with tsc and runs its Node and Chromium tests.
# Included by the top Makefile after mk/firmware.mk, which makes sure node and npm are there.
SDK_JS := sdk/js

# Idempotent: the stamp is redone only when the lockfile or this file changes.
.stamp-sdk-js: .stamp-firmware mk/sdk-js.mk $(SDK_JS)/package.json $(SDK_JS)/package-lock.json
	cd $(SDK_JS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
