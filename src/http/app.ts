// The Hono application, one router: the request ids and metrics and the operational routes
// (ops.ts), the mapping of errors to UCloud's error shape, the body limit, the auth of each route
// family, the provider id, the routes of spec §2 as declared in routes.ts (each declaration also
// describes its route), and the API description (openapi.ts). Web standards only:
// src/runtimes/http-app.ts builds it for a service context, src/runtimes/api.ts for every runtime,
// and src/runtimes/bun.ts, deno.ts and node.ts are the adapters at the edge.
// Imports src/service and src/apps (types) and src/base/errors.ts, never store or Kubernetes code.

import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppRegistry } from "../apps/registry.ts";
import { notFound, payloadTooLarge } from "../base/errors.ts";
import type { ConfigurationService } from "../service/configurations.ts";
import { type AuthOptions, authenticate, TokenVerifier } from "./auth.ts";
import { bodyReadError, CLIENT_CLOSED_REQUEST_STATUS, ClientClosedRequest, errorResponse, routeNotFound, toAppError } from "./errors.ts";
import { mountApiDescription } from "./openapi.ts";
import { mountOps, type OpsOptions } from "./ops.ts";
import { type Env, handlerOf } from "./route.ts";
import { API_ROUTES, FAMILIES, PROVIDER, PROVIDER_JOBS } from "./routes.ts";

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

    // One router, every route with its full path. Each family's roles are checked on its whole
  // prefix, before any route of it; then, for the provider API, its provider id.
  for (const family of FAMILIES) app.use(`${family.prefix}/*`, authenticate(tokens, family.roles));
  for (const prefix of [`${PROVIDER.prefix}/:app/*`, `${PROVIDER_JOBS.prefix}/*`]) {
    app.use(prefix, async (c, next) => {
      if (c.req.param("providerId") !== options.providerId) {
        throw notFound(`This service is provider '${options.providerId}', not '${c.req.param("providerId")}'.`);
      }
      await next();
    });
  }
  for (const route of API_ROUTES) {
    if (!route.path.startsWith(`${route.family.prefix}/`)) throw new Error(`${route.path} is not under its family's prefix ${route.family.prefix}`);
    app.on(route.method.toUpperCase(), route.path, handlerOf(route, service));
  }

  mountApiDescription(app, { providerId: options.providerId, apps: options.apps.values(), routes: API_ROUTES });

  return app;
}
