// The routes of spec §2, each declared once (route.ts): app.ts serves them and openapi.ts
// describes them. Two families serve the same configuration operations: the provider API, which
// UCloud/Core calls with a service token naming the owner, and the public API, which the UCloud
// web UI calls with a user token (the owner is the caller). The terminal (spec §8) has no
// configuration routes (the `:app` routes answer 404 for it) but an open, which mounts a folder's
// drive, and a key press, which keeps it alive. Also the schemas of the answers.
// Imports hono and valibot, the service's types, the owner type, src/base/json-text.ts and the
// HTTP helpers.

import type { Context } from "hono";
import * as v from "valibot";
import { invalidRequest } from "../base/errors.ts";
import { jsonText } from "../base/json-text.ts";
import { type Owner, UsernameSchema } from "../domain/owner.ts";
import type { ConfigurationService, HistoryPage, View } from "../service/configurations.ts";
import type { Preconditions } from "../service/preconditions.ts";
import type { TerminalOpened } from "../service/terminal.ts";
import { etagHeader, noneMatch, parseEtagList } from "./preconditions.ts";
import * as req from "./requests.ts";
import { type Env, type Family, type Route, route } from "./route.ts";

/** Called by UCloud/Core; `principal` names the owner. */
export const PROVIDER: Family = { prefix: "/ucloud/:providerId/iapps", roles: ["SERVICE"] };
/** Called by the UCloud web UI; the owner is the caller's personal workspace. */
export const PUBLIC: Family = { prefix: "/api/iapps", roles: ["USER", "ADMIN"] };
/** UCloud/Core's calls about jobs (the terminal's shell sessions); the user is named by the `UCloud-Username` header. */
export const PROVIDER_JOBS: Family = { prefix: "/ucloud/:providerId/jobs", roles: ["SERVICE"] };
/** The UCloud web UI's calls about jobs, for the caller. */
export const PUBLIC_JOBS: Family = { prefix: "/api/jobs", roles: ["USER", "ADMIN"] };
export const FAMILIES: readonly Family[] = [PROVIDER, PUBLIC, PROVIDER_JOBS, PUBLIC_JOBS];

export const EmptySchema = v.pipe(v.object({}), v.description("An empty object."));

export const TerminalOpenedSchema = v.object({
  jobId: v.pipe(v.string(), v.description("The terminal's UCloud job.")),
  etag: v.pipe(v.string(), v.description("The ETag of the terminal's record, also in the ETag header.")),
  warnings: v.pipe(v.array(v.string()), v.description("Why folders were not added or were taken out, in words a user can act on.")),
});

const ShellSessionSchema = v.object({
  type: v.pipe(v.literal("shell"), v.description("Always `shell`.")),
  jobId: v.pipe(v.string(), v.description("The folder the session was opened in, as UCloud answers it.")),
  rank: v.pipe(v.number(), v.description("Always 0.")),
  sessionIdentifier: v.pipe(v.string(), v.description("32 random characters: what the WebSocket's `initialize` names. Secret: it is the session.")),
  domainOverride: v.pipe(v.string(), v.description("The WebSocket base URL to attach at (`ws(s)://<host>`), then `/ucloud/<providerId>/websocket`.")),
});
export const ProviderShellSessionsSchema = v.object({ responses: v.array(ShellSessionSchema) });
export const PublicShellSessionsSchema = v.object({
  responses: v.array(
    v.object({
      providerDomain: v.pipe(v.string(), v.description("The provider's public HTTP base URL.")),
      providerId: v.string(),
      session: ShellSessionSchema,
    }),
  ),
});

const VersionSchema = v.object({
  etag: v.pipe(v.string(), v.description("The version's ETag: what a rollback names.")),
  config: v.pipe(v.unknown(), v.description("The configuration of this version.")),
  kind: v.pipe(
    v.picklist(["update", "reset", "rollback", "open"]),
    v.description("What made it: an update, a reset, a rollback, or a terminal open that changed the folder list."),
  ),
  changedBy: v.pipe(v.string(), v.description("The user (public API) or the principal's createdBy (provider API).")),
  via: v.pipe(v.picklist(["public", "provider"]), v.description("The API it came through.")),
  changedAt: v.pipe(v.string(), v.description("When, ISO 8601.")),
  requestId: v.pipe(v.string(), v.description("The request that made it (its `X-Request-Id`).")),
});
export const HistorySchema = v.object({
  items: v.pipe(v.array(VersionSchema), v.description("Kept versions, newest first; the first is the current configuration unless the worker pruned it since.")),
  next: v.pipe(v.nullable(v.string()), v.description("Pass as `next` for the following page; null after the last.")),
});

/** What a retrieve answers for an app with this configuration schema. */
export const viewSchema = (config: v.GenericSchema) =>
  v.object({
    etag: v.string(),
    config,
    warnings: v.optional(
      v.pipe(v.array(v.string()), v.description("What the service itself removed from the configuration, and why (a folder marked restricted since it was configured). Absent when nothing was.")),
    ),
  });

// The answers are typed by the service, not by these schemas: fail to compile when they part.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const answersMatchTheService: [
  Same<v.InferOutput<typeof TerminalOpenedSchema>, TerminalOpened>,
  Same<keyof View, "etag" | "config" | "warnings">,
  Same<keyof v.InferOutput<typeof HistorySchema>["items"][number], keyof HistoryPage["items"][number]>,
] = [true, true, true];
void answersMatchTheService;

const written = "Stored. The `ETag` header carries the record's new ETag.";
const caller = (c: Context<Env>): Owner => ({ createdBy: c.get("principal").username, project: null });

/** The user Core names in `UCloud-Username` (base64 of the username). */
function ucloudUser(c: Context): Owner {
  const header = c.req.header("ucloud-username");
  if (header === undefined || header === "") throw invalidRequest("UCloud-Username: required (the end user's username, base64-encoded).");
  let username: string;
  try {
    username = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(atob(header), (ch) => ch.charCodeAt(0)));
  } catch {
    throw invalidRequest("UCloud-Username: not base64 of a UTF-8 username.");
  }
  const checked = v.safeParse(UsernameSchema, username);
  if (!checked.success) throw invalidRequest(`UCloud-Username: ${checked.issues[0].message}.`);
  return { createdBy: checked.output, project: null };
}

/** Where the UI reaches this service: `[server] public_url`, else the URL the request came in on. */
function publicBase(c: Context, service: ConfigurationService): { http: string; ws: string } {
  const configured = service.publicUrl();
  const url = new URL(configured !== "" ? configured : c.req.url);
  if (configured === "") {
    const proto = c.req.header("x-forwarded-proto");
    if (proto === "https" || proto === "http") url.protocol = `${proto}:`;
  }
  const http = url.origin;
  return { http, ws: http.replace(/^http/, "ws") };
}

async function shellSessions(c: Context, service: ConfigurationService, owner: Owner, folders: string[]) {
  const { ws } = publicBase(c, service);
  const sessions = [];
  for (const folder of folders) {
    const session = await service.openShellSession(owner, folder);
    sessions.push({ type: "shell" as const, jobId: folder, rank: 0, sessionIdentifier: session.id, domainOverride: ws });
  }
  return sessions;
}

/** In the order the description lists them. */
export const API_ROUTES: readonly Route[] = [
  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/:app/retrieve",
    family: PROVIDER,
    operationId: "{app}ProviderRetrieve",
    tag: "Provider API",
    summary: "The {app} configuration of an owner",
    description: 'With no record: ETag "initial" and the default configuration; nothing is stored.',
    body: req.ProviderRetrieve,
    precondition: "If-None-Match",
    answer: { description: "The configuration and its ETag.", schema: "view", etag: "always" },
    errors: ["400", "401", "403", "404", "413", "503"],
    handle: async (c, { body }, service) => answerView(c, await service.retrieve(c.req.param("app"), body.principal)),
  }),
  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/:app/update",
    family: PROVIDER,
    operationId: "{app}ProviderUpdate",
    tag: "Provider API",
    summary: "Replace the {app} configuration of an owner",
    description:
      "Validated before anything is stored. `expectedETag` null writes unconditionally (unless `[api] require_etag`); the first update registers the record's job.",
    body: req.ProviderUpdate,
    precondition: "If-Match",
    answer: { description: written, schema: EmptySchema, etag: "always" },
    errors: ["400", "401", "403", "404", "409", "412", "413", "428", "503"],
    handle: async (c, { body }, service) => {
      const { etag } = await service.update(c.req.param("app"), body.principal, body.config, preconditions(c, body.expectedETag));
      return answerWritten(c, etag);
    },
  }),
  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/:app/reset",
    family: PROVIDER,
    operationId: "{app}ProviderReset",
    tag: "Provider API",
    summary: "Reset the {app} configuration of an owner to its default",
    description: "With no record, succeeds and stores nothing (then no `ETag` header).",
    body: req.ProviderReset,
    precondition: "If-Match",
    answer: { description: written, schema: EmptySchema, etag: "when-stored" },
    errors: ["400", "401", "403", "404", "409", "412", "413", "503"],
    handle: async (c, { body }, service) => {
      const { etag } = await service.reset(c.req.param("app"), body.principal, preconditions(c, body.expectedETag));
      return answerWritten(c, etag);
    },
  }),
  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/:app/restart",
    family: PROVIDER,
    operationId: "{app}ProviderRestart",
    tag: "Provider API",
    summary: "Restart the {app} pod of an owner",
    description: "Deletes the pod; the worker recreates it for the same job. A plain restart keeps the ETag. 404 without a record.",
    body: req.ProviderRestart,
    precondition: "If-Match",
    answer: { description: "Restart requested.", schema: EmptySchema, etag: "always" },
    errors: ["400", "401", "403", "404", "412", "413", "503"],
    handle: async (c, { body }, service) => {
      const { etag } = await service.restart(c.req.param("app"), body.principal, preconditions(c, null));
      return answerWritten(c, etag);
    },
  }),

  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/:app/history",
    family: PROVIDER,
    operationId: "{app}ProviderHistory",
    tag: "Provider API",
    summary: "The kept versions of an owner's {app} configuration",
    description:
      "Newest first, `itemsPerPage` (1 to 100, default 20) at a time; pass the answer's `next` for the following page. `[api] history_length` versions are kept (default 20). With no record: no versions.",
    body: req.ProviderHistory,
    answer: { description: "One page of versions.", schema: HistorySchema, etag: "none" },
    errors: ["400", "401", "403", "404", "413", "503"],
    handle: async (c, { body }, service) => c.json(await service.history(c.req.param("app"), body.principal, body.itemsPerPage, body.next), 200),
  }),
  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/:app/rollback",
    family: PROVIDER,
    operationId: "{app}ProviderRollback",
    tag: "Provider API",
    summary: "Make a kept version of an owner's {app} configuration current again",
    description:
      "Stores the configuration of the version whose ETag is `etag` as a new version (kind `rollback`, a new ETag), validated again as an update is. 409 when `expectedETag` is not the current ETag, 404 when no kept version has `etag`.",
    body: req.ProviderRollback,
    precondition: "If-Match",
    answer: { description: written, schema: EmptySchema, etag: "always" },
    errors: ["400", "401", "403", "404", "409", "412", "413", "428", "503"],
    handle: async (c, { body }, service) => {
      const { etag } = await service.rollback(c.req.param("app"), body.principal, body.etag, preconditions(c, body.expectedETag));
      return answerWritten(c, etag);
    },
  }),

  route({
    method: "get",
    path: "/api/iapps/:app/retrieve",
    family: PUBLIC,
    operationId: "{app}PublicRetrieve",
    tag: "Public API",
    summary: "The caller's {app} configuration",
    description: 'The owner is the token\'s `sub` in its personal workspace. With no record: ETag "initial" and the default configuration.',
    query: req.PublicRetrieve,
    precondition: "If-None-Match",
    answer: { description: "The configuration and its ETag.", schema: "view", etag: "always" },
    errors: ["400", "401", "403", "404", "503"],
    handle: async (c, _input, service) => answerView(c, await service.retrieve(c.req.param("app"), caller(c))),
  }),
  route({
    method: "post",
    path: "/api/iapps/:app/update",
    family: PUBLIC,
    operationId: "{app}PublicUpdate",
    tag: "Public API",
    summary: "Replace the caller's {app} configuration",
    description: "Validated before anything is stored. `provider` and `productId` are accepted and ignored.",
    body: req.PublicUpdate,
    precondition: "If-Match",
    answer: { description: written, schema: EmptySchema, etag: "always" },
    errors: ["400", "401", "403", "404", "409", "412", "413", "428", "503"],
    handle: async (c, { body }, service) => {
      const { etag } = await service.update(c.req.param("app"), caller(c), body.config, preconditions(c, body.expectedETag), "public");
      return answerWritten(c, etag);
    },
  }),
  route({
    method: "post",
    path: "/api/iapps/:app/reset",
    family: PUBLIC,
    operationId: "{app}PublicReset",
    tag: "Public API",
    summary: "Reset the caller's {app} configuration to its default",
    description: "No `expectedETag`, as in UCloud; an `If-Match` header still counts. An empty body is an empty object.",
    body: req.PublicReset,
    emptyBodyIsObject: true,
    precondition: "If-Match",
    answer: { description: written, schema: EmptySchema, etag: "when-stored" },
    errors: ["400", "401", "403", "404", "412", "413", "503"],
    handle: async (c, _input, service) => {
      const { etag } = await service.reset(c.req.param("app"), caller(c), preconditions(c, null), "public");
      return answerWritten(c, etag);
    },
  }),
  route({
    method: "post",
    path: "/api/iapps/:app/restart",
    family: PUBLIC,
    operationId: "{app}PublicRestart",
    tag: "Public API",
    summary: "Restart the caller's {app} pod",
    description: "404 without a record. An empty body is an empty object.",
    body: req.PublicRestart,
    emptyBodyIsObject: true,
    precondition: "If-Match",
    answer: { description: "Restart requested.", schema: EmptySchema, etag: "always" },
    errors: ["400", "401", "403", "404", "412", "413", "503"],
    handle: async (c, _input, service) => {
      const { etag } = await service.restart(c.req.param("app"), caller(c), preconditions(c, null), "public");
      return answerWritten(c, etag);
    },
  }),

  route({
    method: "get",
    path: "/api/iapps/:app/history",
    family: PUBLIC,
    operationId: "{app}PublicHistory",
    tag: "Public API",
    summary: "The kept versions of the caller's {app} configuration",
    description:
      "Newest first, `itemsPerPage` (1 to 100, default 20) at a time; pass the answer's `next` as `next` for the following page. `[api] history_length` versions are kept (default 20).",
    query: req.PublicHistory,
    answer: { description: "One page of versions.", schema: HistorySchema, etag: "none" },
    errors: ["400", "401", "403", "404", "503"],
    handle: async (c, { query }, service) =>
      c.json(await service.history(c.req.param("app"), caller(c), Number(query.itemsPerPage ?? req.DEFAULT_ITEMS_PER_PAGE), query.next ?? null), 200),
  }),
  route({
    method: "post",
    path: "/api/iapps/:app/rollback",
    family: PUBLIC,
    operationId: "{app}PublicRollback",
    tag: "Public API",
    summary: "Make a kept version of the caller's {app} configuration current again",
    description:
      "Stores the configuration of the version whose ETag is `etag` as a new version (kind `rollback`, a new ETag), validated again as an update is. 409 when `expectedETag` is not the current ETag, 404 when no kept version has `etag`.",
    body: req.PublicRollback,
    precondition: "If-Match",
    answer: { description: written, schema: EmptySchema, etag: "always" },
    errors: ["400", "401", "403", "404", "409", "412", "413", "428", "503"],
    handle: async (c, { body }, service) => {
      const { etag } = await service.rollback(c.req.param("app"), caller(c), body.etag, preconditions(c, body.expectedETag), "public");
      return answerWritten(c, etag);
    },
  }),

  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/terminal/open",
    family: PROVIDER,
    app: "terminal",
    operationId: "terminalOpen",
    tag: "Terminal",
    summary: "Open the integrated terminal in a folder",
    description:
      "Adds the folder's drive (`/<driveId>`) to the terminal's folders (deduplicated, order kept) and refreshes the inactivity lease. A drive the owner cannot use is left out and `warnings` says why.",
    body: req.TerminalOpen,
    answer: { description: "The terminal's job and ETag.", schema: TerminalOpenedSchema, etag: "always" },
    errors: ["400", "401", "403", "404", "413", "503"],
    handle: async (c, { body }, service) => {
      const opened = await service.openTerminal(body.principal, body.folder);
      return c.json(opened, 200, { ETag: etagHeader(opened.etag) });
    },
  }),
  route({
    method: "post",
    path: "/ucloud/:providerId/iapps/terminal/activity",
    family: PROVIDER,
    app: "terminal",
    operationId: "terminalActivity",
    tag: "Terminal",
    summary: "A key press in the integrated terminal",
    description: "Refreshes the inactivity lease; after it ran out, brings the terminal back. 404 without a terminal.",
    body: req.TerminalActivity,
    answer: { description: "The lease was refreshed.", schema: EmptySchema, etag: "none" },
    errors: ["400", "401", "403", "404", "413", "503"],
    handle: async (c, { body }, service) => {
      await service.terminalActivity(body.principal);
      return c.json({}, 200);
    },
  }),

  route({
    method: "post",
    path: "/ucloud/:providerId/jobs/openTerminalInFolder",
    family: PROVIDER_JOBS,
    app: "terminal",
    operationId: "terminalProviderOpenInFolder",
    tag: "Terminal",
    summary: "Open a shell session in a folder (UCloud/Core, for a user)",
    description:
      "The user is the base64 `UCloud-Username` header. Each folder must exist (404 `Folder cannot be found`) and the user may use its drive (403). Creates a shell session in Redis bound to that user and folder, and nothing else: the terminal opens when the session is attached at `/ucloud/<providerId>/websocket`.",
    body: req.OpenTerminalInFolder,
    answer: { description: "One shell session per item.", schema: ProviderShellSessionsSchema, etag: "none" },
    errors: ["400", "401", "403", "404", "413", "503"],
    handle: async (c, { body }, service) => {
      const owner = ucloudUser(c);
      return c.json({ responses: await shellSessions(c, service, owner, body.items.map((item) => item.folder)) }, 200);
    },
  }),
  route({
    method: "post",
    path: "/api/jobs/openTerminalInFolder",
    family: PUBLIC_JOBS,
    app: "terminal",
    operationId: "terminalPublicOpenInFolder",
    tag: "Terminal",
    summary: "Open a shell session in a folder",
    description: "As UCloud/Core's public call: a shell session for the token's user in each folder, with the provider to attach at.",
    body: req.OpenTerminalInFolder,
    answer: { description: "One shell session per item, with its provider.", schema: PublicShellSessionsSchema, etag: "none" },
    errors: ["400", "401", "403", "404", "413", "503"],
    handle: async (c, { body }, service) => {
      const { http } = publicBase(c, service);
      const sessions = await shellSessions(c, service, caller(c), body.items.map((item) => item.folder));
      return c.json({ responses: sessions.map((session) => ({ providerDomain: http, providerId: service.providerId, session })) }, 200);
    },
  }),
];

function preconditions(c: Context, expectedETag: string | null): Preconditions {
  return { expectedETag, ifMatch: parseEtagList(c.req.header("if-match")) };
}

function answerView(c: Context, view: View): Response {
  const etag = etagHeader(view.etag);
  if (noneMatch(c.req.header("if-none-match"), view.etag)) {
    return c.body(null, 304, { ETag: etag });
  }
  return c.body(viewJson(view), 200, { "Content-Type": "application/json", ETag: etag });
}

/**
 * What `c.json(view)` would send, with the configuration's text as a replica's cache keeps it
 * (src/base/json-text.ts): a warm retrieve serialises only its ETag. `View` has exactly these
 * three fields (checked above, where the answers meet the service's types).
 */
export function viewJson(view: View): string {
  const config = jsonText(view.config);
  if (config === undefined) return JSON.stringify(view);
  const warnings = view.warnings === undefined ? "" : `,"warnings":${JSON.stringify(view.warnings)}`;
  return `{"etag":${JSON.stringify(view.etag)},"config":${config}${warnings}}`;
}

function answerWritten(c: Context, etag: string | null): Response {
  return c.json({}, 200, etag === null ? {} : { ETag: etagHeader(etag) });
}
