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
// No middleware runs for every request: a Hono middleware chain costs more than the rest of a
// cached retrieve. Instead every route's handler is wrapped once, when it is registered, by a
// RequestObserver (with one handler per route Hono calls it directly), and a request no route
// serves is observed by the app's notFound; the observer refuses an app with a route it did not
// wrap. Web standards only: what readiness and metrics mean for a process is handed in (see
// src/service/health.ts). Imports hono, src/base/errors.ts, src/metrics, src/base/request-id.ts,
// the types of src/service/health.ts and of the OpenAPI model.

import type { Context, Env, Handler, Hono, NotFoundHandler } from "hono";
import { unavailable } from "../base/errors.ts";
import { metrics } from "../metrics/metrics.ts";
import { EXPOSITION_CONTENT_TYPE } from "../metrics/registry.ts";
import { REQUEST_ID_HEADER, requestIdFrom, withRequestId } from "../base/request-id.ts";
import type { OpsOptions } from "../service/health.ts";
import { errorResponse } from "./errors.ts";
import type { OperationObject, SchemaObject } from "./openapi-model.ts";

export type { OpsOptions };

/** The operational routes, through `observer`. Without options, none (only what observes requests). */
export function mountOps<E extends Env>(app: Hono<E>, options: OpsOptions | undefined, observer: RequestObserver): void {
  if (!options) return;
  for (const [path, route] of Object.entries(OPERATIONAL_ROUTES)) app.get(path, observer.route(path, route.serve(options)));
}

/**
 * The operational routes, each with its OpenAPI operation: openapi.ts documents the ones an app
 * serves (tagged Operations, no token).
 */
export const OPERATIONAL_ROUTES: Record<string, { operation: Omit<OperationObject, "tags" | "security">; serve(options: OpsOptions): Answer }> = {
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

/**
 * What a route's code answers, built through the context (so that it carries the request id);
 * what it throws becomes an answer through the observer's `answerError`.
 */
export type Answer = (c: Context) => Response | Promise<Response>;

/**
 * Request ids and request metrics around every handler of an app. Labels are route patterns,
 * never raw paths: bounded series.
 */
export class RequestObserver {
  private readonly observed = new WeakSet<object>();
  private readonly series = new Map<string, RequestSeries>();

  /** `answerError`: the answer to what a handler threw (the app's error mapping). */
  constructor(private readonly answerError: (error: unknown, c: Context) => Response) {}

  /** The handler of the route `pattern` (its metrics label), observed. */
  route(pattern: string, answer: Answer): Handler {
    const series = this.seriesOf(pattern);
    // Reads enqueue nothing, and their only log lines (errors) name the id themselves (app.ts):
    // they skip the AsyncLocalStorage, which costs about a third of a cached retrieve under Bun.
    const retrieve = pattern.endsWith("/retrieve");
    const handler: Handler = (c) => this.observe(c, series, answer, !retrieve && c.req.method !== "GET" && c.req.method !== "HEAD");
    this.observed.add(handler);
    return handler;
  }

  /** The app's notFound: `answer` for a request no route serves, observed as route `unmatched`. */
  unmatched(answer: Answer): NotFoundHandler {
    const series = this.seriesOf("unmatched");
    return (c) => this.observe(c, series, answer, false);
  }

  /** The request metrics of the route `pattern` (one set per pattern): for an answer given around Hono (src/http/warm-retrieve.ts). */
  seriesOf(pattern: string): RequestSeries {
    let series = this.series.get(pattern);
    if (series === undefined) {
      series = new RequestSeries(pattern);
      this.series.set(pattern, series);
    }
    return series;
  }

  /** Throws when a route of `app` was registered around this observer: it would answer without a request id and go uncounted. */
  checkEveryRoute<E extends Env>(app: Hono<E>): void {
    const unobserved = app.routes.filter((route) => !this.observed.has(route.handler));
    if (unobserved.length > 0) {
      throw new Error(`routes registered without the RequestObserver (src/http/ops.ts): ${unobserved.map((r) => `${r.method} ${r.path}`).join(", ")}`);
    }
  }

  /** A promise only when the answer is one: a synchronous answer (/healthz, a 404) is not made to wait a turn. */
  private observe(c: Context, series: RequestSeries, answer: Answer, write: boolean): Response | Promise<Response> {
    const started = performance.now();
    const id = requestIdFrom(c.req.raw.headers.get(REQUEST_ID_HEADER));
    c.set("requestId", id);
    // Answers are built through the context (c.json, c.body, c.html), which adds what is
    // prepared here: cheaper than setting it on the Response afterwards.
    c.header(REQUEST_ID_HEADER, id);
    const answered = (response: Response) => {
      series.count(c.req.method, response.status, (performance.now() - started) / 1000);
      return response;
    };
    const failed = (error: unknown) => answered(this.answerError(error, c));
    let pending: Response | Promise<Response>;
    try {
      pending = write ? withRequestId(id, () => answer(c)) : answer(c);
    } catch (error) {
      return failed(error);
    }
    return pending instanceof Promise ? pending.then(answered, failed) : answered(pending);
  }
}

/** The count and latency of one route, method and status. */
export interface BoundSeries {
  count: { inc(): void };
  duration: { observe(seconds: number): void };
}

/** The request metrics of one route label, bound once per method and status: a request costs two map lookups. */
export class RequestSeries {
  private readonly byMethod = new Map<string, { label: string; byStatus: Map<number, BoundSeries> }>();

  constructor(private readonly route: string) {}

  count(method: string, status: number, seconds: number): void {
    const series = this.bound(method, status);
    series.count.inc();
    series.duration.observe(seconds);
  }

  /** The series of one method and status, for a caller that counts it often (no lookup per request). */
  bound(method: string, status: number): BoundSeries {
    const { label, byStatus } = this.byMethod.get(method) ?? this.methodOf(method);
    let series = byStatus.get(status);
    if (series === undefined) {
      const labels = { route: this.route, method: label, status: String(status) };
      series = { count: metrics.httpRequests.bind(labels), duration: metrics.httpDuration.bind(labels) };
      byStatus.set(status, series);
    }
    return series;
  }

  /** A method seen for the first time: its own series, or OTHER's for a method outside METHODS (never a key of its own). */
  private methodOf(method: string) {
    const label = METHODS.has(method) ? method : "OTHER";
    let table = this.byMethod.get(label);
    if (table === undefined) {
      table = { label, byStatus: new Map() };
      this.byMethod.set(label, table);
    }
    return table;
  }
}
