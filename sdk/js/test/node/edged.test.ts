/**
 * The Node build against a real `edged --simulate` (started by tests/sdk_js/test_node_sdk.py):
 * pinning, pairing with the code read off the virtual display, mutual TLS, the cards, the PIN
 * typed on the virtual keypad, a CPS signature verified here, events, scopes and limits.
 */

import assert from "node:assert/strict";
import { constants, verify, X509Certificate } from "node:crypto";
import { after, before, test } from "node:test";

import {
  type Client, connect, connectWith, type Credentials, loadCredentials, pair, PinMismatchError,
  RemoteError, RequestTooLargeError, saveCredentials,
} from "../../src/node.js";
import { Contract } from "../support/contract.js";
import { env, Terminal } from "../support/terminal.js";

const host = env("EDGED_HOST");
const port = Number(env("EDGED_PORT"));
const fingerprint = env("EDGED_FINGERPRINT");
const terminal = new Terminal(env("EDGED_CONTROL"));
const contract = new Contract(); // every answer and event below is checked against docs/openrpc.json
const observe = contract.observe;

/** Read the pairing code off the display, as the receptionist does. */
async function codeOnDisplay(): Promise<string> {
  const lines = await terminal.waitFor(/\d{6}/);
  return /(\d{6})/.exec(lines.join("\n"))![1]!;
}

let credentials: Credentials;
let client: Client;

const wrongCodes: number[] = [];

before(async () => {
  let typed = 0; // the receptionist mistypes the code once, then reads it again
  credentials = await pair({
    host, port, fingerprint, name: "Node front desk", scopes: ["identity:read", "cps:sign"],
    readCode: async () => {
      const shown = await codeOnDisplay();
      return typed++ === 0 ? (shown === "000000" ? "111111" : "000000") : shown;
    },
    onWrongCode: (left) => wrongCodes.push(left), observe,
  });
  client = await connectWith(credentials, { observe });
});

after(async () => {
  await client?.close();
});

test("a wrong pin fails inside the TLS handshake, before the WebSocket request", async () => {
  const wrong = fingerprint.replace(/^./, (c) => (c === "0" ? "1" : "0"));
  await assert.rejects(connect({ host, port, fingerprint: wrong }), (error: unknown) => {
    assert.ok(error instanceof PinMismatchError);
    assert.equal(error.actual, fingerprint);
    return true;
  });
});

test("with the device CA the chain is checked in the handshake: a wrong CA is refused", async () => {
  const wrongCa = { ...credentials, ca_pem: credentials.certificate_pem }; // not the terminal's CA
  await assert.rejects(connectWith(wrongCa), (error: unknown) => {
    assert.ok(!(error instanceof PinMismatchError)); // refused by OpenSSL, before the pin check
    assert.match(String((error as { code?: string }).code), /CERT|VERIFY|SIGNATURE|ISSUER/);
    return true;
  });
});

test("unpaired: only pair.* is allowed, and a wrong code costs an attempt", async () => {
  const unpaired = await connect({ host, port, fingerprint: `SHA256:${fingerprint.toUpperCase()}`, observe });
  try {
    await assert.rejects(unpaired.call("system.info"),
      (e: unknown) => e instanceof RemoteError && e.code === -32000 && e.reason === "not_paired");
    const { publicKey } = await import("node:crypto").then((c) => c.generateKeyPairSync("ec", { namedCurve: "P-256" }));
    const begun = await unpaired.call("pair.begin", {
      name: "Node wrong code", csr: publicKey.export({ type: "spki", format: "pem" }).toString(),
    });
    const shown = await codeOnDisplay();
    const wrongCode = shown === "000000" ? "111111" : "000000";
    await assert.rejects(unpaired.call("pair.complete", { pairing_id: String(begun.pairing_id), code: wrongCode }),
      (e: unknown) => e instanceof RemoteError && e.reason === "wrong_code" && e.data["attempts_left"] === 2);
  } finally {
    await unpaired.close();
  }
});

test("pairing gave a certificate for our key, with the scopes asked for", async () => {
  assert.deepEqual(wrongCodes, [2]); // one mistyped code, asked again, then paired
  assert.deepEqual([...credentials.scopes].sort(), ["cps:sign", "identity:read"]);
  const cert = new X509Certificate(credentials.certificate_pem);
  assert.match(cert.subject, /CN=Node front desk/);
  assert.ok(cert.checkIssued(new X509Certificate(credentials.ca_pem)));
  const info = await client.call("system.info");
  assert.equal(info.protocol, "1.0");
  assert.equal(info.fingerprint, fingerprint);
});

test("readers.list and vitale.read through the terminal", async () => {
  const { slots } = await client.call("readers.list");
  assert.deepEqual(slots?.map((s) => s.kind).sort(), ["cps", "vitale"]);
  const card = await client.call("vitale.read");
  const names = (card.beneficiaries ?? []).map((b) => `${b.first_name} ${b.name}`);
  assert.ok(names.includes("Pierre LEFEBVRE"), names.join(", "));
  for (const b of card.beneficiaries ?? []) {
    assert.match(b.ins?.value ?? "", /^[12]\d{14}$/);
    assert.match(b.birth_date ?? "", /^\d{8}$/);
  }
});

test("the PIN is typed on the keypad; the signature verifies with the card's certificate", async () => {
  assert.deepEqual(await client.subscribe(["pin.state"]), ["pin.state"]);
  const info = await client.call("cps.info");
  assert.equal(info["display_name"], "Dr Claire MARTIN");
  const pinEvent = client.nextEvent("pin.state", 30_000);
  const verifying = client.call("cps.verify_pin");
  await terminal.waitFor(/PIN/);
  await terminal.press("1234", "OK");
  assert.deepEqual(await verifying, { result: "ok", tries_left: 3 });
  const event = await pinEvent;
  assert.equal(event["result"], "ok");
  assert.equal(typeof event.time, "number");

  const report = Buffer.from("Compte rendu de consultation, 5 décembre 2026", "utf8");
  const signed = await terminal.confirmWhile(client.call("cps.sign", { data: report.toString("base64") }));
  const certificate = new X509Certificate(Buffer.from(signed.certificate, "base64"));
  assert.ok(verify("sha256", report, { key: certificate.publicKey, padding: constants.RSA_PKCS1_PADDING },
    Buffer.from(signed.signature, "base64")));
  assert.ok(!verify("sha256", Buffer.from("something else"),
    { key: certificate.publicKey, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(signed.signature, "base64")));
});

test("card events: the Vitale card pulled and put back", async () => {
  await client.subscribe(["card.removed", "card.inserted"]);
  const removed = client.nextEvent("card.removed", 15_000);
  await terminal.remove(1);
  const gone = await removed;
  assert.equal(gone["kind"], "vitale");
  const inserted = client.nextEvent("card.inserted", 15_000);
  await terminal.insert(1);
  assert.equal((await inserted)["kind"], "vitale");
});

test("an oversized request fails at once in the SDK, and the connection stays usable", async () => {
  const data = Buffer.alloc(900 * 1024, 7).toString("base64"); // 1.2 MB of base64
  const started = Date.now();
  await assert.rejects(client.call("cps.sign", { data }), RequestTooLargeError);
  assert.ok(Date.now() - started < 200);
  assert.equal((await client.call("system.info")).protocol, "1.0");
});

test("a method outside the client's scopes is refused with missing_scope", async () => {
  const reader = await pair({ host, port, fingerprint, name: "Node reader", readCode: codeOnDisplay, observe });
  assert.deepEqual(reader.scopes, ["identity:read"]);
  const limited = await connectWith(reader, { observe });
  try {
    await assert.rejects(limited.call("cps.sign", { data: "AAAA" }),
      (e: unknown) => e instanceof RemoteError && e.code === -32001 && e.reason === "missing_scope");
    await assert.rejects(limited.callUntyped("no.such_method"),
      (e: unknown) => e instanceof RemoteError && e.code === -32601);
  } finally {
    await limited.close();
  }
});

test("credentials are saved in the Python SDK's format (0600) and load back", async () => {
  const dir = env("BIFENTE_CLIENT_DIR");
  const path = saveCredentials(credentials, dir);
  const { statSync } = await import("node:fs");
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const loaded = loadCredentials(dir);
  assert.equal(loaded.length, 1);
  const again = await connectWith(loaded[0]!, { observe });
  assert.equal((await again.call("system.info")).fingerprint, fingerprint);
  await again.close();
});

test("every answer and event above matched docs/openrpc.json", () => {
  assert.deepEqual(contract.mismatches, []);
  for (const key of ["result pair.complete", "error pair.complete", "error system.info", "result vitale.read",
    "result cps.verify_pin", "result cps.sign", "event pin.state", "event card.removed", "error cps.sign"]) {
    assert.ok(contract.seen.has(key), `${key} was never checked (${[...contract.seen].join(", ")})`);
  }
});
