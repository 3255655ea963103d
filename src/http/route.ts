// One route of the API, declared once: its method and full path, its family (which token roles
// may call it), the valibot schemas of its query and body, its answer, its documented errors and
// its handler. app.ts registers the declaration's handler, which checks the request against the
// declared schemas before the route's code sees it; openapi.ts turns the same declaration into
// the route's OpenAPI operations. So a declared route is always described, and checks exactly
// the body it documents (test/openapi.test.ts catches a route registered around the
// declarations). Imports hono and valibot, the service's types, auth.ts (roles), the OpenAPI
// model's types and requests.ts (reading and checking).

import type { Context } from "hono";
import type * as v from "valibot";
import type { ConfigurationService } from "../service/configurations.ts";
import type { AuthVariables, Role } from "./auth.ts";
import type { Method } from "./openapi-model.ts";
import { check, readBody } from "./requests.ts";

/** `requestId`: set for every request by the ops middleware (ops.ts). */
export type Env = { Variables: AuthVariables & { requestId?: string } };

/**
 * Routes under one path prefix called by one kind of client. The family's roles are checked by
 * middleware on the whole prefix (app.ts), so that a path under it that names no route answers
 * 401 without a token, as every route there does, and 404 only to a caller who may be there.
 */
export interface Family {
  prefix: string;
  roles: readonly Role[];
}

/** The tags that group operations in the description (each described in openapi.ts). */
export type Tag = "Provider API" | "Public API" | "Terminal" | "Operations" | "Description";

/** The error statuses of spec §2 (each described, with its codes, in openapi.ts). */
export type ErrorStatus = "400" | "401" | "403" | "404" | "409" | "412" | "413" | "428" | "503";

type Schema = v.GenericSchema | undefined;
type Parsed<S extends Schema> = S extends v.GenericSchema ? v.InferOutput<S> : undefined;

export interface Route<B extends Schema = Schema, Q extends Schema = Schema, P extends string = string> {
  method: Method;
  /**
   * The Hono pattern, in full. In the description `:providerId` is the configured provider id,
   * and a route with `:app` is documented once for each enabled app that has configuration routes.
   */
  path: P;
  family: Family;
  /** A route of one app (no `:app` in its path): documented only while that app is enabled. */
  app?: string;
  /** In the operation's id and summary, `{app}` is the app's name. */
  operationId: string;
  tag: Tag;
  summary: string;
  description: string;
  query?: Q;
  /** The JSON body. In a route with `:app`, its `config` is documented as that app's configuration. */
  body?: B;
  /** An empty body reads as `{}`, so the body is optional. */
  emptyBodyIsObject?: boolean;
  /** The conditional-request header the route honours. */
  precondition?: "If-Match" | "If-None-Match";
  /**
   * The 200 answer: its body's schema (`view` is the app's view: configuration and ETag), and
   * whether it carries the record's ETag always, only when something was stored, or never.
   */
  answer: { description: string; schema: v.GenericSchema | "view"; etag: "always" | "when-stored" | "none" };
  errors: readonly ErrorStatus[];
  /** Runs with the query and body already checked against their schemas. */
  handle(c: Context<Env, P>, input: { query: Parsed<Q>; body: Parsed<B> }, service: ConfigurationService): Promise<Response>;
}

/**
 * A route declaration, its handler typed by its schemas and path (taken from the declaration
 * alone, not from where it is put: a list of routes would widen the path to `string`).
 */
export function route<B extends Schema = undefined, Q extends Schema = undefined, P extends string = string>(
  declaration: Route<B, Q, P>,
): Route<NoInfer<B>, NoInfer<Q>, NoInfer<P>> {
  return declaration;
}

/**
 * What serves a route once its family's gate has passed: checks the query, then reads and checks
 * the body, then runs the route's code. A request without a query string has the empty query,
 * checked once.
 */
export function handlerOf(route: Route, service: ConfigurationService): (c: Context<Env>) => Promise<Response> {
  const { query, body, emptyBodyIsObject = false } = route;
  let emptyQuery: unknown;
  const queryOf = (c: Context<Env>) => {
    if (query === undefined) return undefined;
    if (c.req.url.includes("?")) return check(query, c.req.query(), "query");
    emptyQuery ??= check(query, {}, "query");
    return emptyQuery;
  };
  if (body === undefined) return (c) => route.handle(c, { query: queryOf(c), body: undefined }, service);
  return async (c) => {
    const query = queryOf(c);
    return route.handle(c, { query, body: await readBody(c, body, { emptyIsObject: emptyBodyIsObject }) }, service);
  };
}
