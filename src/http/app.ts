// The Hono application, one router (router.ts: it remembers its answers): the operational routes
// (ops.ts), the routes of spec §2 as declared in routes.ts (each declaration also describes its
// route) and the API description (openapi.ts), every one wrapped by the request observer (request
// ids and metrics, ops.ts); the mapping of errors to UCloud's error shape; and in front of each
// route's own code, the body limit (only on routes that read a body), the auth of its family and,
// for the provider API, its provider id. The public API's retrieve with a token verified before is
// answered around the Hono app (public-retrieve.ts). Web standards only: src/runtimes/http-app.ts builds it for
// a service context, src/runtimes/api.ts for every runtime, and src/runtimes/bun.ts, deno.ts and
// node.ts are the adapters at the edge.
// Imports src/service and src/apps (types) and src/base/errors.ts, never store or Kubernetes code.

import type { Context } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { TrieRouter } from "hono/router/trie-router";
import { tryDecodeURIComponent } from "hono/utils/url";
import type { AppRegistry } from "../apps/registry.ts";
import { type AppError, notFound, payloadTooLarge } from "../base/errors.ts";
import type { ConfigurationService } from "../service/configurations.ts";
import { type AuthOptions, authenticate, TokenVerifier } from "./auth.ts";
import { bodyReadError, ClientClosedRequest, clientClosedResponse, errorAnswer, errorResponse, routeNotFound, toAppError } from "./errors.ts";
import { mountApiDescription } from "./openapi.ts";
import { mountOps, type OpsOptions, RequestObserver } from "./ops.ts";
import { type Env, type Family, handlerOf } from "./route.ts";
import { RememberingRouter } from "./router.ts";
import { API_ROUTES, FAMILIES, PROVIDER, PROVIDER_JOBS, PUBLIC } from "./routes.ts";
import { publicRetrieve } from "./public-retrieve.ts";

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
  const app = new Hono<Env>({ router: new RememberingRouter() });

  let lastUnavailableLog = 0;
  /** What a route's code threw, as the error the client is answered (logged when it is ours). */
  const failureOf = (error: unknown, requestId: string | undefined, path: string): AppError => {
    const appError = toAppError(error, (message, fields) => options.log?.("error", message, { requestId, ...fields }));
    // A 503 is the service's own trouble: say why in the log, at most once a second.
    if (appError.status === 503 && Date.now() - lastUnavailableLog > 1000) {
      lastUnavailableLog = Date.now();
      const cause = appError.cause instanceof Error ? appError.cause.message : undefined;
      options.log?.("warn", "answering 503", { requestId, route: path, why: appError.why, cause });
    }
    return appError;
  };
  const answerError = (error: unknown, c: Context<Env>): Response => {
    const requestId = c.get("requestId");
    // The client hung up mid-body: nobody will read an answer, and it is no failure of ours.
    if (error instanceof ClientClosedRequest) {
      options.log?.("debug", "client closed the connection before sending its whole body", { requestId, route: c.req.path });
      return clientClosedResponse(c);
    }
    return errorResponse(c, failureOf(error, requestId, c.req.path));
  };
  const observer = new RequestObserver(answerError);
  app.onError(answerError);
  mountOps(app, options.ops, observer);

  const tokens = new TokenVerifier(options.auth);
  const gates = familyGates(tokens, options.providerId);
  // A path under a family's prefix that no route serves answers as a route there would first:
  // 401 without a token, 403 for the wrong role, 404 for another provider id; then 404.
  app.notFound(
    observer.unmatched((c) => {
      const passing = gates.unmatched(c);
      return passing === undefined ? routeNotFound(c) : passing.then(() => routeNotFound(c));
    }),
  );

  const limitBody = bodyLimit({
    maxSize: options.bodyLimit,
    onError: () => {
      throw payloadTooLarge(options.bodyLimit);
    },
  });
  // A route that reads a body has it limited first (before its auth, as a request's size is
  // known first); bodyLimit reads a body of unknown length (chunked) itself, before the route's
  // code runs: a client hanging up then surfaces here. What the route's code throws is no body read.
  // A body of a stated length (Content-Length, no Transfer-Encoding: what clients send) is judged
  // by the header alone, as bodyLimit would, without making the body a stream first (on Bun, the
  // largest part of bodyLimit's cost).
  const limited = (answer: (c: Context<Env>) => Promise<Response>) => async (c: Context<Env>) => {
    const headers = c.req.raw.headers;
    const length = headers.get("content-length");
    if (length !== null && !headers.has("transfer-encoding")) {
      if (parseInt(length, 10) > options.bodyLimit) throw payloadTooLarge(options.bodyLimit);
      return answer(c);
    }
    let handling = false;
    let response: Response | undefined;
    try {
      await limitBody(c, async () => {
        handling = true;
        response = await answer(c);
      });
    } catch (error) {
      throw handling ? error : bodyReadError(error);
    }
    return response!;
  };

  // One router, every route with its full path, registered with the method it declares.
  for (const route of API_ROUTES) {
    if (!route.path.startsWith(`${route.family.prefix}/`)) throw new Error(`${route.path} is not under its family's prefix ${route.family.prefix}`);
    const gate = gates.of(route.family);
    const handle = handlerOf(route, service);
    const guarded = (c: Context<Env>) => {
      const passing = gate(c);
      return passing === undefined ? handle(c) : passing.then(() => handle(c));
    };
    app.on(route.method.toUpperCase(), route.path, observer.route(route.path, route.body === undefined ? guarded : limited(guarded)));
  }

  mountApiDescription(app, { providerId: options.providerId, apps: options.apps.values(), routes: API_ROUTES }, observer);
  observer.checkEveryRoute(app);

  // The UI's retrieve with a token verified before is answered before Hono sees the request:
  // Hono's share of it was as large as the bare route's whole (public-retrieve.ts).
  const pattern = `${PUBLIC.prefix}/:app/retrieve`;
  if (!API_ROUTES.some((route) => route.method === "get" && route.path === pattern)) throw new Error(`no route GET ${pattern} to answer before Hono`);
  const retrieve = publicRetrieve({
    pattern,
    family: PUBLIC,
    tokens,
    service,
    series: observer.seriesOf(pattern),
    answerError: (error, requestId, path) => errorAnswer(failureOf(error, requestId, path), requestId),
  });
  const dispatch = app.fetch;
  app.fetch = (request, env, executionContext) => retrieve(request) ?? dispatch(request, env, executionContext);
  return app;
}

/**
 * The gates of the route families: a family's roles, and for the provider API its provider id.
 * A route's handler passes its family's gate first. A request no route serves passes the gates of
 * what it is under, as Hono matches `<prefix>/*` and, for the provider id, `<provider prefix>/:app/*`
 * (a path that names an app, as every provider route does): a router of their own, asked only
 * for such requests, so that the routes' one router stays free of middleware.
 */
function familyGates(tokens: TokenVerifier, providerId: string) {
  const auth = new Map(FAMILIES.map((family) => [family, authenticate(tokens, family.roles)]));
  const checkProvider = (id: string | undefined) => {
    if (id !== undefined && id !== providerId) throw notFound(`This service is provider '${providerId}', not '${id}'.`);
  };
  const unmatched = new RememberingRouter<(c: Context<Env>, params: Record<string, string>) => Promise<void> | void>(new TrieRouter());
  for (const family of FAMILIES) unmatched.add("ALL", `${family.prefix}/*`, auth.get(family)!);
  unmatched.add("ALL", `${PROVIDER.prefix}/:app/*`, (_c, params) => checkProvider(decoded(params.providerId)));
  unmatched.add("ALL", `${PROVIDER_JOBS.prefix}/*`, (_c, params) => checkProvider(decoded(params.providerId)));
  return {
    /** The gate of a family's routes: a promise only when it must wait (a token verified now). */
    of(family: Family): (c: Context<Env>) => Promise<void> | undefined {
      const authenticated = auth.get(family)!;
      // Both provider families name the provider in their path: another one's is a 404.
      if (family !== PROVIDER && family !== PROVIDER_JOBS) return authenticated;
      return (c) => {
        const passing = authenticated(c);
        if (passing !== undefined) return passing.then(() => checkProvider(c.req.param("providerId")));
        checkProvider(c.req.param("providerId"));
        return undefined;
      };
    },
    /** The gates a request no route serves passes: roles first, then the provider id. A promise only when there are some. */
    unmatched(c: Context<Env>): Promise<void> | undefined {
      const [passed] = unmatched.match(c.req.method, c.req.path);
      if (passed.length === 0) return undefined;
      return (async () => {
        for (const [gate, params] of passed) await gate(c, params as Record<string, string>);
      })();
    },
  };
}

/** A path parameter as Hono hands it to a route: percent-decoded when it has a `%`. */
const decoded = (value: string | undefined) => (value === undefined ? undefined : tryDecodeURIComponent(value));
