// The OpenAPI 3.1 description of the HTTP API, built from the routes' own declarations
// (routes.ts; route.ts says what each field means): their paths, roles, the valibot schemas they
// check requests with, their answers and errors, with the apps' config schemas and the owner
// schema as components. The operational routes are documented from their declarations in ops.ts
// when the app serves them, and the two routes that serve this description (`GET /openapi.json`
// and `GET /docs`, rendered by src/http/docs-page.ts) are declared here with their operations.
// The document depends on the enabled apps and the provider id, so each app instance builds it
// once. Imports valibot, @valibot/to-json-schema, hono's types, src/base/errors.ts, the domain
// types, and the routes, ops and docs page of this folder.

import { type ConversionConfig, toJsonSchema, toJsonSchemaDefs } from "@valibot/to-json-schema";
import type { Context, Env, Hono } from "hono";
import * as v from "valibot";
import { ERROR_CODES, type ErrorCode } from "../base/errors.ts";
import type { IntegratedApp } from "../domain/app.ts";
import { OwnerSchema } from "../domain/owner.ts";
import { docsPage } from "./docs-page.ts";
import type { OpenApiDocument, OperationObject, ParameterObject, ResponseObject, SchemaObject } from "./openapi-model.ts";
import { OPERATIONAL_ROUTES, type RequestObserver } from "./ops.ts";
import type { ErrorStatus, Route, Tag } from "./route.ts";
import { API_ROUTES, EmptySchema, TerminalOpenedSchema, viewSchema } from "./routes.ts";

export interface ApiDescriptionOptions {
  providerId: string;
  /** The enabled apps: each gets its own paths, as the routes answer 404 for the others. */
  apps: Iterable<IntegratedApp<unknown>>;
  /** The routes to describe: the API's own by default. */
  routes?: readonly Route[];
  /** Operational routes the app serves (`/healthz`, `/readyz`, `/metrics`): see ops.ts. */
  operational?: Iterable<string>;
}

export const OPENAPI_VERSION = "3.1.1";

/** The error body every failure answers with (spec §2), built from src/base/errors.ts's codes. */
export const ErrorBodySchema = v.object({
  statusCode: v.pipe(v.number(), v.integer(), v.description("The HTTP status, repeated.")),
  why: v.pipe(v.string(), v.description("What went wrong, in a sentence a person can act on; names the field at fault.")),
  errorCode: v.pipe(v.picklist(ERROR_CODES), v.description("A stable code a program can act on.")),
});

/** The error cases of spec §2, by status: what each means and the codes it carries. */
const ERRORS: Record<ErrorStatus, { description: string; codes: ErrorCode[] }> = {
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

/** The tags operations are grouped by, in the order the reference page shows them. */
const TAGS: Record<Tag, string> = {
  "Provider API": "Called by UCloud/Core with a token of role SERVICE; `principal` names the owner.",
  "Public API": "Called by the UCloud web UI with a token of role USER or ADMIN; the owner is the caller's personal workspace.",
  Terminal: "The integrated terminal: internal, so it has no configuration routes; opened and kept alive by UCloud/Core.",
  Operations: "For probes and monitoring. No token needed.",
  Description: "This description of the API. No token needed.",
};

/** A route as documented: once per enabled app with configuration routes when its path has `:app`. */
interface Documented {
  route: Route;
  path: string;
  /** The app that `:app` stands for. */
  app?: IntegratedApp<unknown>;
}

function documentedRoutes(routes: readonly Route[], apps: IntegratedApp<unknown>[], providerId: string): Documented[] {
  const configurable = apps.filter((app) => !app.internal);
  return routes.flatMap((route): Documented[] => {
    const path = route.path.replace(":providerId", providerId);
    if (path.includes(":app")) return configurable.map((app) => ({ route, path: path.replace(":app", app.name), app }));
    return route.app === undefined || apps.some((app) => app.name === route.app) ? [{ route, path }] : [];
  });
}

export function openApiDocument(options: ApiDescriptionOptions): OpenApiDocument {
  const apps = [...options.apps];
  const documented = documentedRoutes(options.routes ?? API_ROUTES, apps, options.providerId);
  const definitions: Record<string, v.GenericSchema> = { Owner: OwnerSchema, Error: ErrorBodySchema, Empty: EmptySchema };
  for (const app of apps) {
    definitions[`${pascal(app.name)}Config`] = app.configSchema;
    if (!app.internal) definitions[`${pascal(app.name)}View`] = viewSchema(app.configSchema);
  }
  if (documented.some(({ route }) => route.answer.schema === TerminalOpenedSchema)) definitions.TerminalOpened = TerminalOpenedSchema;
  const schemas = toJsonSchemaDefs(definitions, conversion(definitions)) as Record<string, SchemaObject>;
  const describe = (schema: v.GenericSchema) => inline(schema, definitions);

  const paths: OpenApiDocument["paths"] = {};
  for (const { route, path, app } of documented) paths[path] = { ...paths[path], [route.method]: operationOf(route, app, describe) };
  for (const path of options.operational ?? []) {
    const route = OPERATIONAL_ROUTES[path];
    if (route) paths[path] = { ...paths[path], get: { ...route.operation, tags: ["Operations"], security: [] } };
  }
  for (const [path, route] of Object.entries(DESCRIPTION_ROUTES)) paths[path] = { ...paths[path], get: route.operation };

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
    tags: Object.entries(TAGS)
      .map(([name, description]) => ({ name, description }))
      .filter((tag) => Object.values(paths).some((item) => Object.values(item).some((op) => op.tags.includes(tag.name)))),
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

/** The properties of a converted query object as query parameters. */
function queryParameters(schema: SchemaObject): ParameterObject[] {
  const properties = (schema.properties ?? {}) as Record<string, SchemaObject>;
  const required = new Set((schema.required as string[] | undefined) ?? []);
  return Object.entries(properties).map(([name, property]) => ({
    name,
    in: "query",
    required: required.has(name),
    // A parameter the route reads says what it is; the rest are UCloud's, accepted and ignored.
    description: typeof property.description === "string" ? property.description : "Accepted and ignored.",
    schema: property,
  }));
}

/** The operation of a route (for one app, when its path has `:app`). */
function operationOf(route: Route, app: IntegratedApp<unknown> | undefined, describe: (schema: v.GenericSchema) => SchemaObject): OperationObject {
  const named = (text: string) => (app === undefined ? text : text.replaceAll("{app}", app.name));
  const parameters: OperationObject["parameters"] = [
    ...(route.query === undefined ? [] : queryParameters(describe(route.query))),
    ...(route.precondition === undefined ? [] : [{ $ref: `#/components/parameters/${route.precondition.replaceAll("-", "")}` }]),
  ];
  let answer: SchemaObject;
  if (route.answer.schema !== "view") answer = describe(route.answer.schema);
  else if (app !== undefined) answer = ref(`${pascal(app.name)}View`);
  else throw new Error(`${route.method.toUpperCase()} ${route.path}: only a route with :app answers an app's view`);
  return {
    operationId: named(route.operationId),
    tags: [route.tag],
    summary: named(route.summary),
    description: route.description,
    security: [{ bearerAuth: [...route.family.roles] }],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(route.body === undefined ? {} : { requestBody: { required: !route.emptyBodyIsObject, content: json(describe(documentedBody(route.body, app))) } }),
    responses: {
      ...answerResponse(route.answer.description, answer, route.answer.etag),
      ...(route.precondition === "If-None-Match" ? NOT_MODIFIED : {}),
      ...Object.fromEntries(route.errors.map((status) => [status, { $ref: `#/components/responses/${errorResponseName(status)}` }])),
    },
  };
}

/** A body's `config` is checked by the service against the app's schema: documented as that schema. */
function documentedBody(body: v.GenericSchema, app: IntegratedApp<unknown> | undefined): v.GenericSchema {
  if (app === undefined || !(body.type === "object" && "entries" in body)) return body;
  const { entries } = body as v.ObjectSchema<v.ObjectEntries, undefined>;
  return "config" in entries ? v.object({ ...entries, config: app.configSchema }) : body;
}

function answerResponse(description: string, schema: SchemaObject, etag: Route["answer"]["etag"]): Record<string, ResponseObject> {
  const headers = { ETag: { $ref: etag === "always" ? "#/components/headers/ETag" : "#/components/headers/ETagWhenStored" } };
  return { "200": { description, ...(etag === "none" ? {} : { headers }), content: json(schema) } };
}

const NOT_MODIFIED: Record<string, ResponseObject> = {
  "304": {
    description: "`If-None-Match` names the current ETag: the client's copy is current. No body.",
    headers: { ETag: { $ref: "#/components/headers/ETag" } },
  },
};

/** The routes that serve this description, with their operations. No token needed. */
const DESCRIPTION_ROUTES: Record<string, { operation: OperationObject; serve(document: OpenApiDocument): (c: Context) => Response | Promise<Response> }> = {
  "/openapi.json": {
    operation: {
      operationId: "openApiDocument",
      tags: ["Description"],
      summary: "This document",
      security: [],
      responses: { "200": { description: "The OpenAPI 3.1 document.", content: json({ type: "object" }) } },
    },
    serve: (document) => {
      const text = JSON.stringify(document);
      return (c) => c.body(text, 200, { "Content-Type": "application/json; charset=UTF-8" });
    },
  },
  "/docs": {
    operation: {
      operationId: "referencePage",
      tags: ["Description"],
      summary: "This document as a readable page",
      security: [],
      responses: { "200": { description: "An HTML page.", content: { "text/html": { schema: { type: "string" } } } } },
    },
    serve: (document) => {
      const page = docsPage(document);
      // The page is self-contained; the policy keeps it so (no scripts, nothing fetched from elsewhere).
      return (c) => c.html(page, 200, { "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'" });
    },
  },
};

/**
 * Mounts `GET /openapi.json` and `GET /docs` (no token needed), built once for this app, each
 * through `observer` when the app observes its routes (ops.ts). Mount it last: the operational
 * routes already mounted are documented too.
 */
export function mountApiDescription<E extends Env>(app: Hono<E>, options: ApiDescriptionOptions, observer?: Pick<RequestObserver, "route">): void {
  const served = app.routes.filter((r) => r.method === "GET" && r.path in OPERATIONAL_ROUTES).map((r) => r.path);
  const document = openApiDocument({ operational: served, ...options });
  for (const [path, route] of Object.entries(DESCRIPTION_ROUTES)) {
    const answer = route.serve(document);
    app.get(path, observer ? observer.route(path, answer) : answer);
  }
}
