/**
 * Every answer and event a test receives, checked against docs/openrpc.json with Ajv: results
 * against the method's result schema, errors against the codes and reasons the method
 * declares, events against x-events. Pass `contract.observe` as a client option; mismatches
 * are collected and a test asserts there were none.
 */

import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";

import { DEFAULT_INPUT } from "../../scripts/generate.js";
import type { Observed } from "../../src/core.js";

interface Doc {
  methods: { name: string; result: { schema: object }; errors?: { code: number; data?: object }[];
    "x-unpaired"?: boolean }[];
  "x-events"?: { name: string; params: object }[];
}

/** The checker: `observe` for clients, `mismatches` for assertions, `seen` to show coverage. */
export class Contract {
  readonly mismatches: string[] = [];
  readonly seen = new Set<string>();
  private readonly results = new Map<string, ValidateFunction>();
  private readonly errors = new Map<string, Map<number, ValidateFunction>>();
  private readonly events = new Map<string, ValidateFunction>();
  /** Methods answered -32601 on purpose: through the bridge, pairing (x-unpaired) never passes. */
  private readonly hidden = new Set<string>();

  /** `viaBridge`: the answers came through `bifente bridge` (docs/integrators.md, "The browser path"). */
  constructor(path = DEFAULT_INPUT, { viaBridge = false }: { viaBridge?: boolean } = {}) {
    const doc = JSON.parse(readFileSync(path, "utf8")) as Doc;
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats.default(ajv); // date-time, uri, ... are checked too
    for (const m of doc.methods) {
      if (viaBridge && m["x-unpaired"]) this.hidden.add(m.name);
      this.results.set(m.name, ajv.compile(m.result.schema));
      this.errors.set(m.name, new Map((m.errors ?? []).map((e) => [e.code, ajv.compile(e.data ?? {})])));
    }
    for (const e of doc["x-events"] ?? []) this.events.set(e.name, ajv.compile(e.params));
  }

  /** The client option: checks one observed answer or event. */
  readonly observe = (message: Observed): void => {
    const key = `${message.kind} ${message.method}`;
    this.seen.add(key);
    const fail = (why: string): void => {
      this.mismatches.push(`${key}: ${why}: ${JSON.stringify(message.value).slice(0, 300)}`);
    };
    if (message.kind === "unroutable") return;
    if (message.kind === "event") {
      const validate = this.events.get(message.method);
      if (!validate) fail("not an event of the document");
      else if (!validate(message.value)) fail(JSON.stringify(validate.errors));
      return;
    }
    if (message.method === "rpc.discover") return; // the document itself
    if (message.kind === "result") {
      const validate = this.results.get(message.method);
      if (!validate) fail("not a method of the document");
      else if (!validate(message.value)) fail(JSON.stringify(validate.errors));
      return;
    }
    const code = Number(message.value["code"]);
    const validate = this.errors.get(message.method)?.get(code);
    if ((!this.results.has(message.method) || this.hidden.has(message.method)) && code === -32601) {
      return; // unknown method, or one the bridge hides: expected
    }
    if (!validate) fail(`error code ${code} is not declared for this method`);
    else if (!validate(message.value["data"])) fail(JSON.stringify(validate.errors));
  };
}
