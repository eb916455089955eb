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
