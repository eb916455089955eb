/**
 * A minimal web clinic app (front desk), used by the Chromium test: it knows only the bridge's
 * address and the token pasted into its settings (kept in this origin's localStorage). It
 * discovers nothing, holds no key, and never sees a PIN: the doctor types it on the terminal.
 */

import { type Client, connectBridge, type Observed } from "../../../src/browser.js";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const settings = $<HTMLFormElement>("settings");
const field = (name: string): HTMLInputElement => settings.elements.namedItem(name) as HTMLInputElement;

field("url").value = localStorage.getItem("bifente.bridge.url") ?? field("url").value;
field("token").value = localStorage.getItem("bifente.bridge.token") ?? "";

settings.addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("bifente.bridge.url", field("url").value.trim());
  localStorage.setItem("bifente.bridge.token", field("token").value.trim());
  client?.close();
  client = undefined;
});

let client: Client | undefined;
/** Every answer and event the page's client received: the test checks them against the contract. */
const observed: Observed[] = [];

async function terminal(): Promise<Client> {
  if (!client || client.isClosed) {
    const url = localStorage.getItem("bifente.bridge.url");
    client = await connectBridge({ token: localStorage.getItem("bifente.bridge.token") ?? "",
      observe: (message) => observed.push(message), ...(url ? { url } : {}) });
  }
  return client;
}

function shown(error: unknown): void {
  $("error").textContent = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

$("read").addEventListener("click", async () => {
  $("error").textContent = "";
  try {
    const card = await (await terminal()).call("vitale.read");
    $("beneficiaries").replaceChildren(...card.beneficiaries.map((b) => {
      const item = document.createElement("li");
      item.textContent = `${b.first_name} ${b.name} (${b.quality_name}), INS ${b.ins.value}`;
      return item;
    }));
  } catch (error) {
    shown(error);
  }
});

$("sign").addEventListener("click", async () => {
  $("error").textContent = "";
  try {
    const c = await terminal();
    $("pin").textContent = "Saisissez votre code porteur sur le terminal.";
    const pin = await c.call("cps.verify_pin");
    $("pin").textContent = `Code porteur : ${pin.result}`;
    if (pin.result !== "ok") return;
    const report = new TextEncoder().encode(document.title);
    $("pin").textContent = "Code porteur : ok. Confirmez la signature sur le terminal si demandé.";
    const signed = await c.call("cps.sign", { data: btoa(String.fromCharCode(...report)) });
    $("pin").textContent = "Document signé.";
    $("signature").textContent = signed.signature;
    $("certificate").textContent = signed.certificate;
    $("signature").hidden = false;
  } catch (error) {
    shown(error);
  }
});

/** For the test: the connection, to check what the bridge lets through, and what it received. */
(window as unknown as { clinic: object }).clinic = { terminal, observed };
