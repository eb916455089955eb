/** The contract checker used by the integration tests does catch answers off the schema. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { Contract } from "../support/contract.js";

test("answers, errors and events off docs/openrpc.json are reported", () => {
  const contract = new Contract();
  contract.observe({ kind: "result", method: "cps.verify_pin", value: { result: "ok", tries_left: 3 } });
  assert.deepEqual(contract.mismatches, []);
  contract.observe({ kind: "result", method: "cps.verify_pin", value: { result: "maybe", tries_left: 3 } });
  contract.observe({ kind: "error", method: "vitale.read", value: { code: -32030, message: "x", data: { reason: "expired" } } });
  contract.observe({ kind: "error", method: "vitale.read", value: { code: -32010, message: "x", data: { reason: "no_such" } } });
  contract.observe({ kind: "event", method: "card.removed", value: { slot: "s", time: 1 } });
  contract.observe({ kind: "event", method: "card.exploded", value: {} });
  assert.equal(contract.mismatches.length, 5, contract.mismatches.join("\n"));
});

test("through the bridge, -32601 is expected for pairing methods only", () => {
  const notFound = (method: string) => ({ kind: "error" as const, method,
    value: { code: -32601, message: "x", data: { reason: "method_not_found" } } });
  const direct = new Contract();
  direct.observe(notFound("pair.begin"));
  assert.equal(direct.mismatches.length, 1, "edged itself never hides pair.begin");
  const bridged = new Contract(undefined, { viaBridge: true });
  bridged.observe(notFound("pair.begin"));
  bridged.observe(notFound("nothing.here"));
  assert.deepEqual(bridged.mismatches, []);
  bridged.observe(notFound("vitale.read"));
  assert.equal(bridged.mismatches.length, 1, "the bridge answers missing_scope, not -32601, for paired methods");
});
