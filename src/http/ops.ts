// What operators and their tools see of the HTTP layer: every request gets a request id (the
// client's `X-Request-Id` when it is sane, else a fresh one; echoed in the answer and current
// while the request runs, so its log lines and the task it enqueues carry it) and is counted by
// route pattern, method and status with its latency; and three routes without auth:
//
//   GET /healthz  200 while the process serves
//   GET /readyz   200 when Redis answers and (with a cache) the invalidation subscription is
//                 live; else 503 in UCloud's error shape, `why` naming what is missing
//   GET /metrics  Prometheus text format 0.0.4
//
// Web standards only: what readiness and metrics mean for a process is handed in (see
// src/service/health.ts). Imports hono, src/base/errors.ts, src/metrics, src/base/request-id.ts and the
// types of src/service/health.ts.

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { unavailable } from "../base/errors.ts";
import { metrics } from "../metrics/metrics.ts";
import { EXPOSITION_CONTENT_TYPE } from "../metrics/registry.ts";
import { REQUEST_ID_HEADER, requestIdFrom, withRequestId } from "../base/request-id.ts";
import type { OpsOptions } from "../service/health.ts";

export type { OpsOptions };
import { errorResponse } from "./errors.ts";

/**
 * The middleware, then the routes: call before any other route or middleware is added. `app`
 * may have any Env: these routes use none of it.
 */
export function mountOps(app: Hono<any>, options: OpsOptions | undefined): void {
  app.use(observeRequests());
  if (options) app.route("/", opsRoutes(options));
}

export function opsRoutes(options: OpsOptions): Hono {
  // A Hono of its own, so that a process without the API (the worker's listener) can serve it.
  const ops = new Hono();
  ops.get("/healthz", (c) => c.json({ status: "ok" }));
  ops.get("/readyz", async (c) => {
    const { ready, checks } = await options.readiness();
    if (ready) return c.json({ status: "ready", checks: Object.fromEntries(Object.keys(checks).map((k) => [k, "ok"])) });
    const failing = Object.entries(checks).filter(([, why]) => why !== null);
    return errorResponse(c, unavailable(`not ready: ${failing.map(([name, why]) => `${name}: ${why}`).join("; ")}`));
  });
  ops.get("/metrics", async (c) => c.body(await options.metrics(), 200, { "Content-Type": EXPOSITION_CONTENT_TYPE }));
  return ops;
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
    if (!series) bound.set(key, (series = { count: metrics.httpRequests.bind(labels), duration: metrics.httpDuration.bind(labels) }));
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
