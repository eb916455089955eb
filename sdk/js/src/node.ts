/**
 * The Node build: connect to edged over WSS (TLS 1.3), the daemon's certificate pinned by its
 * SHA-256 fingerprint, with the client certificate received at pairing (mutual TLS).
 *
 * The pin is checked on the TLS socket before the WebSocket upgrade is written, so a wrong
 * terminal never sees a byte of the request. Credentials are stored in the same JSON format
 * as the Python SDK's (sdk/python/bifente/client/credentials.py), so `bifente` and Node share pairings.
 */

import { createHash, generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import WebSocket from "ws";

import { Client, type ClientOptions, RemoteError, type Wire } from "./core.js";
import type { PairBeginParams, PairCompleteResult } from "./protocol.js";

export * from "./core.js";
export type * from "./protocol.js";
export { METHOD_NAMES, METHOD_SCOPES, PROTOCOL_VERSION } from "./protocol.js";

/** The daemon's default port. */
export const DEFAULT_PORT = 4443;

/** Where and how to reach a terminal. */
export interface ConnectOptions extends ClientOptions {
  host: string;
  port?: number;
  /** The daemon certificate's SHA-256 (hex; colons, upper case and a `sha256:` prefix are accepted). */
  fingerprint: string;
  /** PEM client certificate and key from pairing; without them only pair.* is allowed. */
  certificate?: string;
  key?: string;
  /**
   * The device CA from pairing (PEM). With it, OpenSSL checks the chain inside the handshake,
   * so an impostor is refused before the client certificate is sent; the pin is checked too.
   */
  ca?: string;
  /** Milliseconds for TCP + TLS + WebSocket handshakes (default 10 s). */
  connectTimeout?: number;
}

/** The TLS peer's fingerprint did not match the pin. */
export class PinMismatchError extends Error {
  readonly expected: string;
  readonly actual: string;

  constructor(expected: string, actual: string) {
    super(`the terminal's certificate is sha256:${actual}, expected sha256:${expected}`);
    this.name = "PinMismatchError";
    this.expected = expected;
    this.actual = actual;
  }
}

/** "SHA256:AB:CD..." / "abcd..." -> 64 lower-case hex digits, or an error. */
export function normalizeFingerprint(fingerprint: string): string {
  const hex = fingerprint.trim().replace(/^sha256:/i, "").replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error("a fingerprint is 64 hex digits (SHA-256)");
  return hex;
}

/** Open a pinned (and, with certificate + key, mutually authenticated) connection to edged. */
export async function connect(options: ConnectOptions): Promise<Client> {
  const pin = normalizeFingerprint(options.fingerprint);
  const port = options.port ?? DEFAULT_PORT;
  const timeout = options.connectTimeout ?? 10_000;
  const socket = await pinnedSocket(options.host, port, pin, options, timeout);
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const ws = new WebSocket(`wss://${host}:${port}/`, {
    createConnection: () => socket,
    handshakeTimeout: timeout,
    maxPayload: 4 << 20,
    perMessageDeflate: true,
  });
  return attach(ws, options);
}

function pinnedSocket(host: string, port: number, pin: string, options: ConnectOptions,
  timeout: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host, port,
      minVersion: "TLSv1.3",
      ALPNProtocols: ["http/1.1"],
      // Without the device CA, the pin below replaces chain checks. With it, the chain is
      // checked in the handshake; host names never are (DHCP moves terminals), the pin is.
      ...(options.ca
        ? { ca: options.ca, rejectUnauthorized: true, checkServerIdentity: () => undefined }
        : { rejectUnauthorized: false }),
      ...(options.certificate && options.key ? { cert: options.certificate, key: options.key } : {}),
      ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }),
    });
    const timer = setTimeout(() => socket.destroy(new Error(`${host}:${port}: TLS handshake timed out`)), timeout);
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const der = socket.getPeerX509Certificate()?.raw;
      const actual = der ? createHash("sha256").update(der).digest("hex") : "";
      if (actual !== pin) {
        socket.destroy();
        reject(new PinMismatchError(pin, actual));
        return;
      }
      resolve(socket);
    });
  });
}

function attach(ws: WebSocket, options: ClientOptions): Promise<Client> {
  const wire: Wire = {
    send: (text) => {
      if (ws.readyState !== WebSocket.OPEN) throw new Error("the connection is not open");
      ws.send(text);
    },
    close: (code, reason) => ws.close(code, reason),
  };
  const client = new Client(wire, options);
  ws.on("message", (data, isBinary) => {
    if (!isBinary) client.receive(data.toString());
  });
  ws.on("close", (code, reason) => client.closedBy(code, reason.toString()));
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      ws.off("error", reject);
      ws.on("error", () => undefined); // the close event follows and fails pending calls
      resolve(client);
    });
    ws.once("error", reject);
  });
}

/** What a paired client keeps (the same fields as the Python SDK's credentials file). */
export interface Credentials {
  name: string;
  host: string;
  port: number;
  fingerprint: string;
  certificate_pem: string;
  key_pem: string;
  ca_pem: string;
  scopes: string[];
}

/** What pair() needs (plus the client options of its unpaired connection). */
export interface PairOptions extends ClientOptions {
  host: string;
  port?: number;
  fingerprint: string;
  /** How the terminal will know this client (1-64 of A-Z a-z 0-9 space . _ -). */
  name: string;
  /** Scopes to ask for (default identity:read only). */
  scopes?: NonNullable<PairBeginParams["scopes"]>;
  /** Returns the 6-digit code the operator read on the terminal's display. */
  readCode: () => string | Promise<string>;
  /**
   * With this, a wrong code is reported (attempts left) and readCode() is asked again while
   * the terminal allows more attempts; without it, a wrong code rejects with RemoteError.
   */
  onWrongCode?: (attemptsLeft: number) => void;
}

/**
 * Pair with a terminal: a fresh P-256 key, pair.begin (the terminal shows a code), the code
 * from readCode(), pair.complete. The private key never leaves this process.
 */
export async function pair(options: PairOptions): Promise<Credentials> {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ type: "spki", format: "pem" }).toString();
  const fingerprint = normalizeFingerprint(options.fingerprint);
  const port = options.port ?? DEFAULT_PORT;
  const { readCode: _readCode, onWrongCode: _onWrongCode, name: _name, scopes: _scopes,
    ...connectOptions } = options;
  const client = await connect({ ...connectOptions, port, fingerprint });
  try {
    const begun = await client.call("pair.begin",
      { name: options.name, csr: spki, scopes: options.scopes ?? ["identity:read"] });
    let done: PairCompleteResult;
    for (;;) {
      const code = (await options.readCode()).trim();
      try {
        done = await client.call("pair.complete", { pairing_id: String(begun.pairing_id), code });
        break;
      } catch (error) {
        if (!(error instanceof RemoteError) || error.reason !== "wrong_code" || !options.onWrongCode) {
          throw error;
        }
        const left = error.data["attempts_left"];
        if (typeof left !== "number" || left < 1) throw error;
        options.onWrongCode(left);
      }
    }
    const certificate = String(done.certificate ?? "");
    if (!new X509Certificate(certificate).checkPrivateKey(privateKey)) {
      throw new Error("the terminal returned a certificate for another key");
    }
    return {
      name: options.name, host: options.host, port, fingerprint,
      certificate_pem: certificate,
      key_pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      ca_pem: String(done.ca_certificate ?? ""),
      scopes: [...(done.scopes ?? [])],
    };
  } finally {
    await client.close();
  }
}

/** A mutually authenticated connection with stored credentials. */
export function connectWith(credentials: Credentials, options: ClientOptions = {}): Promise<Client> {
  return connect({
    ...options, host: credentials.host, port: credentials.port, fingerprint: credentials.fingerprint,
    certificate: credentials.certificate_pem, key: credentials.key_pem,
    ...(credentials.ca_pem ? { ca: credentials.ca_pem } : {}),
  });
}

/** Where credentials live: $BIFENTE_CLIENT_DIR, else ~/.config/bifente/terminals (as the CLI). */
export function clientDir(): string {
  return process.env["BIFENTE_CLIENT_DIR"] || join(homedir(), ".config", "bifente", "terminals");
}

/** Write credentials to <dir>/<fingerprint prefix>.json, mode 0600, atomically. */
export function saveCredentials(credentials: Credentials, dir = clientDir()): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${credentials.fingerprint.slice(0, 16)}.json`);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(credentials, null, 2), { mode: 0o600 });
  renameSync(tmp, path);
  return path;
}

/** Every stored pairing (Python's and Node's alike). */
export function loadCredentials(dir = clientDir()): Credentials[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
  } catch {
    return [];
  }
  return names.map((n) => {
    const data = JSON.parse(readFileSync(join(dir, n), "utf8")) as Credentials;
    return { ...data, scopes: [...(data.scopes ?? [])] };
  });
}
