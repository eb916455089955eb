// Validate an OpenRPC document with the published validator (@open-rpc/schema-utils-js).
// Usage: node validate.mjs docs/openrpc.json    -> exit 0 when valid, 1 with the errors
//        node validate.mjs --meta-schema        -> print the OpenRPC meta-schema and the JSON
//                                                  Schema meta-schema it refers to (JSON)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const arg = process.argv[2];
if (arg === "--meta-schema") {
  const meta = require("@open-rpc/meta-schema");
  const jsonSchema = require("@json-schema-tools/meta-schema");
  process.stdout.write(JSON.stringify({ openrpc: meta.default ?? meta,
                                        jsonSchema: jsonSchema.default ?? jsonSchema }));
  process.exit(0);
}
const { validateOpenRPCDocument } = require("@open-rpc/schema-utils-js");
const doc = JSON.parse(readFileSync(arg, "utf8"));
const result = validateOpenRPCDocument(doc);
if (result === true) {
  console.log(`${arg}: valid OpenRPC ${doc.openrpc}, ${doc.methods.length} methods`);
  process.exit(0);
}
console.error(`${arg}: invalid OpenRPC document`);
console.error(String(result.message ?? result));
process.exit(1);
