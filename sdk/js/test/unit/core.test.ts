/** The transport-independent client with a fake wire: ids, out-of-order answers, errors, events. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { CallTimeoutError, Client, ConnectionClosedError, RemoteError, RequestTooLargeError } from "../../src/core.js";

function fake(): { client: Client; sent: Record<string, unknown>[] } {
  const sent: Record<string, unknown>[] = [];
  const client = new Client({ send: (text) => sent.push(JSON.parse(text)), close: () => client.closedBy(1000, "") },
    { maxMessageBytes: 1024 });
  return { client, sent };
}

test("answers are matched by id, in any order; errors carry code and reason", async () => {
  const { client, sent } = fake();
  const first = client.call("system.info");
  const second = client.call("readers.list");
  assert.deepEqual(sent.map((m) => [m["jsonrpc"], m["method"], m["params"]]),
    [["2.0", "system.info", {}], ["2.0", "readers.list", {}]]);
  client.receive(JSON.stringify({ jsonrpc: "2.0", id: sent[1]!["id"], result: { slots: [] } }));
  client.receive(JSON.stringify({ jsonrpc: "2.0", id: sent[0]!["id"],
    error: { code: -32001, message: "missing scope", data: { reason: "missing_scope", scopes: ["x"] } } }));
  assert.deepEqual(await second, { slots: [] });
  await assert.rejects(first, (e: unknown) => e instanceof RemoteError && e.code === -32001
    && e.reason === "missing_scope" && Array.isArray(e.data["scopes"]));
});

test("too large fails at once; a timeout and a close fail pending calls", async () => {
  const { client } = fake();
  await assert.rejects(client.call("cps.sign", { data: "A".repeat(2000) }), RequestTooLargeError);
  await assert.rejects(client.call("system.info", {}, { timeout: 20 }), CallTimeoutError);
  const pending = client.call("system.info");
  client.closedBy(4403, "revoked");
  await assert.rejects(pending, (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 4403);
  await assert.rejects(client.call("system.info"), ConnectionClosedError);
  assert.deepEqual(await client.closed, { code: 4403, reason: "revoked" });
});

test("notifications reach listeners of their name and of '*'; unroutable answers are ignored", async () => {
  const { client } = fake();
  const seen: string[] = [];
  client.on("*", (e) => seen.push(`*:${e.event}`));
  const next = client.nextEvent("card.removed", 1000);
  client.receive(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "x" } }));
  client.receive("not json");
  client.receive(JSON.stringify({ jsonrpc: "2.0", method: "card.removed", params: { slot: "s", kind: "vitale", time: 1 } }));
  const event = await next;
  assert.equal(event.event, "card.removed");
  assert.equal(event["kind"], "vitale");
  assert.deepEqual(seen, ["*:card.removed"]);
});

test("observe sees every answer and event; an id-null error explains the close that follows", async () => {
  const seen: string[] = [];
  const sent: Record<string, unknown>[] = [];
  const client = new Client({ send: (text) => sent.push(JSON.parse(text)), close: () => undefined },
    { observe: (m) => seen.push(`${m.kind} ${m.method}`) });
  const call = client.call("system.info");
  client.receive(JSON.stringify({ jsonrpc: "2.0", id: sent[0]!["id"], result: { protocol: "1.0" } }));
  await call;
  const pending = client.call("readers.list");
  client.receive(JSON.stringify({ jsonrpc: "2.0", method: "card.inserted", params: { time: 1 } }));
  client.receive(JSON.stringify({ jsonrpc: "2.0", id: null,
    error: { code: -32003, message: "too many connections for this client", data: { reason: "too_many_connections" } } }));
  client.closedBy(1008, "");
  await assert.rejects(pending, (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 1008
    && e.closeReason === "too many connections for this client");
  assert.deepEqual(seen, ["result system.info", "event card.inserted", "unroutable "]);
});

test("before its first large request the client learns the daemon's limit, once", async () => {
  const sent: Record<string, unknown>[] = [];
  const client = new Client({ send: (text) => sent.push(JSON.parse(text)), close: () => undefined });
  const answer = (result: unknown): void => {
    client.receive(JSON.stringify({ jsonrpc: "2.0", id: sent.at(-1)!["id"], result }));
  };
  const tooLarge = client.call("cps.sign", { data: "A".repeat(6000) });
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.at(-1)!["method"], "system.info");
  answer({ limits: { max_message_bytes: 5000 } });
  await assert.rejects(tooLarge, (e: unknown) => e instanceof RequestTooLargeError && e.limit === 5000);
  const fits = client.call("cps.sign", { data: "A".repeat(4500) });
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.at(-1)!["method"], "cps.sign");
  answer({ algorithm: "sha256WithRSAEncryption", signature: "", certificate: "" });
  await fits;
  assert.equal(sent.filter((m) => m["method"] === "system.info").length, 1);
});
