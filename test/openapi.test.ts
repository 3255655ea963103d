// The API description (issue 7, item 5): an OpenAPI 3.1 document at /openapi.json generated from
// the valibot schemas, and a reference page at /docs. The document is checked against what the
// app really serves (Hono's own route list, so an undocumented new route fails here) and against
// what it really accepts and refuses (its JSON Schemas, run by Ajv's 2020-12 validator, next to
// real requests on a real Redis).

import { beforeAll, describe, expect, test } from "bun:test";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { Hono } from "hono";
import { allApps } from "../src/apps/registry.ts";
import { AppError, ERROR_CODES } from "../src/base/errors.ts";
import { docsPage } from "../src/http/docs-page.ts";
import { mountApiDescription, openApiDocument } from "../src/http/openapi.ts";
import type { Method, OpenApiDocument, OperationObject, SchemaObject } from "../src/http/openapi-model.ts";
import { httpAppFor } from "../src/runtimes/http-app.ts";
import { startHarness } from "./support/harness.ts";
import { alice, DEVICE_A, syncthingConfig, token } from "./support/service.ts";

// A storage root of its own: the terminal's open reads the owner's home drive there.
const { api } = await startHarness({ storage: {}, settings: { ucloud: { provider_id: "hpc-east" } }, resetEach: false });
const app = httpAppFor(api.context);
let document: OpenApiDocument;

beforeAll(async () => {
  const response = await api.request("/openapi.json");
  expect(response.status).toBe(200);
  document = (await response.json()) as OpenApiDocument;
});

function operations(doc: OpenApiDocument): { path: string; method: Method; operation: OperationObject }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    (Object.entries(item) as [Method, OperationObject][]).map(([method, operation]) => ({ path, method, operation })),
  );
}

/** The routes Hono serves (middleware, method ALL, left out) as method and path pattern. */
function servedRoutes(): { method: string; pattern: string }[] {
  return app.routes.filter((r) => r.method !== "ALL").map((r) => ({ method: r.method.toLowerCase(), pattern: r.path }));
}

const patternRegex = (pattern: string) => new RegExp(`^${pattern.replace(/:[A-Za-z]+/g, "[^/]+")}$`);

/** Where a `$ref` points, or undefined. */
function resolvePointer(doc: unknown, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  return ref
    .slice(2)
    .split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], doc);
}

function allRefs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) allRefs(n, out);
  else if (typeof node === "object" && node !== null) {
    for (const [key, value] of Object.entries(node)) {
      if (key === "$ref" && typeof value === "string") out.push(value);
      else allRefs(value, out);
    }
  }
  return out;
}

/** Ajv (JSON Schema 2020-12, strict) with the document's component schemas, for validating with. */
function validatorFor(doc: OpenApiDocument) {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  // `#/components/schemas/X` points into the OpenAPI document; for Ajv, into one root schema's $defs.
  const relocate = (schema: unknown) =>
    JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', '"urn:iapps:components#/$defs/')) as SchemaObject;
  ajv.addSchema({ $id: "urn:iapps:components", $defs: relocate(doc.components.schemas) });
  const cache = new Map<unknown, ValidateFunction>();
  return (schema: unknown, value: unknown): boolean => {
    let validate = cache.get(schema);
    if (!validate) {
      validate = ajv.compile(relocate(schema));
      cache.set(schema, validate);
    }
    return validate(value) as boolean;
  };
}

function operation(path: string, method: Method): OperationObject {
  const op = document.paths[path]?.[method];
  if (!op) throw new Error(`${method.toUpperCase()} ${path} is not in the document`);
  return op;
}

function requestSchema(path: string): SchemaObject {
  return operation(path, "post").requestBody!.content["application/json"]!.schema;
}

/** The schema the document gives for the answer `status` of an operation (a response $ref resolved). */
function responseSchema(op: OperationObject, status: number): SchemaObject | undefined {
  let response = op.responses[String(status)] as Record<string, unknown> | undefined;
  if (response && typeof response.$ref === "string") response = resolvePointer(document, response.$ref) as Record<string, unknown>;
  return (response?.content as Record<string, { schema: SchemaObject }> | undefined)?.["application/json"]?.schema;
}

describe("the document (GET /openapi.json)", () => {
  test("is OpenAPI 3.1, served without a token", async () => {
    expect(document.openapi).toMatch(/^3\.1\.\d+$/);
    expect(document.info.title).toBe("ucloud-iapps");
    const response = await api.request("/openapi.json");
    expect(response.headers.get("content-type")).toContain("application/json");
  });

  test("documents every route the app serves, with its method, for every enabled app and the configured provider id", () => {
    const configurable = allApps.filter((a) => !a.internal).map((a) => a.name);
    const documented = new Set(operations(document).map(({ path, method }) => `${method} ${path}`));
    const missing: string[] = [];
    for (const { method, pattern } of servedRoutes()) {
      const withProvider = pattern.replace(":providerId", "hpc-east");
      const paths = withProvider.includes(":app") ? configurable.map((name) => withProvider.replace(":app", name)) : [withProvider];
      for (const path of paths) if (!documented.has(`${method} ${path}`)) missing.push(`${method.toUpperCase()} ${path}`);
    }
    expect(missing).toEqual([]);
    // And the expected families are really there (a route list that came out empty proves nothing).
    expect(documented).toContain("post /ucloud/hpc-east/iapps/syncthing/update");
    expect(documented).toContain("get /api/iapps/syncthing/retrieve");
    expect(documented).toContain("post /ucloud/hpc-east/iapps/terminal/open");
    expect(documented).toContain("post /ucloud/hpc-east/iapps/terminal/activity");
  });

  test("documents only routes the app serves", () => {
    const served = servedRoutes();
    const invented = operations(document)
      .filter(({ path, method }) => !served.some((r) => r.method === method && patternRegex(r.pattern).test(path)))
      .map(({ path, method }) => `${method.toUpperCase()} ${path}`);
    expect(invented).toEqual([]);
    // The terminal is internal: no configuration routes for it.
    expect(Object.keys(document.paths).filter((p) => /terminal\/(retrieve|update|reset|restart)$/.test(p))).toEqual([]);
  });

  test("every $ref resolves", () => {
    const refs = allRefs(document);
    expect(refs.length).toBeGreaterThan(20);
    expect(refs.filter((ref) => resolvePointer(document, ref) === undefined)).toEqual([]);
  });

  test("every schema is valid JSON Schema 2020-12 (OpenAPI 3.1's dialect)", () => {
    const validate = validatorFor(document);
    for (const { operation: op } of operations(document)) {
      for (const media of Object.values(op.requestBody?.content ?? {})) validate(media.schema, {});
      for (const status of Object.keys(op.responses)) {
        const schema = responseSchema(op, Number(status));
        if (schema) validate(schema, {});
      }
    }
  });

  test("operations name their roles in the bearer JWT scheme; the description routes need none", () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer", bearerFormat: "JWT" });
    expect(operation("/ucloud/hpc-east/iapps/syncthing/retrieve", "post").security).toEqual([{ bearerAuth: ["SERVICE"] }]);
    expect(operation("/api/iapps/syncthing/update", "post").security).toEqual([{ bearerAuth: ["USER", "ADMIN"] }]);
    expect(operation("/ucloud/hpc-east/iapps/terminal/open", "post").security).toEqual([{ bearerAuth: ["SERVICE"] }]);
    expect(operation("/openapi.json", "get").security).toEqual([]);
  });

  test("the error responses of spec §2 carry the {statusCode, why, errorCode} schema with their codes", () => {
    const update = operation("/ucloud/hpc-east/iapps/syncthing/update", "post");
    expect(Object.keys(update.responses).sort()).toEqual(["200", "400", "401", "403", "404", "409", "412", "413", "428", "503"]);
    expect(document.components.schemas.Error).toMatchObject({
      type: "object",
      required: ["statusCode", "why", "errorCode"],
      properties: { errorCode: { enum: [...ERROR_CODES] } },
    });
    const validate = validatorFor(document);
    const codes: Record<number, string> = { 400: "INVALID_CONFIGURATION", 409: "ETAG_MISMATCH", 412: "PRECONDITION_FAILED", 428: "PRECONDITION_REQUIRED" };
    for (const [status, code] of Object.entries(codes)) {
      const body = new AppError(Number(status), code as never, "A reason a person can act on.").toBody();
      expect(validate(responseSchema(update, Number(status)), body)).toBe(true);
      // The status's schema pins its codes: another code under that status does not pass.
      expect(validate(responseSchema(update, Number(status)), { ...body, errorCode: "UNAVAILABLE" })).toBe(false);
    }
  });

  test("ETag headers: If-Match on writes, If-None-Match and 304 on retrieves, ETag on answers", () => {
    const names = (op: OperationObject) => (op.parameters ?? []).map((p) => ("$ref" in p ? (resolvePointer(document, p.$ref) as { name: string }).name : p.name));
    const retrieve = operation("/api/iapps/syncthing/retrieve", "get");
    expect(names(retrieve)).toContain("If-None-Match");
    expect(Object.keys(retrieve.responses)).toContain("304");
    expect(Object.keys((retrieve.responses["200"] as { headers: object }).headers)).toEqual(["ETag"]);
    for (const op of ["update", "reset", "restart"]) expect(names(operation(`/ucloud/hpc-east/iapps/syncthing/${op}`, "post"))).toContain("If-Match");
    expect(names(retrieve).filter((n) => n !== "If-None-Match").sort()).toEqual(["productId", "provider"]);
  });

  test("follows the enabled apps: a disabled app has no paths", () => {
    const withoutTerminal = openApiDocument({ providerId: "k8s", apps: allApps.filter((a) => a.name !== "terminal") });
    expect(Object.keys(withoutTerminal.paths).filter((p) => p.includes("terminal"))).toEqual([]);
    expect(withoutTerminal.components.schemas.TerminalOpened).toBeUndefined();
    const withoutSyncthing = openApiDocument({ providerId: "k8s", apps: allApps.filter((a) => a.name !== "syncthing") });
    expect(Object.keys(withoutSyncthing.paths).filter((p) => p.includes("syncthing"))).toEqual([]);
    expect(Object.keys(withoutSyncthing.paths)).toContain("/ucloud/k8s/iapps/terminal/open");
  });
});

test("documents the operational routes (/healthz, /readyz, /metrics) of an app that serves them", async () => {
  const withOps = new Hono();
  withOps.get("/healthz", (c) => c.json({ status: "ok" }));
  withOps.get("/metrics", (c) => c.text(""));
  mountApiDescription(withOps, { providerId: "k8s", apps: allApps });
  const doc = (await (await withOps.request("/openapi.json")).json()) as OpenApiDocument;
  expect(doc.paths["/healthz"]?.get?.security).toEqual([]);
  expect(doc.paths["/metrics"]?.get).toBeDefined();
  expect(doc.paths["/readyz"]).toBeUndefined();
  expect(await (await withOps.request("/docs")).text()).toContain("<code>/healthz</code>");
});

describe("the document agrees with what the API accepts and refuses", () => {
  const service = token("_UCloud", "SERVICE");
  const post = async (path: string, body: unknown, auth: Promise<string> | null = service) =>
    api.request(path, {
      method: "POST",
      headers: { "content-type": "application/json", ...(auth ? { authorization: `Bearer ${await auth}` } : {}) },
      body: JSON.stringify(body),
    });

  const providerUpdate = "/ucloud/hpc-east/iapps/syncthing/update";
  const valid: [string, unknown][] = [
    ["a full configuration", { principal: alice, config: syncthingConfig(1), expectedETag: null }],
    ["an owner in a project, no expectedETag", { principal: { createdBy: "bob", project: "p-1" }, config: { folders: [], devices: [] } }],
    ["folder ids left empty, unknown fields", { principal: { createdBy: "carol" }, productId: "x", extra: 1, config: { folders: [{ ucloudPath: "/home-carol/a" }], devices: [{ deviceId: DEVICE_A }] } }],
  ];
  const invalid: [string, unknown][] = [
    ["no principal", { config: syncthingConfig(1), expectedETag: null }],
    ["no config", { principal: alice, expectedETag: null }],
    ["a username with ':'", { principal: { createdBy: "a:b", project: null }, config: syncthingConfig(1) }],
    ["expectedETag a number", { principal: alice, config: syncthingConfig(1), expectedETag: 5 }],
    ["folders not an array", { principal: alice, config: { folders: {}, devices: [] } }],
    ["a relative ucloudPath", { principal: alice, config: { folders: [{ ucloudPath: "home-alice/x" }], devices: [] } }],
    ["a device without deviceId", { principal: alice, config: { folders: [], devices: [{ label: "laptop" }] } }],
    ["a label too long", { principal: alice, config: { folders: [], devices: [{ deviceId: DEVICE_A, label: "x".repeat(257) }] } }],
  ];

  for (const [what, body] of valid) {
    test(`accepted by both: ${what}`, async () => {
      expect(validatorFor(document)(requestSchema(providerUpdate), body)).toBe(true);
      const response = await post(providerUpdate, body);
      expect(response.status).toBe(200);
    });
  }

  for (const [what, body] of invalid) {
    test(`refused by both: ${what}`, async () => {
      const validate = validatorFor(document);
      expect(validate(requestSchema(providerUpdate), body)).toBe(false);
      const response = await post(providerUpdate, body);
      expect(response.status).toBe(400);
      // And the refusal has the documented shape for a 400 of this operation.
      expect(validate(responseSchema(operation(providerUpdate, "post"), 400), await response.json())).toBe(true);
    });
  }

  test("the public update's schema agrees with the API the same way", async () => {
    const path = "/api/iapps/syncthing/update";
    const validate = validatorFor(document);
    const user = token("dave", "USER");
    const good = { config: syncthingConfig(2), expectedETag: null };
    expect(validate(requestSchema(path), good)).toBe(true);
    expect((await post(path, good, user)).status).toBe(200);
    const bad = { config: { folders: [], devices: "none" } };
    expect(validate(requestSchema(path), bad)).toBe(false);
    expect((await post(path, bad, user)).status).toBe(400);
  });

  test("every documented operation that needs a token answers a documented 401 without one, and 403 for the wrong role", async () => {
    const validate = validatorFor(document);
    for (const { path, method, operation: op } of operations(document)) {
      if (op.security.length === 0) continue;
      const roles = op.security.flatMap((s) => Object.values(s).flat());
      const wrongRole = roles.includes("SERVICE") ? token("alice", "USER") : token("_UCloud", "SERVICE");
      for (const [auth, status] of [[null, 401], [wrongRole, 403]] as const) {
        const response = await api.request(path, {
          method: method.toUpperCase(),
          headers: { "content-type": "application/json", ...(auth ? { authorization: `Bearer ${await auth}` } : {}) },
          body: method === "post" ? "{}" : undefined,
        });
        expect({ path, status: response.status }).toEqual({ path, status });
        expect(validate(responseSchema(op, status), await response.json())).toBe(true);
      }
    }
  });

  test("a retrieve answers the documented view, ETag header and 304", async () => {
    const path = "/ucloud/hpc-east/iapps/syncthing/retrieve";
    const op = operation(path, "post");
    const response = await post(path, { principal: { createdBy: "erin" } });
    expect(response.status).toBe(200);
    const etag = response.headers.get("etag")!;
    expect(etag).toBe('"initial"');
    expect(validatorFor(document)(responseSchema(op, 200), await response.json())).toBe(true);
    const again = await api.request(path, {
      method: "POST",
      headers: { authorization: `Bearer ${await service}`, "if-none-match": etag },
      body: JSON.stringify({ principal: { createdBy: "erin" } }),
    });
    expect(again.status).toBe(304);
  });

  test("a terminal open answers the documented TerminalOpened", async () => {
    const path = "/ucloud/hpc-east/iapps/terminal/open";
    const response = await post(path, { principal: { createdBy: "frank" }, folder: "/home-frank" });
    expect(response.status).toBe(200);
    expect(validatorFor(document)(responseSchema(operation(path, "post"), 200), await response.json())).toBe(true);
  });
});

describe("the reference page (GET /docs)", () => {
  test("is HTML, needs no token, and shows every documented route with its method, roles and errors", async () => {
    const response = await api.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    const page = await response.text();
    for (const { path, method } of operations(document)) {
      expect(page).toContain(`<span class="method ${method}">${method.toUpperCase()}</span> <code>${path}</code>`);
    }
    for (const code of ERROR_CODES.filter((c) => c !== "INTERNAL_ERROR")) expect(page).toContain(code);
    expect(page).toContain("Token roles:</strong> SERVICE");
    expect(page).toContain("Token roles:</strong> USER, ADMIN");
    expect(page).toContain('id="schema-SyncthingConfig"');
  });

  test("loads nothing from elsewhere: no scripts, no external URLs, and a policy that forbids them", async () => {
    const response = await api.request("/docs");
    const page = await response.text();
    expect(page).not.toMatch(/<script|<link|<img|<iframe/i);
    expect(page).not.toMatch(/(src|href)="(https?:)?\/\//i);
    expect(response.headers.get("content-security-policy")).toContain("default-src 'none'");
  });

  test("escapes what the document says", () => {
    const hostile = structuredClone(document);
    hostile.info.description = 'Try <script>alert(1)</script> & "quotes"';
    hostile.paths["/x<img src=x>"] = { get: { ...operation("/docs", "get"), operationId: 'a"b', summary: "<b>bold</b>" } };
    const page = docsPage(hostile);
    expect(page).not.toContain("<script>");
    expect(page).not.toContain("<img");
    expect(page).not.toContain("<b>bold</b>");
    expect(page).toContain("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;");
    expect(page).toContain('id="op-a&quot;b"');
  });
});
