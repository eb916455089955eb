/**
 * The browser build: a web page reaches the terminal through `bifente bridge`, the local
 * companion that holds the pairing and forwards to edged over mutual TLS
 * (docs/integrators.md, "The browser path").
 *
 * The page knows two things only: the bridge's address on this computer (default
 * ws://127.0.0.1:47443/) and the token the bridge issued for the page's origin. It discovers
 * nothing, holds no key and never sees a PIN. The bridge refuses the WebSocket handshake of
 * any other origin, or a wrong token, and the browser reports that as a failed connection.
 */

import { Client, type ClientOptions, type Wire } from "./core.js";

export * from "./core.js";
export type * from "./protocol.js";
export { METHOD_NAMES, METHOD_SCOPES, PROTOCOL_VERSION } from "./protocol.js";

/** The bridge's default address (loopback only). */
export const DEFAULT_BRIDGE_URL = "ws://127.0.0.1:47443/";
/** The WebSocket subprotocol the bridge speaks. */
export const BRIDGE_PROTOCOL = "bifente.v1";
/** Prefix of the subprotocol entry that carries the origin's token. */
export const TOKEN_PROTOCOL_PREFIX = "bifente-token.";

/** How to reach the bridge. */
export interface BridgeOptions extends ClientOptions {
  /** The token `bifente bridge allow ORIGIN` printed for this page's origin. */
  token: string;
  /** ws://127.0.0.1:PORT/ (default {@link DEFAULT_BRIDGE_URL}). */
  url?: string;
  /** Milliseconds to wait for the bridge (default 5 s). */
  connectTimeout?: number;
}

/** The bridge refused the page, or is not running (browsers do not tell which). */
export class BridgeUnavailableError extends Error {
  constructor(url: string) {
    super(`the terminal bridge at ${url} refused this page or is not running `
      + "(is `bifente bridge serve` running, and this origin allowed with its token?)");
    this.name = "BridgeUnavailableError";
  }
}

/** Connect to the local bridge; resolves with a Client once the bridge accepted the page. */
export function connectBridge(options: BridgeOptions): Promise<Client> {
  const url = options.url ?? DEFAULT_BRIDGE_URL;
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(options.token)) {
    return Promise.reject(new Error("the bridge token is 16-128 characters of A-Z a-z 0-9 _ -"));
  }
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, [BRIDGE_PROTOCOL, TOKEN_PROTOCOL_PREFIX + options.token]);
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    const wire: Wire = {
      send: (text) => {
        if (ws.readyState !== WebSocket.OPEN) throw new Error("the connection is not open");
        ws.send(text);
      },
      close: (code, reason) => ws.close(code, reason),
    };
    const client = new Client(wire, options);
    let opened = false;
    const timer = setTimeout(() => {
      ws.close();
      reject(new BridgeUnavailableError(url));
    }, options.connectTimeout ?? 5_000);
    ws.addEventListener("open", () => {
      clearTimeout(timer);
      opened = true;
      if (ws.protocol !== BRIDGE_PROTOCOL) {
        ws.close(1002, "unexpected subprotocol");
        reject(new BridgeUnavailableError(url));
        return;
      }
      resolve(client);
    });
    ws.addEventListener("message", (event: MessageEvent) => {
      if (typeof event.data === "string") client.receive(event.data);
    });
    ws.addEventListener("close", (event: CloseEvent) => {
      clearTimeout(timer);
      client.closedBy(event.code, event.reason);
      if (!opened) reject(new BridgeUnavailableError(url));
    });
  });
}
