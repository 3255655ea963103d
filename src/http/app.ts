// The Hono application: routes of spec §2, auth, body limit, conditional requests, and the
// mapping of errors to UCloud's error shape, request ids and the operational routes (ops.ts),
// and the API description (openapi.ts). Web standards only: src/runtimes/api.ts builds it for every
// runtime, and src/runtimes/bun.ts, deno.ts and node.ts are the adapters at the edge.
// Imports hono, src/service (types), src/apps/registry.ts and src/domain (types), src/base/errors.ts
// and src/http/*, never store or Kubernetes code.

import { type Context, Hono } from "hono";
import type { AppRegistry } from "../apps/registry.ts";
import { bodyLimit } from "hono/body-limit";
import { notFound, payloadTooLarge } from "../base/errors.ts";
import type { ConfigurationService, View } from "../service/configurations.ts";
import type { Preconditions } from "../service/preconditions.ts";
import type { Owner } from "../domain/owner.ts";
import { type AuthOptions, type AuthVariables, authenticate, TokenVerifier } from "./auth.ts";
import { bodyReadError, CLIENT_CLOSED_REQUEST_STATUS, ClientClosedRequest, errorResponse, routeNotFound, toAppError } from "./errors.ts";
import { mountApiDescription } from "./openapi.ts";
import { mountOps, type OpsOptions } from "./ops.ts";
import { etagHeader, noneMatch, parseEtagList } from "./preconditions.ts";
import * as req from "./requests.ts";

export interface HttpOptions {
  service: ConfigurationService;
  auth: AuthOptions;
  providerId: string;
  /** The enabled apps, for the API description (the service answers for them). */
  apps: AppRegistry;
  bodyLimit: number;
  log?: (level: "debug" | "warn" | "error", message: string, fields: Record<string, unknown>) => void;
  /** /healthz, /readyz and /metrics (without them, only the request ids and metrics of requests). */
  ops?: OpsOptions;
}

/** `requestId`: set for every request by the ops middleware (ops.ts). */
type Env = { Variables: AuthVariables & { requestId?: string } };

export function createHttpApp(options: HttpOptions): Hono<Env> {
  const { service } = options;
  const tokens = new TokenVerifier(options.auth);
  const app = new Hono<Env>();
  mountOps(app, options.ops);

  let lastUnavailableLog = 0;
  app.onError((error, c) => {
    const requestId = c.get("requestId");
    // The client hung up mid-body: nobody will read an answer, and it is no failure of ours.
    if (error instanceof ClientClosedRequest) {
      options.log?.("debug", "client closed the connection before sending its whole body", { requestId, route: c.req.path });
      return new Response(null, { status: CLIENT_CLOSED_REQUEST_STATUS });
    }
    const appError = toAppError(error, (message, fields) => options.log?.("error", message, { requestId, ...fields }));
    // A 503 is the service's own trouble: say why in the log, at most once a second.
    if (appError.status === 503 && Date.now() - lastUnavailableLog > 1000) {
      lastUnavailableLog = Date.now();
      const cause = appError.cause instanceof Error ? appError.cause.message : undefined;
      options.log?.("warn", "answering 503", { requestId, route: c.req.path, why: appError.why, cause });
    }
    return errorResponse(c, appError);
  });
  app.notFound((c) => errorResponse(c, routeNotFound(c.req.method, c.req.path)));
  const limitBody = bodyLimit({
    maxSize: options.bodyLimit,
    onError: () => {
      throw payloadTooLarge(options.bodyLimit);
    },
  });
  // bodyLimit reads a body of unknown length (chunked) itself, before the handler runs: a client
  // hanging up then surfaces here. What the handler throws is no body read.
  app.use(async (c, next) => {
    let handling = false;
    try {
      await limitBody(c, () => {
        handling = true;
        return next();
      });
    } catch (error) {
      throw handling ? error : bodyReadError(error);
    }
  });

  // Provider API: UCloud/Core calls these with a service token, naming the owner.
  const provider = new Hono<Env>();
  provider.use(authenticate(tokens, ["SERVICE"]));
  provider.use("/:app/*", async (c, next) => {
    if (c.req.param("providerId") !== options.providerId) {
      throw notFound(`This service is provider '${options.providerId}', not '${c.req.param("providerId")}'.`);
    }
    await next();
  });
  // The terminal (spec §2, §8): no configuration routes (the `/:app/...` routes answer 404 for
  // it), but an open, which mounts a folder's drive, and a key press, which keeps it alive.
  provider.post("/terminal/open", async (c) => {
    const body = await req.readBody(c, req.TerminalOpen);
    const opened = await service.openTerminal(body.principal, body.folder);
    return c.json(opened, 200, { ETag: etagHeader(opened.etag) });
  });
  provider.post("/terminal/activity", async (c) => {
    const body = await req.readBody(c, req.TerminalActivity);
    await service.terminalActivity(body.principal);
    return c.json({}, 200);
  });
  provider.post("/:app/retrieve", async (c) => {
    const body = await req.readBody(c, req.ProviderRetrieve);
    return answerView(c, await service.retrieve(c.req.param("app"), body.principal));
  });
  provider.post("/:app/update", async (c) => {
    const body = await req.readBody(c, req.ProviderUpdate);
    const { etag } = await service.update(c.req.param("app"), body.principal, body.config, preconditions(c, body.expectedETag));
    return answerWritten(c, etag);
  });
  provider.post("/:app/reset", async (c) => {
    const body = await req.readBody(c, req.ProviderReset);
    const { etag } = await service.reset(c.req.param("app"), body.principal, preconditions(c, body.expectedETag));
    return answerWritten(c, etag);
  });
  provider.post("/:app/restart", async (c) => {
    const body = await req.readBody(c, req.ProviderRestart);
    const { etag } = await service.restart(c.req.param("app"), body.principal, preconditions(c, null));
    return answerWritten(c, etag);
  });
  app.route("/ucloud/:providerId/iapps", provider);

  // Public API: the UCloud web UI calls these with a user token; the owner is the caller.
  const publicApi = new Hono<Env>();
  publicApi.use(authenticate(tokens, ["USER", "ADMIN"]));
  const caller = (c: Context<Env>): Owner => ({ createdBy: c.get("principal").username, project: null });
  publicApi.get("/:app/retrieve", async (c) => {
    req.check(req.PublicRetrieve, c.req.query(), "query");
    return answerView(c, await service.retrieve(c.req.param("app"), caller(c)));
  });
  publicApi.post("/:app/update", async (c) => {
    const body = await req.readBody(c, req.PublicUpdate);
    const { etag } = await service.update(c.req.param("app"), caller(c), body.config, preconditions(c, body.expectedETag));
    return answerWritten(c, etag);
  });
  publicApi.post("/:app/reset", async (c) => {
    // As in UCloud, the public reset carries no ETag; an If-Match header still counts.
    await req.readBody(c, req.PublicReset, { emptyIsObject: true });
    const { etag } = await service.reset(c.req.param("app"), caller(c), preconditions(c, null));
    return answerWritten(c, etag);
  });
  publicApi.post("/:app/restart", async (c) => {
    await req.readBody(c, req.PublicRestart, { emptyIsObject: true });
    const { etag } = await service.restart(c.req.param("app"), caller(c), preconditions(c, null));
    return answerWritten(c, etag);
  });
  app.route("/api/iapps", publicApi);

  mountApiDescription(app, { providerId: options.providerId, apps: options.apps.values() });

  return app;
}

function preconditions(c: Context, expectedETag: string | null): Preconditions {
  return { expectedETag, ifMatch: parseEtagList(c.req.header("if-match")) };
}

function answerView(c: Context, view: View): Response {
  const etag = etagHeader(view.etag);
  if (noneMatch(c.req.header("if-none-match"), view.etag)) {
    return c.body(null, 304, { ETag: etag });
  }
  return c.json(view, 200, { ETag: etag });
}

function answerWritten(c: Context, etag: string | null): Response {
  return c.json({}, 200, etag === null ? {} : { ETag: etagHeader(etag) });
}
