// What operators and their tools see of the HTTP layer: every request gets a request id (the
// client's `X-Request-Id` when it is sane, else a fresh one; echoed in the answer and current
// while the request runs, so its log lines and the task it enqueues carry it) and is counted by
// route pattern, method and status with its latency; and three routes without auth, each
// declared with its OpenAPI operation:
//
//   GET /healthz  200 while the process serves
//   GET /readyz   200 when Redis answers and (with a cache) the invalidation subscription is
//                 live; else 503 in UCloud's error shape, `why` naming what is missing
//   GET /metrics  Prometheus text format 0.0.4
//
// Web standards only: what readiness and metrics mean for a process is handed in (see
// src/service/health.ts). Imports hono, src/base/errors.ts, src/metrics, src/base/request-id.ts, the
// types of src/service/health.ts and of the OpenAPI model.

import type { Context, Env, Handler, Hono, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { unavailable } from "../base/errors.ts";
import { metrics } from "../metrics/metrics.ts";
import { EXPOSITION_CONTENT_TYPE } from "../metrics/registry.ts";
import { REQUEST_ID_HEADER, requestIdFrom, withRequestId } from "../base/request-id.ts";
import type { OpsOptions } from "../service/health.ts";
import { errorResponse } from "./errors.ts";
import type { OperationObject, SchemaObject } from "./openapi-model.ts";

export type { OpsOptions };

/**
 * The middleware, then the routes: call before any other route or middleware is added. `app`
 * may have any Env: these routes use none of it.
 */
export function mountOps<E extends Env>(app: Hono<E>, options: OpsOptions | undefined): void {
  app.use(observeRequests());
  if (!options) return;
  for (const [path, route] of Object.entries(OPERATIONAL_ROUTES)) app.get(path, route.serve(options));
}

/**
 * The operational routes, each with its OpenAPI operation: openapi.ts documents the ones an app
 * serves (tagged Operations, no token).
 */
export const OPERATIONAL_ROUTES: Record<string, { operation: Omit<OperationObject, "tags" | "security">; serve(options: OpsOptions): Handler }> = {
  "/healthz": {
    operation: {
      operationId: "healthz",
      summary: "Liveness: the process serves",
      responses: { "200": { description: "The process serves.", content: json({ type: "object", properties: { status: { const: "ok" } } }) } },
    },
    serve: () => (c) => c.json({ status: "ok" }),
  },
  "/readyz": {
    operation: {
      operationId: "readyz",
      summary: "Readiness: Redis answers and the cache's subscription is live",
      responses: {
        "200": { description: "Ready to serve.", content: json({ type: "object", properties: { status: { const: "ready" }, checks: { type: "object" } } }) },
        "503": {
          description: "Not ready; `why` names what is missing.",
          content: json({ allOf: [{ $ref: "#/components/schemas/Error" }, { type: "object", properties: { errorCode: { const: "UNAVAILABLE" } } }] }),
        },
      },
    },
    serve: (options) => async (c) => {
      const { ready, checks } = await options.readiness();
      if (ready) return c.json({ status: "ready", checks: Object.fromEntries(Object.keys(checks).map((k) => [k, "ok"])) });
      const failing = Object.entries(checks).filter(([, why]) => why !== null);
      return errorResponse(c, unavailable(`not ready: ${failing.map(([name, why]) => `${name}: ${why}`).join("; ")}`));
    },
  },
  "/metrics": {
    operation: {
      operationId: "metrics",
      summary: "Prometheus metrics (text format 0.0.4)",
      responses: { "200": { description: "The process's metrics.", content: { "text/plain": { schema: { type: "string" } } } } },
    },
    serve: (options) => async (c) => c.body(await options.metrics(), 200, { "Content-Type": EXPOSITION_CONTENT_TYPE }),
  },
};

function json(schema: SchemaObject) {
  return { "application/json": { schema } };
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** Request id and request metrics. Labels are route patterns, never raw paths: bounded series. */
export function observeRequests(): MiddlewareHandler {
  // The series of each (route, method, status), bound once: a few dozen at most.
  const bound = new Map<string, { count: { inc(): void }; duration: { observe(seconds: number): void } }>();
  return async (c, next) => {
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER));
    const started = performance.now();
    c.header(REQUEST_ID_HEADER, id);
    c.set("requestId", id);
    // Reads enqueue nothing, and their only log lines (errors) name the id themselves (app.ts):
    // they skip the AsyncLocalStorage, which costs about a third of a cached retrieve under Bun.
    if (isRead(c)) await next();
    else await withRequestId(id, next);
    // Answers built by hand (not through the context) would not carry the prepared header.
    if (c.res.headers.get(REQUEST_ID_HEADER) === null) c.header(REQUEST_ID_HEADER, id);
    const labels = { route: routeOf(c), method: METHODS.has(c.req.method) ? c.req.method : "OTHER", status: String(c.res.status) };
    const key = `${labels.route} ${labels.method} ${labels.status}`;
    let series = bound.get(key);
    if (!series) {
      series = { count: metrics.httpRequests.bind(labels), duration: metrics.httpDuration.bind(labels) };
      bound.set(key, series);
    }
    series.count.inc();
    series.duration.observe((performance.now() - started) / 1000);
  };
}

function isRead(c: Context): boolean {
  return c.req.method === "GET" || c.req.method === "HEAD" || c.req.path.endsWith("/retrieve");
}

/** The pattern of the handler that answered (`/api/iapps/:app/retrieve`), or `unmatched`. */
function routeOf(c: Context): string {
  // Middleware is registered for every method ("ALL"); handlers for theirs.
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) if (routes[i]!.method !== "ALL") return routes[i]!.path;
  return "unmatched";
}
