/**
 * Generate src/protocol.ts (the SDK's types) from the OpenRPC document docs/openrpc.json.
 *
 *   node dist/scripts/generate.js [--input docs/openrpc.json] [--check]
 *
 * With --check nothing is written: the exit status is 1 when src/protocol.ts is stale.
 * Every method gives a `<Name>Params` and a `<Name>Result` type and an entry in `Methods`;
 * `components.schemas` give named types; events (the `x-events` extension, or notification
 * methods marked `x-notification`) give `<Name>Event` types and an entry in `Events`.
 */

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** A JSON Schema as found in the document (only the parts the generator reads are typed). */
export interface Schema {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  description?: string;
  title?: string;
  format?: string;
  contentEncoding?: string;
  [key: string]: unknown;
}

interface ContentDescriptor {
  name: string;
  summary?: string;
  description?: string;
  required?: boolean;
  schema: Schema;
}

interface MethodObject {
  name: string;
  summary?: string;
  description?: string;
  params?: ContentDescriptor[];
  result?: ContentDescriptor;
  [key: string]: unknown;
}

interface EventObject {
  name: string;
  summary?: string;
  description?: string;
  params?: ContentDescriptor[] | Schema;
  schema?: Schema;
}

/** The parts of an OpenRPC 1.x document the generator uses. */
export interface OpenRpcDocument {
  openrpc: string;
  info: { title: string; version: string; [key: string]: unknown };
  methods: (MethodObject | { $ref: string })[];
  components?: { schemas?: Record<string, Schema>; [key: string]: unknown };
  [key: string]: unknown;
}

const HERE = dirname(fileURLToPath(import.meta.url));
/** sdk/js, whether this runs from scripts/ (ts) or dist/scripts/ (js). */
export const PACKAGE_DIR = resolve(HERE, HERE.includes(`${join("dist", "scripts")}`) ? "../.." : "..");
export const DEFAULT_INPUT = resolve(PACKAGE_DIR, "../../docs/openrpc.json");
export const OUTPUT = resolve(PACKAGE_DIR, "src/protocol.ts");

/** "cps.verify_pin" -> "CpsVerifyPin". */
export function pascal(name: string): string {
  return name.split(/[^A-Za-z0-9]+/).filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1)).join("");
}

function comment(text: string | undefined, indent: string): string {
  if (!text) return "";
  const clean = text.replace(/\*\//g, "*\\/").trim();
  const lines = clean.split("\n");
  if (lines.length === 1) return `${indent}/** ${clean} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`.trimEnd()).join("\n")}\n${indent} */\n`;
}

function describe(schema: Schema): string | undefined {
  const parts = [schema.description];
  if (schema.format) parts.push(`format: ${schema.format}`);
  if (schema.contentEncoding) parts.push(`encoding: ${schema.contentEncoding}`);
  for (const key of ["pattern", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems"]) {
    if (schema[key] !== undefined) parts.push(`${key}: ${JSON.stringify(schema[key])}`);
  }
  const text = parts.filter(Boolean).join("; ");
  return text || undefined;
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A JSON Schema -> a TypeScript type expression. */
export function tsType(schema: Schema | boolean | undefined, indent = ""): string {
  if (schema === undefined || schema === true) return "unknown";
  if (schema === false) return "never";
  if (schema.$ref) {
    const match = /^#\/components\/schemas\/(.+)$/.exec(schema.$ref);
    if (!match) throw new Error(`unsupported $ref ${schema.$ref}`);
    return pascal(match[1]!);
  }
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const union = schema.anyOf ?? schema.oneOf;
  if (union) return union.map((s) => wrap(tsType(s, indent))).join(" | ");
  if (schema.allOf) return schema.allOf.map((s) => wrap(tsType(s, indent))).join(" & ");
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  if (types.length === 0) {
    return schema.properties ? objectType(schema, indent) : "unknown";
  }
  return types.map((t) => {
    switch (t) {
      case "string": return "string";
      case "integer":
      case "number": return "number";
      case "boolean": return "boolean";
      case "null": return "null";
      case "array": return `${wrap(tsType(schema.items, indent))}[]`;
      case "object": return objectType(schema, indent);
      default: throw new Error(`unsupported type ${t}`);
    }
  }).join(" | ");
}

function wrap(type: string): string {
  return /[|&]/.test(type) && !/^\{[\s\S]*\}$/.test(type) ? `(${type})` : type;
}

function objectType(schema: Schema, indent: string): string {
  const props = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const inner = `${indent}  `;
  const lines: string[] = [];
  for (const [name, sub] of Object.entries(props)) {
    const key = IDENT.test(name) ? name : JSON.stringify(name);
    lines.push(`${comment(describe(sub), inner)}${inner}${key}${required.has(name) ? "" : "?"}: ${tsType(sub, inner)};`);
  }
  const extra = schema.additionalProperties;
  if (extra !== false && extra !== undefined) {
    lines.push(`${inner}[key: string]: ${extra === true ? "unknown" : tsType(extra, inner)};`);
  } else if (extra === undefined && Object.keys(props).length === 0) {
    return "Record<string, unknown>";
  }
  if (lines.length === 0) return "Record<string, never>";
  return `{\n${lines.join("\n")}\n${indent}}`;
}

function paramsSchema(method: MethodObject): Schema {
  const params = method.params ?? [];
  const properties: Record<string, Schema> = {};
  const required: string[] = [];
  for (const p of params) {
    const description = p.schema.description ?? p.description ?? p.summary;
    properties[p.name] = description ? { ...p.schema, description } : p.schema;
    if (p.required) required.push(p.name);
  }
  return { type: "object", properties, required, additionalProperties: false };
}

function eventsOf(doc: OpenRpcDocument): EventObject[] {
  const declared = doc["x-events"];
  if (Array.isArray(declared)) return declared as EventObject[];
  return [];
}

function eventSchema(event: EventObject): Schema {
  if (event.schema) return event.schema;
  if (Array.isArray(event.params)) {
    return paramsSchema({ name: event.name, params: event.params });
  }
  return event.params ?? { type: "object" };
}

function resolveMethod(doc: OpenRpcDocument, entry: MethodObject | { $ref: string }): MethodObject {
  if ("name" in entry) return entry as MethodObject;
  const match = /^#\/components\/methods\/(.+)$/.exec(entry.$ref);
  const methods = doc.components?.["methods"] as Record<string, MethodObject> | undefined;
  const found = match ? methods?.[match[1]!] : undefined;
  if (!found) throw new Error(`unresolved method $ref ${entry.$ref}`);
  return found;
}

/** OpenRPC's service discovery method, implied by every document (OpenRPC 1.3). */
const DISCOVER: MethodObject = {
  name: "rpc.discover",
  summary: "The OpenRPC document of this API (the one these types were generated from).",
  params: [],
  result: { name: "result", schema: { type: "object", required: ["openrpc", "info", "methods"],
    properties: { openrpc: { type: "string" }, info: { type: "object" }, methods: { type: "array" } } } },
  "x-scopes": [],
};

interface ErrorKind {
  code: number;
  message: string;
  reasons: string[];
}

/** The whole generated module for an OpenRPC document. */
export function render(doc: OpenRpcDocument, source = "docs/openrpc.json"): string {
  const methods = doc.methods.map((m) => resolveMethod(doc, m))
    .filter((m) => !m["x-notification"]);
  if (!methods.some((m) => m.name === DISCOVER.name)) methods.push(DISCOVER);
  methods.sort((a, b) => a.name.localeCompare(b.name));
  const notifications = doc.methods.map((m) => resolveMethod(doc, m)).filter((m) => m["x-notification"])
    .map((m): EventObject => ({ name: m.name, ...(m.summary ? { summary: m.summary } : {}),
      ...(m.params ? { params: m.params } : {}) }));
  const events = [...eventsOf(doc), ...notifications].sort((a, b) => a.name.localeCompare(b.name));
  const out: string[] = [];
  out.push(`// Generated from ${source} by sdk/js/scripts/generate.ts; do not edit by hand.\n`
    + `// Regenerate: npm run generate (in sdk/js). A test fails when this file is stale.\n`
    + "/* eslint-disable */\n");
  out.push(`/** The protocol version the types were generated from. */\n`
    + `export const PROTOCOL_VERSION = ${JSON.stringify(doc.info.version)};\n`);
  for (const [name, schema] of Object.entries(doc.components?.schemas ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`${comment(schema.description ?? schema.title, "")}export type ${pascal(name)} = ${tsType(schema)};\n`);
  }
  const scopes: string[] = [];
  for (const method of methods) {
    const base = pascal(method.name);
    const summary = method.summary ?? method.description;
    out.push(`${comment(`Parameters of \`${method.name}\`${summary ? `: ${summary}` : "."}`, "")}`
      + `export type ${base}Params = ${tsType(paramsSchema(method))};\n`);
    out.push(`/** Result of \`${method.name}\`. */\n`
      + `export type ${base}Result = ${tsType(method.result?.schema ?? { type: "object" })};\n`);
    const declared = method["x-scopes"];
    scopes.push(`  ${JSON.stringify(method.name)}: ${JSON.stringify(Array.isArray(declared) ? declared : [])},`);
  }
  out.push("/** Every method: its parameters and result. */\nexport interface Methods {\n"
    + methods.map((m) => `${comment(m.summary, "  ")}  ${JSON.stringify(m.name)}: { params: ${pascal(m.name)}Params; result: ${pascal(m.name)}Result };`).join("\n")
    + "\n}\n");
  out.push("/** The methods' names, in order. */\nexport const METHOD_NAMES = [\n"
    + methods.map((m) => `  ${JSON.stringify(m.name)},`).join("\n") + "\n] as const;\n");
  out.push("/** Scopes that allow each method (any of them; empty: any paired client). */\n"
    + "export const METHOD_SCOPES: Readonly<Record<MethodName, readonly string[]>> = {\n"
    + scopes.join("\n") + "\n};\n");
  const errors = Array.isArray(doc["x-errors"]) ? doc["x-errors"] as ErrorKind[] : [];
  if (errors.length) {
    out.push("/** Every error code with its meaning and the `data.reason` values it comes with. */\n"
      + "export const ERRORS = {\n" + errors.map((e) => `${comment(e.message, "  ")}  ${JSON.stringify(String(e.code))}: ${JSON.stringify(e.reasons)},`).join("\n")
      + "\n} as const;\n");
    out.push("/** A documented `data.reason` (some codes, e.g. the DMP host's, add open-ended ones). */\n"
      + "export type ErrorReason = (typeof ERRORS)[keyof typeof ERRORS][number];\n");
  }
  for (const event of events) {
    out.push(`${comment(`Params of the \`${event.name}\` event${event.summary ? `: ${event.summary}` : "."}`, "")}`
      + `export type ${pascal(event.name)}Event = ${tsType(eventSchema(event))};\n`);
  }
  out.push("/** Every event (notification) and its params. */\nexport interface Events {\n"
    + events.map((e) => `  ${JSON.stringify(e.name)}: ${pascal(e.name)}Event;`).join("\n")
    + (events.length ? "\n" : "") + "}\n");
  out.push("/** A method's name. */\nexport type MethodName = keyof Methods;\n"
    + "/** A method's parameters. */\nexport type Params<M extends MethodName> = Methods[M][\"params\"];\n"
    + "/** A method's result. */\nexport type Result<M extends MethodName> = Methods[M][\"result\"];\n"
    + "/** An event's name (any string when the document declares none). */\n"
    + "export type EventName = [keyof Events] extends [never] ? string : keyof Events & string;\n"
    + "/** An event's params (with `time`, and `dropped` after an overflow). */\n"
    + "export type EventParams<E extends EventName> = E extends keyof Events ? Events[E]\n"
    + "  : { time: number; dropped?: number; [key: string]: unknown };\n");
  return out.join("\n");
}

/** Read the document, render, and write (or --check). Returns the exit status. */
export function main(argv: readonly string[]): number {
  const inputAt = argv.indexOf("--input");
  const input = inputAt >= 0 && argv[inputAt + 1] ? resolve(argv[inputAt + 1]!) : DEFAULT_INPUT;
  const doc = JSON.parse(readFileSync(input, "utf8")) as OpenRpcDocument;
  const text = render(doc);
  if (argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(OUTPUT, "utf8");
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      console.error(`${OUTPUT} is stale: run npm run generate in sdk/js`);
      return 1;
    }
    return 0;
  }
  writeFileSync(OUTPUT, text);
  console.log(`wrote ${OUTPUT}`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
