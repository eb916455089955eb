/**
 * The virtual terminal's control socket (simulators/terminal/control.py): JSON lines over a
 * UNIX socket or 127.0.0.1 TCP. Tests press keys and read the display through it, as a
 * person standing at the terminal would.
 */

import { connect, type Socket } from "node:net";

/** One control request; resolves with the answer or rejects with the terminal's error. */
export function control(address: string, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket: Socket = address.startsWith("unix:") || address.includes("/")
      ? connect({ path: address.replace(/^unix:/, "") })
      : connect(Number(address.split(":").at(-1)), "127.0.0.1");
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\n");
      if (end < 0) return;
      socket.end();
      const answer = JSON.parse(buffer.slice(0, end)) as Record<string, unknown>;
      if (answer["ok"]) resolve(answer);
      else reject(new Error(`terminal: ${String(answer["error"])}`));
    });
    socket.on("error", reject);
    socket.write(`${JSON.stringify(request)}\n`);
  });
}

/** The virtual terminal, driven like a person would. */
export class Terminal {
  constructor(readonly address: string) {}

  /** The display's lines. */
  async screen(): Promise<string[]> {
    return (await control(this.address, { op: "screen" }))["lines"] as string[];
  }

  /** Press keys ("1234" is four digits, "OK", "CANCEL"); each waits for a prompt. */
  async press(...keys: string[]): Promise<void> {
    await control(this.address, { op: "press", keys, wait: 10 });
  }

  /** Pull the card from a slot (0 CPS, 1 Vitale). */
  async remove(slot: 0 | 1): Promise<void> {
    await control(this.address, { op: "remove", slot });
  }

  /** Insert a card of a profile (default: the slot's profile). */
  async insert(slot: 0 | 1, profile?: string): Promise<void> {
    await control(this.address, { op: "insert", slot, ...(profile ? { profile } : {}) });
  }

  /**
   * Settle `pending` (e.g. a cps.sign), pressing OK if the terminal asks for a confirmation
   * matching `prompt` meanwhile (signatures confirmed on the keypad); daemons that do not
   * ask simply answer.
   */
  async confirmWhile<T>(pending: Promise<T>, prompt = /Signer/): Promise<T> {
    let settled = false;
    const done = pending.finally(() => {
      settled = true;
    });
    const watch = (async (): Promise<void> => {
      while (!settled) {
        if (prompt.test((await this.screen()).join("\n"))) {
          await this.press("OK");
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const result = await done;
    await watch.catch(() => undefined);
    return result;
  }

  /** Wait until the display matches; resolves with its lines. */
  async waitFor(pattern: RegExp, timeout = 15_000): Promise<string[]> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const lines = await this.screen();
      if (pattern.test(lines.join("\n"))) return lines;
      if (Date.now() > deadline) throw new Error(`the terminal never showed ${pattern}: ${JSON.stringify(lines)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** An environment variable the pytest driver (tests/sdk_js) sets; fails loudly without it. */
export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/sdk_js (pytest)`);
  return value;
}
