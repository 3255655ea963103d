// The reference page at `/docs`: the OpenAPI document rendered on the server into plain HTML and
// CSS. Self-contained on purpose: many deployments have no internet, so no script or style comes
// from a CDN. Every text from the document is escaped. Imports only the document's types.

import type { HeaderObject, Method, OpenApiDocument, OperationObject, ParameterObject, ResponseObject, SchemaObject } from "./openapi-model.ts";

/** HTML that is already safe; everything else interpolated into `html` is escaped. */
class Safe {
  constructor(readonly text: string) {}
  toString() {
    return this.text;
  }
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

type Part = Safe | string | number | boolean | null | undefined | Part[];

function render(part: Part): string {
  if (part === null || part === undefined || part === false) return "";
  if (Array.isArray(part)) return part.map(render).join("");
  if (part instanceof Safe) return part.text;
  return escapeHtml(String(part));
}

function html(strings: TemplateStringsArray, ...parts: Part[]): Safe {
  let out = strings[0]!;
  for (const [i, part] of parts.entries()) out += render(part) + strings[i + 1]!;
  return new Safe(out);
}

/** A description as paragraphs, its `code` spans as code, the rest escaped. */
function prose(text: string | undefined): Safe {
  if (!text) return html``;
  return html`${text.split(/\n\n+/).map((paragraph) => html`<p>${inlineProse(paragraph)}</p>`)}`;
}

/** A description inside a line or a table cell: `code` spans, no paragraphs. */
function inlineProse(text: string | undefined): Safe {
  if (!text) return html``;
  return html`${text.split(/`([^`]*)`/).map((piece, i) => (i % 2 === 1 ? html`<code>${piece}</code>` : piece))}`;
}

type Ref = { $ref: string };
const isRef = (value: unknown): value is Ref => typeof value === "object" && value !== null && "$ref" in value;
const refName = (ref: string) => ref.slice(ref.lastIndexOf("/") + 1);
const schemaAnchor = (name: string) => `schema-${name}`;

/** A short name of a schema's type: `string`, `string or null`, `array of Owner`. */
function typeLabel(schema: SchemaObject): Safe {
  if (isRef(schema)) return html`<a href="#${schemaAnchor(refName(schema.$ref))}">${refName(schema.$ref)}</a>`;
  if (Array.isArray(schema.anyOf)) return html`${(schema.anyOf as SchemaObject[]).map((s, i) => html`${i > 0 ? " or " : ""}${typeLabel(s)}`)}`;
  if (Array.isArray(schema.allOf)) return html`${(schema.allOf as SchemaObject[]).map((s, i) => html`${i > 0 ? " and " : ""}${typeLabel(s)}`)}`;
  if (schema.type === "array") return html`array of ${schema.items ? typeLabel(schema.items as SchemaObject) : "anything"}`;
  if (schema.const !== undefined) return html`<code>${JSON.stringify(schema.const)}</code>`;
  if (Array.isArray(schema.enum)) return html`one of ${(schema.enum as unknown[]).map((e, i) => html`${i > 0 ? ", " : ""}<code>${JSON.stringify(e)}</code>`)}`;
  if (typeof schema.type === "string") return html`${schema.type}`;
  return html`any JSON value`;
}

const CONSTRAINTS: [string, string][] = [
  ["minLength", "at least %s characters"],
  ["maxLength", "at most %s characters"],
  ["pattern", "matches %s"],
  ["minimum", "≥ %s"],
  ["maximum", "≤ %s"],
  ["minItems", "at least %s items"],
  ["maxItems", "at most %s items"],
  ["default", "default %s"],
];

/** The rules on one schema and the schemas it is made of (anyOf branches). */
function constraints(schema: SchemaObject): Safe[] {
  const out: Safe[] = [];
  const visit = (s: SchemaObject) => {
    for (const [key, template] of CONSTRAINTS) {
      if (s[key] === undefined) continue;
      const value = key === "pattern" || key === "default" ? html`<code>${key === "default" ? JSON.stringify(s[key]) : String(s[key])}</code>` : html`${String(s[key])}`;
      const [before, after] = template.split("%s");
      out.push(html`${before}${value}${after}`);
    }
    if (typeof s.description === "string" && s !== schema) out.push(inlineProse(s.description));
    if (s.type === "array" && s.items && !isRef(s.items) && (s.items as SchemaObject).type !== "object") visit(s.items as SchemaObject);
    for (const branch of (s.anyOf as SchemaObject[] | undefined) ?? []) visit(branch);
  };
  visit(schema);
  return out;
}

/** The object whose fields a schema has, if any: itself, or its array's items. */
function fieldsOf(schema: SchemaObject): SchemaObject | null {
  if (isRef(schema)) return null;
  if (schema.type === "object" && schema.properties) return schema;
  if (schema.type === "array" && schema.items && !isRef(schema.items)) return fieldsOf(schema.items as SchemaObject);
  return null;
}

/** A schema as a table of its fields (nested objects nested), or a line saying its type. */
function schemaBlock(schema: SchemaObject): Safe {
  const object = fieldsOf(schema);
  if (!object) {
    const rules = constraints(schema);
    return html`<p class="type">${typeLabel(schema)}${rules.length ? html` — ${join(rules)}` : ""}</p>${prose(schema.description as string | undefined)}`;
  }
  const required = new Set((object.required as string[] | undefined) ?? []);
  const properties = Object.entries(object.properties as Record<string, SchemaObject>);
  const intro = object === schema ? prose(schema.description as string | undefined) : html`<p class="type">${typeLabel(schema)}</p>`;
  if (properties.length === 0) return html`${intro}<p class="type">an empty object <code>{}</code></p>`;
  return html`${intro}<table class="fields"><thead><tr><th>field</th><th>type</th><th>rules</th></tr></thead><tbody>${properties.map(
    ([name, property]) => {
      const nested = fieldsOf(property);
      return html`<tr><td><code>${name}</code>${required.has(name) ? html` <span class="req">required</span>` : ""}</td><td>${typeLabel(property)}</td><td>${join(
        [...constraints(property), ...(typeof property.description === "string" ? [inlineProse(property.description)] : [])],
      )}${nested ? schemaBlock(nested) : ""}</td></tr>`;
    },
  )}</tbody></table>`;
}

function join(parts: Safe[]): Safe {
  return html`${parts.map((p, i) => html`${i > 0 ? "; " : ""}${p}`)}`;
}

function resolve<T>(document: OpenApiDocument, value: T | Ref): T {
  if (!isRef(value)) return value;
  const [, , section, name] = value.$ref.split("/");
  return (document.components as unknown as Record<string, Record<string, T>>)[section!]![name!]!;
}

const operationAnchor = (operation: OperationObject) => `op-${operation.operationId}`;

function operations(document: OpenApiDocument): { path: string; method: Method; operation: OperationObject }[] {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    (Object.entries(item) as [Method, OperationObject][]).map(([method, operation]) => ({ path, method, operation })),
  );
}

function rolesOf(operation: OperationObject): string {
  const roles = operation.security.flatMap((requirement) => Object.values(requirement).flat());
  return operation.security.length === 0 ? "none (no token)" : roles.join(", ");
}

function operationSection(document: OpenApiDocument, path: string, method: Method, operation: OperationObject): Safe {
  const parameters = (operation.parameters ?? []).map((p) => resolve<ParameterObject>(document, p));
  const responses = Object.entries(operation.responses).map(([status, r]) => [status, resolve<ResponseObject>(document, r)] as const);
  return html`<section class="op" id="${operationAnchor(operation)}">
<h3><span class="method ${method}">${method.toUpperCase()}</span> <code>${path}</code></h3>
<p class="summary">${operation.summary}</p>
${prose(operation.description)}
<p><strong>Token roles:</strong> ${rolesOf(operation)}</p>
${parameters.length
    ? html`<h4>Parameters</h4><table class="fields"><thead><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr></thead><tbody>${parameters.map(
        (p) => html`<tr><td><code>${p.name}</code>${p.required ? html` <span class="req">required</span>` : ""}</td><td>${p.in}</td><td>${typeLabel(p.schema)}</td><td>${join([...constraints(p.schema), inlineProse(p.description)])}</td></tr>`,
      )}</tbody></table>`
    : ""}
${operation.requestBody
    ? html`<h4>Request body${operation.requestBody.required ? "" : " (optional)"}</h4>${Object.entries(operation.requestBody.content).map(
        ([type, { schema }]) => html`<p class="type"><code>${type}</code></p>${schemaBlock(schema)}`,
      )}`
    : ""}
<h4>Responses</h4>
<table class="responses"><tbody>${responses.map(([status, response]) => html`<tr><td class="status s${status[0]}">${status}</td><td>${prose(response.description)}${Object.entries(
    response.headers ?? {},
  ).map(([name, header]) => html`<p class="type">header <code>${name}</code>: ${inlineProse(resolve<HeaderObject>(document, header).description)}</p>`)}${Object.values(
    response.content ?? {},
  ).map(({ schema }) => errorCodes(schema) ?? schemaBlock(schema))}</td></tr>`)}</tbody></table>
</section>`;
}

/** An error response's codes, from its narrowed `Error` schema; null for any other schema. */
function errorCodes(schema: SchemaObject): Safe | null {
  const parts = schema.allOf as SchemaObject[] | undefined;
  if (!parts || !isRef(parts[0]) || refName(parts[0].$ref) !== "Error") return null;
  const errorCode = (parts[1]?.properties as Record<string, SchemaObject> | undefined)?.errorCode;
  const codes = (errorCode?.enum ?? (errorCode?.const === undefined ? [] : [errorCode.const])) as string[];
  return html`<p class="type"><a href="#${schemaAnchor("Error")}">Error</a> with <code>errorCode</code> ${codes.map((c, i) => html`${i > 0 ? " or " : ""}<code>${c}</code>`)}</p>`;
}

const STYLE = `
:root { color-scheme: light; --fg: #1d2430; --muted: #5b6475; --line: #d9dde5; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #f6f7f9; }
header { background: #14253d; color: #fff; padding: 24px 32px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 4px 0; color: #cbd5e3; max-width: 70em; }
header code { color: #fff; background: rgba(255, 255, 255, .15); }
header a { color: #9cc7ff; }
.layout { display: grid; grid-template-columns: 300px 1fr; gap: 24px; padding: 24px 32px; }
nav { position: sticky; top: 16px; align-self: start; max-height: calc(100vh - 32px); overflow: auto; font-size: 13px; }
nav h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 16px 0 4px; }
nav ul { list-style: none; margin: 0; padding: 0; }
nav li { margin: 2px 0; }
nav a { color: var(--fg); text-decoration: none; word-break: break-all; }
nav a:hover { color: var(--accent); }
main { min-width: 0; }
main > h2 { border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 32px; }
section.op, section.schema { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 20px; margin: 16px 0; }
h3 { margin: 4px 0; font-size: 17px; word-break: break-all; }
h4 { margin: 16px 0 6px; font-size: 14px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.summary { font-weight: 600; margin: 4px 0; }
.method { display: inline-block; min-width: 52px; text-align: center; border-radius: 4px; padding: 1px 8px; color: #fff; font-size: 13px; font-family: ui-monospace, monospace; }
.method.get { background: #1f7a3d; } .method.post { background: #0b5cad; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; background: #eef1f5; padding: 0 4px; border-radius: 3px; word-break: break-word; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f6; font-size: 13px; }
td p { margin: 2px 0; }
table.fields table.fields { margin-top: 8px; }
.req { color: #b42318; font-size: 12px; }
.type { color: var(--muted); margin: 4px 0; }
td.status { font-family: ui-monospace, monospace; font-weight: 700; width: 60px; }
td.status.s2 { color: #1f7a3d; } td.status.s3 { color: #7a5a00; } td.status.s4, td.status.s5 { color: #b42318; }
a { color: var(--accent); }
@media (max-width: 900px) { .layout { grid-template-columns: 1fr; } nav { position: static; max-height: none; } }
`;

/** The whole reference page for `document`. */
export function docsPage(document: OpenApiDocument): string {
  const all = operations(document);
  const byTag = document.tags.map((tag) => ({ tag, ops: all.filter(({ operation }) => operation.tags.includes(tag.name)) }));
  const errorRows = Object.entries(document.components.responses).map(([name, response]) => {
    const status = name.replace(/^Error/, "");
    const schema = Object.values(response.content ?? {})[0]?.schema;
    return html`<tr><td class="status s${status[0]}">${status}</td><td>${schema ? errorCodes(schema) : ""}</td><td>${prose(response.description)}</td></tr>`;
  });
  const schemas = Object.entries(document.components.schemas);
  const page = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${document.info.title} — API reference</title><style>${new Safe(STYLE)}</style></head>
<body><header><h1>${document.info.title} <small>${document.info.version}</small></h1>${prose(document.info.description)}
<p>OpenAPI ${document.openapi} document: <a href="openapi.json">openapi.json</a></p></header>
<div class="layout"><nav>${byTag.map(
    ({ tag, ops }) => html`<h2>${tag.name}</h2><ul>${ops.map(
      ({ path, method, operation }) => html`<li><a href="#${operationAnchor(operation)}"><span class="method ${method}">${method.toUpperCase()}</span> ${path}</a></li>`,
    )}</ul>`,
  )}<h2>Reference</h2><ul><li><a href="#auth">Authentication</a></li><li><a href="#errors">Errors</a></li>${schemas.map(
    ([name]) => html`<li><a href="#${schemaAnchor(name)}">${name}</a></li>`,
  )}</ul></nav>
<main>
<h2 id="auth">Authentication</h2>${Object.entries(document.components.securitySchemes).map(
    ([name, scheme]) => html`<p><code>${name}</code>: <code>Authorization: Bearer &lt;token&gt;</code></p>${prose(scheme.description)}`,
  )}
<h2 id="errors">Errors</h2>
<p>Every error answers <a href="#${schemaAnchor("Error")}">Error</a>, <code>{statusCode, why, errorCode}</code>. A rejected request changes nothing.</p>
<table class="responses"><thead><tr><th>status</th><th>errorCode</th><th>when</th></tr></thead><tbody>${errorRows}</tbody></table>
${byTag.map(({ tag, ops }) => html`<h2>${tag.name}</h2>${prose(tag.description)}${ops.map(({ path, method, operation }) => operationSection(document, path, method, operation))}`)}
<h2>Schemas</h2>${schemas.map(([name, schema]) => html`<section class="schema" id="${schemaAnchor(name)}"><h3>${name}</h3>${schemaBlock(schema)}</section>`)}
</main></div></body></html>
`;
  return page.text;
}
