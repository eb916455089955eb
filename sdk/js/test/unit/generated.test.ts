/** src/protocol.ts is what scripts/generate.ts makes of docs/openrpc.json, and is valid. */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { DEFAULT_INPUT, OUTPUT, type OpenRpcDocument, render, tsType } from "../../scripts/generate.js";
import { METHOD_NAMES, METHOD_SCOPES } from "../../src/protocol.js";

test("src/protocol.ts is up to date with docs/openrpc.json (npm run generate)", () => {
  const doc = JSON.parse(readFileSync(DEFAULT_INPUT, "utf8")) as OpenRpcDocument;
  assert.equal(readFileSync(OUTPUT, "utf8"), render(doc), "stale: run `npm run generate` in sdk/js");
});

test("every method of the document is typed, with its scopes", () => {
  const doc = JSON.parse(readFileSync(DEFAULT_INPUT, "utf8")) as OpenRpcDocument;
  const names = doc.methods.filter((m) => "name" in m && !m["x-notification"]).map((m) => ("name" in m ? m.name : ""));
  assert.ok(names.length > 0);
  for (const name of names) assert.ok((METHOD_NAMES as readonly string[]).includes(name), name);
  assert.ok(METHOD_NAMES.includes("vitale.read"));
  assert.ok(METHOD_SCOPES["cps.sign"].length > 0);
});

test("schemas map to the TypeScript types a reader expects", () => {
  assert.equal(tsType({ type: ["string", "null"] }), "string | null");
  assert.equal(tsType({ type: "array", items: { enum: ["a", "b"] } }), '("a" | "b")[]');
  assert.equal(tsType({ $ref: "#/components/schemas/pin_result" }), "PinResult");
  assert.equal(tsType({ type: "object", properties: { a: { type: "integer" } }, required: ["a"],
    additionalProperties: false }), "{\n  a: number;\n}");
  assert.equal(tsType({ type: "object", additionalProperties: { type: "string" } }),
    "{\n  [key: string]: string;\n}");
  assert.equal(tsType({ type: "object" }), "Record<string, unknown>");
});
