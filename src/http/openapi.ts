// The OpenAPI 3.1 description of the HTTP API, generated from the same valibot schemas the routes
// check requests with (src/http/requests.ts, the apps' config schemas, the owner schema), and
// the two routes that serve it: `GET /openapi.json` and `GET /docs` (src/http/docs-page.ts).
// The document depends on the enabled apps and the provider id, so each app instance builds it
// once. Imports hono (types), valibot, @valibot/to-json-schema, src/domain (the app interface, the
// owner schema), src/service (the answers' types), src/base/errors.ts, docs-page.ts,
// openapi-model.ts and requests.ts.

import { type ConversionConfig, toJsonSchema, toJsonSchemaDefs } from "@valibot/to-json-schema";
import type { Env, Hono } from "hono";
import * as v from "valibot";
import type { IntegratedApp } from "../domain/app.ts";
import { ERROR_CODES, type ErrorCode } from "../base/errors.ts";
import type { View } from "../service/configurations.ts";
import type { TerminalOpened } from "../service/terminal.ts";
import { OwnerSchema } from "../domain/owner.ts";
import { docsPage } from "./docs-page.ts";
import type { Method, OpenApiDocument, OperationObject, ParameterObject, ResponseObject, SchemaObject } from "./openapi-model.ts";
import * as req from "./requests.ts";

export interface ApiDescriptionOptions {
  providerId: string;
  /** The enabled apps: each gets its own paths, as the routes answer 404 for the others. */
  apps: Iterable<IntegratedApp<unknown>>;
  /** Operational routes the app serves (`/healthz`, `/readyz`, `/metrics`): see OPERATIONAL_ROUTES. */
  operational?: Iterable<string>;
}

export const OPENAPI_VERSION = "3.1.1";

/** The error body every failure answers with (spec §2), built from src/base/errors.ts's codes. */
export const ErrorBodySchema = v.object({
  statusCode: v.pipe(v.number(), v.integer(), v.description("The HTTP status, repeated.")),
  why: v.pipe(v.string(), v.description("What went wrong, in a sentence a person can act on; names the field at fault.")),
  errorCode: v.pipe(v.picklist(ERROR_CODES), v.description("A stable code a program can act on.")),
});

const EmptySchema = v.pipe(v.object({}), v.description("An empty object."));

const TerminalOpenedSchema = v.object({
  jobId: v.pipe(v.string(), v.description("The terminal's UCloud job.")),
  etag: v.pipe(v.string(), v.description("The ETag of the terminal's record, also in the ETag header.")),
  warnings: v.pipe(v.array(v.string()), v.description("Why folders were not added or were taken out, in words a user can act on.")),
});

// The answers are typed by the service, not by these schemas: fail to compile when they part.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const answersMatchTheService: [Same<v.InferOutput<typeof TerminalOpenedSchema>, TerminalOpened>, Same<keyof View, "etag" | "config" | "warnings">] = [true, true];
void answersMatchTheService;

/** The error cases of spec §2, by status: what each means and the codes it carries. */
const ERRORS: Record<string, { description: string; codes: ErrorCode[] }> = {
  "400": {
    description: "Malformed JSON or wrong types (INVALID_REQUEST), or an invalid configuration (INVALID_CONFIGURATION). `why` names the field.",
    codes: ["INVALID_REQUEST", "INVALID_CONFIGURATION"],
  },
  "401": { description: "No token, or a token that was refused.", codes: ["UNAUTHORIZED"] },
  "403": { description: "The token's role may not call this route.", codes: ["FORBIDDEN"] },
  "404": {
    description: "Unknown or disabled app (UNKNOWN_APPLICATION); a restart or terminal activity with no record, or another provider id (NOT_FOUND).",
    codes: ["UNKNOWN_APPLICATION", "NOT_FOUND"],
  },
  "409": { description: "`expectedETag` differs from the current ETag: nothing changed.", codes: ["ETAG_MISMATCH"] },
  "412": { description: "`If-Match` differs from the current ETag: nothing changed.", codes: ["PRECONDITION_FAILED"] },
  "413": {
    description: "The body is larger than `[api] body_limit` (1 MiB by default), or the configuration's JSON larger than 512 KiB (`why` names `config`). Nothing changed.",
    codes: ["PAYLOAD_TOO_LARGE"],
  },
  "428": {
    description: "With `[api] require_etag = true`: an update named neither `expectedETag` nor `If-Match`.",
    codes: ["PRECONDITION_REQUIRED"],
  },
  "503": { description: "Redis, Kubernetes or UCloud/Core unreachable: nothing was stored. Try again.", codes: ["UNAVAILABLE"] },
};

const errorResponseName = (status: string) => `Error${status}`;

/** Converter settings: JSON Schema 2020-12 (OpenAPI 3.1's dialect), shared schemas as components. */
function conversion(definitions: Record<string, v.GenericSchema>): ConversionConfig {
  return {
    target: "draft-2020-12",
    typeMode: "input",
    definitions,
    // Anything the overrides below do not know fails loudly (the tests build this document), so
    // that a new kind of check is described rather than silently dropped.
    errorMode: "throw",
    overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
    overrideAction: ({ valibotAction, jsonSchema }) => {
      const action = valibotAction as { type: string; message?: unknown; requirement?: unknown };
      // A custom check has no JSON Schema form: say it in words (its message is the rule).
      if (action.type === "check" || action.type === "raw_check") {
        if (typeof action.message === "string") return { ...jsonSchema, description: joinSentences(jsonSchema.description, `Also: ${action.message}.`) };
        // A raw check names its rule in its issues only: the schema's description must say it.
        return { ...jsonSchema, description: jsonSchema.description ?? "Further rules are checked by the service." };
      }
      // JSON Schema 2020-12 patterns are ECMA-262 regular expressions with Unicode semantics, so
      // the `u` flag is already what they mean; any other flag is a real loss.
      if (action.type === "regex" && action.requirement instanceof RegExp && /^u?$/.test(action.requirement.flags)) {
        return { ...jsonSchema };
      }
      return null;
    },
  };
}

function joinSentences(first: unknown, second: string): string {
  return typeof first === "string" && first !== "" ? `${first} ${second}` : second;
}

/** A converted inline schema, without the keywords that belong to a whole document. */
function inline(schema: v.GenericSchema, definitions: Record<string, v.GenericSchema>): SchemaObject {
  const { $schema: _dialect, $defs: _defs, ...rest } = toJsonSchema(schema, conversion(definitions)) as SchemaObject;
  return rest;
}

const pascal = (name: string) => name.replace(/(^|[-_])([a-z])/g, (_m, _sep, c: string) => c.toUpperCase());
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: SchemaObject) => ({ "application/json": { schema } });

export function openApiDocument(options: ApiDescriptionOptions): OpenApiDocument {
  const apps = [...options.apps];
  const definitions: Record<string, v.GenericSchema> = { Owner: OwnerSchema, Error: ErrorBodySchema, Empty: EmptySchema };
  for (const app of apps) {
    const config = `${pascal(app.name)}Config`;
    definitions[config] = app.configSchema;
    if (!app.internal) definitions[`${pascal(app.name)}View`] = v.object({
        etag: v.string(),
        config: app.configSchema,
        warnings: v.optional(
          v.pipe(v.array(v.string()), v.description("What the service itself removed from the configuration, and why (a folder marked restricted since it was configured). Absent when nothing was.")),
        ),
      });
  }
  if (apps.some((app) => app.name === "terminal")) definitions.TerminalOpened = TerminalOpenedSchema;
  const schemas = toJsonSchemaDefs(definitions, conversion(definitions)) as Record<string, SchemaObject>;
  const body = (schema: v.GenericSchema) => inline(schema, definitions);

  const paths: OpenApiDocument["paths"] = {};
  const add = (path: string, method: Method, operation: OperationObject) => {
    paths[path] = { ...paths[path], [method]: operation };
  };
  const errors = (...statuses: string[]) => Object.fromEntries(statuses.map((s) => [s, { $ref: `#/components/responses/${errorResponseName(s)}` }]));
  const ok = (description: string, schema: SchemaObject, etag: "always" | "when-stored" | "none") => ({
    "200": {
      description,
      ...(etag === "none"
        ? {}
        : { headers: { ETag: etag === "always" ? { $ref: "#/components/headers/ETag" } : { $ref: "#/components/headers/ETagWhenStored" } } }),
      content: json(schema),
    },
  });
  const notModified = {
    "304": {
      description: "`If-None-Match` names the current ETag: the client's copy is current. No body.",
      headers: { ETag: { $ref: "#/components/headers/ETag" } },
    },
  };
  const ifMatch = { $ref: "#/components/parameters/IfMatch" };
  const ifNoneMatch = { $ref: "#/components/parameters/IfNoneMatch" };
  const service = [{ bearerAuth: ["SERVICE"] }];
  const user = [{ bearerAuth: ["USER", "ADMIN"] }];
  const provider = `/ucloud/${options.providerId}/iapps`;

  for (const app of apps.filter((a) => !a.internal)) {
    const name = app.name;
    const config = definitions[`${pascal(name)}Config`]!;
    const view = ref(`${pascal(name)}View`);
    const withConfig = <E extends v.ObjectEntries>(schema: v.ObjectSchema<E, undefined>) => v.object({ ...schema.entries, config });
    const id = (family: string, op: string) => `${name}${family}${pascal(op)}`;
    const written = "Stored. The `ETag` header carries the record's new ETag.";

    add(`${provider}/${name}/retrieve`, "post", {
      operationId: id("Provider", "retrieve"),
      tags: ["Provider API"],
      summary: `The ${name} configuration of an owner`,
      description: 'With no record: ETag "initial" and the default configuration; nothing is stored.',
      security: service,
      parameters: [ifNoneMatch],
      requestBody: { required: true, content: json(body(req.ProviderRetrieve)) },
      responses: { ...ok("The configuration and its ETag.", view, "always"), ...notModified, ...errors("400", "401", "403", "404", "413", "503") },
    });
    add(`${provider}/${name}/update`, "post", {
      operationId: id("Provider", "update"),
      tags: ["Provider API"],
      summary: `Replace the ${name} configuration of an owner`,
      description:
        "Validated before anything is stored. `expectedETag` null writes unconditionally (unless `[api] require_etag`); the first update registers the record's job.",
      security: service,
      parameters: [ifMatch],
      requestBody: { required: true, content: json(body(withConfig(req.ProviderUpdate))) },
      responses: { ...ok(written, ref("Empty"), "always"), ...errors("400", "401", "403", "404", "409", "412", "413", "428", "503") },
    });
    add(`${provider}/${name}/reset`, "post", {
      operationId: id("Provider", "reset"),
      tags: ["Provider API"],
      summary: `Reset the ${name} configuration of an owner to its default`,
      description: "With no record, succeeds and stores nothing (then no `ETag` header).",
      security: service,
      parameters: [ifMatch],
      requestBody: { required: true, content: json(body(req.ProviderReset)) },
      responses: { ...ok(written, ref("Empty"), "when-stored"), ...errors("400", "401", "403", "404", "409", "412", "413", "503") },
    });
    add(`${provider}/${name}/restart`, "post", {
      operationId: id("Provider", "restart"),
      tags: ["Provider API"],
      summary: `Restart the ${name} pod of an owner`,
      description: "Deletes the pod; the worker recreates it for the same job. A plain restart keeps the ETag. 404 without a record.",
      security: service,
      parameters: [ifMatch],
      requestBody: { required: true, content: json(body(req.ProviderRestart)) },
      responses: { ...ok("Restart requested.", ref("Empty"), "always"), ...errors("400", "401", "403", "404", "412", "413", "503") },
    });

    add(`/api/iapps/${name}/retrieve`, "get", {
      operationId: id("Public", "retrieve"),
      tags: ["Public API"],
      summary: `The caller's ${name} configuration`,
      description: 'The owner is the token\'s `sub` in its personal workspace. With no record: ETag "initial" and the default configuration.',
      security: user,
      parameters: [...queryParameters(body(req.PublicRetrieve)), ifNoneMatch],
      responses: { ...ok("The configuration and its ETag.", view, "always"), ...notModified, ...errors("400", "401", "403", "404", "503") },
    });
    add(`/api/iapps/${name}/update`, "post", {
      operationId: id("Public", "update"),
      tags: ["Public API"],
      summary: `Replace the caller's ${name} configuration`,
      description: "Validated before anything is stored. `provider` and `productId` are accepted and ignored.",
      security: user,
      parameters: [ifMatch],
      requestBody: { required: true, content: json(body(withConfig(req.PublicUpdate))) },
      responses: { ...ok(written, ref("Empty"), "always"), ...errors("400", "401", "403", "404", "409", "412", "413", "428", "503") },
    });
    add(`/api/iapps/${name}/reset`, "post", {
      operationId: id("Public", "reset"),
      tags: ["Public API"],
      summary: `Reset the caller's ${name} configuration to its default`,
      description: "No `expectedETag`, as in UCloud; an `If-Match` header still counts. An empty body is an empty object.",
      security: user,
      parameters: [ifMatch],
      requestBody: { required: false, content: json(body(req.PublicReset)) },
      responses: { ...ok(written, ref("Empty"), "when-stored"), ...errors("400", "401", "403", "404", "412", "413", "503") },
    });
    add(`/api/iapps/${name}/restart`, "post", {
      operationId: id("Public", "restart"),
      tags: ["Public API"],
      summary: `Restart the caller's ${name} pod`,
      description: "404 without a record. An empty body is an empty object.",
      security: user,
      parameters: [ifMatch],
      requestBody: { required: false, content: json(body(req.PublicRestart)) },
      responses: { ...ok("Restart requested.", ref("Empty"), "always"), ...errors("400", "401", "403", "404", "412", "413", "503") },
    });
  }

  if (apps.some((app) => app.name === "terminal")) {
    add(`${provider}/terminal/open`, "post", {
      operationId: "terminalOpen",
      tags: ["Terminal"],
      summary: "Open the integrated terminal in a folder",
      description:
        "Adds the folder's drive (`/<driveId>`) to the terminal's folders (deduplicated, order kept) and refreshes the inactivity lease. A drive the owner cannot use is left out and `warnings` says why.",
      security: service,
      requestBody: { required: true, content: json(body(req.TerminalOpen)) },
      responses: { ...ok("The terminal's job and ETag.", ref("TerminalOpened"), "always"), ...errors("400", "401", "403", "404", "413", "503") },
    });
    add(`${provider}/terminal/activity`, "post", {
      operationId: "terminalActivity",
      tags: ["Terminal"],
      summary: "A key press in the integrated terminal",
      description: "Refreshes the inactivity lease; after it ran out, brings the terminal back. 404 without a terminal.",
      security: service,
      requestBody: { required: true, content: json(body(req.TerminalActivity)) },
      responses: { ...ok("The lease was refreshed.", ref("Empty"), "none"), ...errors("400", "401", "403", "404", "413", "503") },
    });
  }

  for (const path of options.operational ?? []) {
    const route = OPERATIONAL_ROUTES[path];
    if (route) add(path, "get", { ...route, tags: ["Operations"], security: [] });
  }

  add("/openapi.json", "get", {
    operationId: "openApiDocument",
    tags: ["Description"],
    summary: "This document",
    security: [],
    responses: { "200": { description: "The OpenAPI 3.1 document.", content: json({ type: "object" }) } },
  });
  add("/docs", "get", {
    operationId: "referencePage",
    tags: ["Description"],
    summary: "This document as a readable page",
    security: [],
    responses: { "200": { description: "An HTML page.", content: { "text/html": { schema: { type: "string" } } } } },
  });

  const responses: Record<string, ResponseObject> = {};
  for (const [status, { description, codes }] of Object.entries(ERRORS)) {
    const narrowed: SchemaObject = { allOf: [ref("Error"), { type: "object", properties: { statusCode: { const: Number(status) }, errorCode: { enum: codes } } }] };
    responses[errorResponseName(status)] = { description, content: json(narrowed) };
  }

  return {
    openapi: OPENAPI_VERSION,
    jsonSchemaDialect: "https://spec.openapis.org/oas/3.1/dialect/base",
    info: {
      title: "ucloud-iapps",
      version: "0.1.0",
      description: [
        `The integrated applications of UCloud provider \`${options.providerId}\`: ${apps.map((a) => a.name).join(", ") || "none enabled"}.`,
        "Two route families serve the same operations: the provider API, which UCloud/Core calls with a service token naming the owner, and the public API, which the UCloud web UI calls with a user token (the owner is the caller).",
        "JSON in, JSON out. Every error answers `{statusCode, why, errorCode}`. Unknown request fields are ignored.",
      ].join("\n\n"),
    },
    tags: [
      { name: "Provider API", description: "Called by UCloud/Core with a token of role SERVICE; `principal` names the owner." },
      { name: "Public API", description: "Called by the UCloud web UI with a token of role USER or ADMIN; the owner is the caller's personal workspace." },
      { name: "Terminal", description: "The integrated terminal: internal, so it has no configuration routes; opened and kept alive by UCloud/Core." },
      { name: "Operations", description: "For probes and monitoring. No token needed." },
      { name: "Description", description: "This description of the API. No token needed." },
    ].filter((tag) => Object.values(paths).some((item) => Object.values(item).some((op) => op.tags.includes(tag.name)))),
    paths,
    components: {
      schemas,
      responses,
      parameters: {
        IfMatch: {
          name: "If-Match",
          in: "header",
          description:
            'A precondition: `"<etag>"` (or a list, or `*`), compared strongly (a weak `W/"<etag>"` never matches). When the current ETag is not among them: 412, nothing changes.',
          schema: { type: "string" },
        },
        IfNoneMatch: {
          name: "If-None-Match",
          in: "header",
          description: 'The ETag the client holds, `"<etag>"` or `W/"<etag>"` (compared weakly). When it is current: 304 with no body.',
          schema: { type: "string" },
        },
      },
      headers: {
        ETag: { description: 'The record\'s ETag, quoted: `"<etag>"`.', schema: { type: "string" } },
        ETagWhenStored: { description: 'The record\'s new ETag, quoted; absent when nothing was stored.', schema: { type: "string" } },
      },
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description:
            "A JWT signed with `[auth] jwt_public_key` (RS256/ES256) or, for local use, `[auth] jwt_secret` (HS256). Claims: `sub` (username), `role` (USER, ADMIN or SERVICE), `exp`. Each operation lists the roles it accepts; another role answers 403.",
        },
      },
    },
  };
}

/**
 * The operational routes, documented when the app serves them (they are mounted by another
 * module, before this one looks at the app's routes).
 */
const OPERATIONAL_ROUTES: Record<string, Omit<OperationObject, "tags" | "security">> = {
  "/healthz": {
    operationId: "healthz",
    summary: "Liveness: the process serves",
    responses: { "200": { description: "The process serves.", content: json({ type: "object", properties: { status: { const: "ok" } } }) } },
  },
  "/readyz": {
    operationId: "readyz",
    summary: "Readiness: Redis answers and the cache's subscription is live",
    responses: {
      "200": { description: "Ready to serve.", content: json({ type: "object", properties: { status: { const: "ready" }, checks: { type: "object" } } }) },
      "503": { description: "Not ready; `why` names what is missing.", content: json({ allOf: [ref("Error"), { type: "object", properties: { errorCode: { const: "UNAVAILABLE" } } }] }) },
    },
  },
  "/metrics": {
    operationId: "metrics",
    summary: "Prometheus metrics (text format 0.0.4)",
    responses: { "200": { description: "The process's metrics.", content: { "text/plain": { schema: { type: "string" } } } } },
  },
};

/** The properties of a converted query object as query parameters. */
function queryParameters(schema: SchemaObject): ParameterObject[] {
  const properties = (schema.properties ?? {}) as Record<string, SchemaObject>;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  return Object.entries(properties).map(([name, property]) => ({
    name,
    in: "query",
    required: required.has(name),
    description: "Accepted and ignored.",
    schema: property,
  }));
}

/**
 * Mounts `GET /openapi.json` and `GET /docs` (no token needed), built once for this app. Mount it
 * last: the operational routes already mounted are documented too.
 */
export function mountApiDescription<E extends Env>(app: Hono<E>, options: ApiDescriptionOptions): void {
  const served = app.routes.filter((r) => r.method === "GET" && r.path in OPERATIONAL_ROUTES).map((r) => r.path);
  const document = openApiDocument({ operational: served, ...options });
  const documentJson = JSON.stringify(document);
  const page = docsPage(document);
  app.get("/openapi.json", (c) => c.body(documentJson, 200, { "Content-Type": "application/json; charset=UTF-8" }));
  // The page is self-contained; the policy keeps it so (no scripts, nothing fetched from elsewhere).
  app.get("/docs", (c) => c.html(page, 200, { "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'" }));
}
