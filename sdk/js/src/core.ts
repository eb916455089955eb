/**
 * The transport-independent JSON-RPC 2.0 client shared by the Node and browser builds.
 *
 * A {@link Client} sends one request per WebSocket text message, matches answers to calls by
 * id (calls may complete out of order), and hands notifications (events) to listeners. The
 * socket itself is supplied by node.ts (mutual TLS to edged) or browser.ts (the local bridge).
 */

import type { EventName, EventParams, MethodName, Params, Result } from "./protocol.js";

/** The daemon's default message limit (`max_message_bytes`, docs/protocol.md "Limits"). */
export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;

/** What a {@link Client} needs from a socket; node.ts and browser.ts adapt theirs to it. */
export interface Wire {
  /** Send one text message. Throws if the socket is closed. */
  send(text: string): void;
  /** Close the socket; `Client` calls it once. */
  close(code?: number, reason?: string): void;
}

/** An error answered by the daemon (or the bridge): JSON-RPC code, message, `data.reason`. */
export class RemoteError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly data: Readonly<Record<string, unknown>>;

  constructor(code: number, message: string, data?: Record<string, unknown>) {
    super(message);
    this.name = "RemoteError";
    this.code = code;
    this.data = data ?? {};
    this.reason = typeof this.data["reason"] === "string" ? this.data["reason"] : "";
  }
}

/** The connection closed before an answer came (or a call was made after it closed). */
export class ConnectionClosedError extends Error {
  readonly closeCode: number;
  readonly closeReason: string;

  constructor(closeCode: number, closeReason: string) {
    super(`connection closed (${closeCode}${closeReason ? `: ${closeReason}` : ""})`);
    this.name = "ConnectionClosedError";
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }
}

/** A request refused locally because it could never be accepted (too large). */
export class RequestTooLargeError extends Error {
  readonly size: number;
  readonly limit: number;

  constructor(size: number, limit: number) {
    super(`request of ${size} bytes is larger than the ${limit}-byte message limit`);
    this.name = "RequestTooLargeError";
    this.size = size;
    this.limit = limit;
  }
}

/** No answer within the call's timeout (the call may still complete on the daemon). */
export class CallTimeoutError extends Error {
  constructor(method: string, ms: number) {
    super(`${method}: no answer within ${ms} ms`);
    this.name = "CallTimeoutError";
  }
}

/** Options of one call. */
export interface CallOptions {
  /** Milliseconds to wait for the answer (default: the client's `callTimeout`). */
  timeout?: number;
  /** Abort waiting (the daemon is not told; a PIN prompt is ended on the keypad). */
  signal?: AbortSignal;
}

/** What {@link ClientOptions.observe} sees: every answer and event, as received. */
export type Observed =
  | { kind: "result"; method: string; value: unknown }
  | { kind: "error"; method: string; value: Record<string, unknown> }
  | { kind: "event"; method: string; value: Record<string, unknown> }
  | { kind: "unroutable"; method: ""; value: Record<string, unknown> };

/** Options common to every connection. */
export interface ClientOptions {
  /**
   * Called with every answer and event before it is delivered (e.g. to check answers
   * against docs/openrpc.json in an integration test). It must not throw.
   */
  observe?: (message: Observed) => void;
  /** Default per-call timeout in ms (120 s: PIN entry takes a person's time). */
  callTimeout?: number;
  /**
   * Requests larger than this (UTF-8 bytes) fail at once with RequestTooLargeError. By
   * default the client asks the daemon (system.info `limits.max_message_bytes`) before its
   * first request over 4 KiB, and assumes 1 MiB until then or if it cannot ask.
   */
  maxMessageBytes?: number;
}

/** Requests up to this size never wait for the daemon's limit to be known. */
const ASK_LIMIT_ABOVE = 4096;

/** One event as delivered to listeners: its name and its params (`time`, maybe `dropped`). */
export type EventMessage<E extends EventName = EventName> = { event: E } & EventParams<E>;

type Listener = (message: EventMessage) => void;

interface Pending {
  method: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  cleanup(): void;
}

const encoder = new TextEncoder();

/** A JSON-RPC connection to edged (directly or through the bridge). */
export class Client {
  /** Resolves once with the close code and reason when the connection ends. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly wire: Wire;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly callTimeout: number;
  private maxMessageBytes: number;
  private limit: Promise<void> | undefined;
  private readonly observe: ((message: Observed) => void) | undefined;
  private lastUnroutable: string | undefined;
  private nextId = 1;
  private closeInfo: { code: number; reason: string } | undefined;
  private resolveClosed!: (info: { code: number; reason: string }) => void;

  /** Wrap a wire; node.ts / browser.ts call this, applications use their connect functions. */
  constructor(wire: Wire, options: ClientOptions = {}) {
    this.wire = wire;
    this.callTimeout = options.callTimeout ?? 120_000;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (options.maxMessageBytes !== undefined) this.limit = Promise.resolve();
    this.observe = options.observe;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  /** True once the connection has ended. */
  get isClosed(): boolean {
    return this.closeInfo !== undefined;
  }

  /** Call a method and resolve with its result; RemoteError for an error answer. */
  call<M extends MethodName>(method: M, ...args: ParamsArg<M>): Promise<Result<M>> {
    const [params, options] = args as [Params<M> | undefined, CallOptions | undefined];
    return this.request(method, params ?? {}, options ?? {}) as Promise<Result<M>>;
  }

  /**
   * Call a method the generated types do not know (a newer daemon); same rules as call().
   */
  callUntyped(method: string, params: Record<string, unknown> = {},
    options: CallOptions = {}): Promise<unknown> {
    return this.request(method, params, options);
  }

  /** Subscribe to events (all of them by default); answers the names subscribed. */
  async subscribe(events?: readonly EventName[]): Promise<string[]> {
    const params = events ? { events: [...events] } : {};
    const result = await this.request("events.subscribe", params, {}) as { subscribed: string[] };
    return result.subscribed;
  }

  /** Listen to one event name ("*" for all); returns a function that stops listening. */
  on<E extends EventName>(event: E | "*", listener: (message: EventMessage<E>) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    const wrapped = listener as unknown as Listener;
    set.add(wrapped);
    return () => set.delete(wrapped);
  }

  /** The next event of that name (any, if omitted) within `timeout` ms. */
  nextEvent<E extends EventName>(event?: E, timeout = 10_000): Promise<EventMessage<E>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no ${event ?? "event"} within ${timeout} ms`));
      }, timeout);
      const off = this.on<E>(event ?? ("*" as E), (message) => {
        clearTimeout(timer);
        off();
        resolve(message);
      });
    });
  }

  /** Close the connection; pending calls fail with ConnectionClosedError. */
  close(code = 1000, reason = ""): Promise<{ code: number; reason: string }> {
    if (!this.closeInfo) {
      try {
        this.wire.close(code, reason);
      } catch {
        // already closing
      }
    }
    return this.closed;
  }

  /** The transport delivers every text message here. */
  receive(text: string): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return; // the daemon only sends JSON; ignore anything else
    }
    if (!isObject(message)) return;
    if ("method" in message && !("id" in message)) {
      this.dispatchEvent(message);
      return;
    }
    const id = message["id"];
    const pending = typeof id === "number" ? this.pending.get(id) : undefined;
    const error = message["error"];
    if (!pending) {
      // Not an answer to a call of ours: an id-null error is about the connection
      // (e.g. too_many_connections, sent just before the daemon closes with 1008).
      if (isObject(error)) {
        this.lastUnroutable = String(error["message"] ?? "");
        this.observe?.({ kind: "unroutable", method: "", value: error });
      }
      return;
    }
    this.pending.delete(id as number);
    pending.cleanup();
    if (isObject(error)) {
      this.observe?.({ kind: "error", method: pending.method, value: error });
      const data = isObject(error["data"]) ? error["data"] : undefined;
      pending.reject(new RemoteError(Number(error["code"]), String(error["message"] ?? ""), data));
    } else {
      this.observe?.({ kind: "result", method: pending.method, value: message["result"] });
      pending.resolve(message["result"]);
    }
  }

  /** The transport reports the end of the connection here (once). */
  closedBy(code: number, reason: string): void {
    if (this.closeInfo) return;
    this.closeInfo = { code, reason: reason || this.lastUnroutable || "" };
    for (const pending of this.pending.values()) {
      pending.cleanup();
      pending.reject(new ConnectionClosedError(code, this.closeInfo.reason));
    }
    this.pending.clear();
    this.resolveClosed(this.closeInfo);
  }

  /** The daemon's message limit, asked once (system.info); the default if it cannot tell. */
  private learnLimit(): Promise<void> {
    this.limit ??= this.send("system.info", {}, { timeout: 10_000 }).then((info) => {
      const limits = isObject(info) && isObject(info["limits"]) ? info["limits"] : {};
      const max = limits["max_message_bytes"];
      if (typeof max === "number" && max > 0) this.maxMessageBytes = max;
    }, () => undefined); // unpaired, or an older daemon: keep the default
    return this.limit;
  }

  private async request(method: string, params: object, options: CallOptions): Promise<unknown> {
    if (!this.limit && method !== "system.info"
      && encoder.encode(JSON.stringify(params)).length > ASK_LIMIT_ABOVE) {
      await this.learnLimit();
    }
    return this.send(method, params, options);
  }

  private send(method: string, params: object, options: CallOptions): Promise<unknown> {
    if (this.closeInfo) {
      return Promise.reject(new ConnectionClosedError(this.closeInfo.code, this.closeInfo.reason));
    }
    const id = this.nextId++;
    const text = JSON.stringify({ jsonrpc: "2.0", id, method, params });
    const size = encoder.encode(text).length;
    if (size > this.maxMessageBytes) {
      return Promise.reject(new RequestTooLargeError(size, this.maxMessageBytes));
    }
    return new Promise((resolve, reject) => {
      const ms = options.timeout ?? this.callTimeout;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        cleanup();
        reject(new CallTimeoutError(method, ms));
      }, ms);
      const onAbort = (): void => {
        this.pending.delete(id);
        cleanup();
        reject(options.signal?.reason instanceof Error ? options.signal.reason
          : new Error(`${method}: aborted`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      };
      if (options.signal?.aborted) {
        onAbort();
        return;
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, { method, resolve, reject, cleanup });
      try {
        this.wire.send(text);
      } catch (error) {
        this.pending.delete(id);
        cleanup();
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  private dispatchEvent(message: Record<string, unknown>): void {
    const name = message["method"];
    if (typeof name !== "string") return;
    const params = isObject(message["params"]) ? message["params"] : {};
    this.observe?.({ kind: "event", method: name, value: params });
    const event = { ...params, event: name } as EventMessage;
    for (const key of [name, "*"]) {
      for (const listener of [...(this.listeners.get(key) ?? [])]) {
        try {
          listener(event);
        } catch {
          // a listener's bug must not break the connection
        }
      }
    }
  }
}

/** call()'s optional arguments: params may be omitted when the method requires none. */
export type ParamsArg<M extends MethodName> =
  {} extends Params<M>
    ? [params?: Params<M>, options?: CallOptions]
    : [params: Params<M>, options?: CallOptions];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
