/**
 * The browser path in headless Debian Chromium (playwright-core, no browser download): a web
 * clinic app served from https://clinic.test reads the Vitale card and gets a CPS signature
 * through `bifente bridge`, the doctor typing the PIN on the virtual terminal's keypad; the
 * same page served from https://evil.test, even with the stolen token, gets nothing.
 *
 * tests/sdk_js/test_browser_bridge.py starts edged --simulate, pairs the bridge, allows the
 * clinic origin, serves the pages over HTTPS and passes everything through the environment.
 */

import assert from "node:assert/strict";
import { constants, verify, X509Certificate } from "node:crypto";
import { after, before, test } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";

import type { Observed } from "../../src/core.js";
import { Contract } from "../support/contract.js";
import { env, Terminal } from "../support/terminal.js";

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const bridgeUrl = env("BRIDGE_URL");
const token = env("BRIDGE_TOKEN");
const clinicUrl = env("CLINIC_URL");
const foreignUrl = env("FOREIGN_URL");
const terminal = new Terminal(env("EDGED_CONTROL"));
const shots = process.env["SCREENSHOTS"];

let browser: Browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    args: [...FLAGS, "--host-resolver-rules=MAP clinic.test 127.0.0.1, MAP evil.test 127.0.0.1",
      `--ignore-certificate-errors-spki-list=${env("PAGES_SPKI")}`],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh profile on a page of that site, with the bridge settings filled in as a person would. */
async function open(url: string, withToken: string): Promise<Page> {
  const context = await browser.newContext({ locale: "fr-FR" });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(url);
  await page.getByRole("heading", { name: "Accueil du cabinet" }).waitFor();
  await page.getByLabel("Adresse du pont").fill(bridgeUrl);
  await page.getByLabel("Jeton de ce site").fill(withToken);
  await page.getByRole("button", { name: "Enregistrer" }).click();
  return page;
}

/**
 * Every answer and event the page's client received, checked against docs/openrpc.json as the
 * Node test checks its own: the browser build parses the same wire, and must get the same contract.
 */
async function assertAnswersMatchContract(page: Page, expected: string[]): Promise<void> {
  const observed = await page.evaluate(
    () => (window as unknown as { clinic: { observed: Observed[] } }).clinic.observed);
  const contract = new Contract(undefined, { viaBridge: true });
  for (const message of observed) contract.observe(message);
  assert.deepEqual(contract.mismatches, []);
  for (const key of expected) {
    assert.ok(contract.seen.has(key), `${key} was never checked (${[...contract.seen].join(", ")})`);
  }
}

async function snap(page: Page, name: string): Promise<void> {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

test("the clinic's page reads the Vitale card and gets a CPS signature through the bridge", async () => {
  const page = await open(clinicUrl, token);
  assert.equal(new URL(page.url()).origin, new URL(clinicUrl).origin);
  assert.ok(await page.evaluate(() => window.isSecureContext)); // https page -> ws://127.0.0.1

  await page.getByRole("button", { name: "Lire la carte Vitale" }).click();
  const first = page.locator("#beneficiaries li").first();
  await first.waitFor();
  const people = await page.locator("#beneficiaries li").allInnerTexts();
  assert.ok(people.some((p) => p.startsWith("Pierre LEFEBVRE (insured), INS ")), people.join("\n"));
  assert.equal(await page.getByRole("alert").innerText(), "");
  await snap(page, "bridge-01-vitale");

  await page.getByRole("button", { name: "Signer le compte rendu" }).click();
  await page.getByRole("status").filter({ hasText: "Saisissez votre code porteur" }).waitFor();
  const prompt = await terminal.waitFor(/PIN/);
  assert.ok(prompt.length > 0);
  await terminal.press("1234", "OK"); // on the keypad: the page never sees the PIN
  // A daemon that has the holder confirm each signature shows it on the terminal: OK there.
  await terminal.confirmWhile(page.locator("#signature").waitFor({ state: "visible", timeout: 30_000 }));
  assert.equal(await page.getByRole("status").innerText(), "Document signé.");
  await snap(page, "bridge-02-signed");

  const signature = Buffer.from(await page.locator("#signature").innerText(), "base64");
  const certificate = new X509Certificate(Buffer.from(await page.locator("#certificate").innerText(), "base64"));
  const report = Buffer.from(await page.title(), "utf8");
  assert.ok(verify("sha256", report, { key: certificate.publicKey, padding: constants.RSA_PKCS1_PADDING }, signature));
  assert.match(certificate.subject, /MARTIN/);
  await assertAnswersMatchContract(page, ["result vitale.read", "result cps.verify_pin", "result cps.sign"]);
  await page.context().close();
});

test("through the bridge, a page gets only its origin's scopes and never pairing", async () => {
  const page = await open(clinicUrl, token);
  const answers = await page.evaluate(async () => {
    const { terminal } = (window as unknown as { clinic: { terminal(): Promise<{
      callUntyped(m: string, p?: object): Promise<unknown> }> } }).clinic;
    const c = await terminal();
    const outcome = async (method: string, params: object = {}): Promise<string> => {
      try {
        await c.callUntyped(method, params);
        return "ok";
      } catch (error) {
        const e = error as { code?: number; reason?: string };
        return `${e.code} ${e.reason}`;
      }
    };
    return {
      info: await outcome("system.info"),
      admin: await outcome("clients.list"),
      dmp: await outcome("dmp.exists", { ins: "185057800608436" }),
      pair: await outcome("pair.begin", { name: "page", csr: "x" }),
    };
  });
  assert.deepEqual(answers, {
    info: "ok", admin: "-32001 missing_scope", dmp: "-32001 missing_scope", pair: "-32601 method_not_found",
  });
  await assertAnswersMatchContract(page, ["result system.info", "error clients.list", "error dmp.exists",
    "error pair.begin"]);
  await page.context().close();
});

for (const [what, url, withToken] of [
  ["a page from a foreign origin, even with the clinic's token,", foreignUrl, token],
  ["the clinic's page with a wrong token", clinicUrl, "x".repeat(43)],
] as const) {
  test(`${what} is refused and gets nothing`, async () => {
    const page = await open(url, withToken);
    await page.getByRole("button", { name: "Lire la carte Vitale" }).click();
    const alert = await page.getByRole("alert").filter({ hasText: "BridgeUnavailableError" }).innerText();
    assert.match(alert, /refused this page or is not running/);
    assert.equal(await page.locator("#beneficiaries li").count(), 0);
    await page.getByRole("button", { name: "Signer le compte rendu" }).click();
    await page.getByRole("alert").filter({ hasText: "BridgeUnavailableError" }).waitFor();
    assert.equal(await page.locator("#signature").isVisible(), false);
    assert.doesNotMatch((await terminal.screen()).join("\n"), /PIN/); // nothing reached the terminal
    await snap(page, `bridge-refused-${new URL(url).hostname}`);
    await page.context().close();
  });
}
