// The public API's retrieve, answered around Hono: the UI's most frequent request. Through Hono a
// warm one cost about twice the bare Hono route (a context, the router, the observer's closures,
// three promises between the route and the cache, Headers built and merged), and a cold one paid
// the same on top of its Redis read. Here a request with a token verified before is one function
// that reads the URL once and three request headers, and builds one Response from a plain object
// of headers: synchronously when this replica's cache holds the record (no promise, no await), else
// after the service's read.
//
// It answers only what the Hono route would answer, byte for byte (status, headers, body, request
// metrics; test/api.test.ts and test/cache.test.ts run through it): GET of `/api/iapps/<app>/retrieve`
// without a query, with an Authorization header verified before (auth.ts remembers them) whose
// token the public family admits. Anything else (HEAD, a query, a `%` in the path, a token to
// verify now, a refused role) is undefined: the caller hands the request to the Hono app. What the
// service throws is answered by the app's error mapping. Request ids and request metrics are the
// observer's (ops.ts), counted under the route's own series.
// Imports the service's types, src/base/request-id.ts and the HTTP helpers.

import { REQUEST_ID_HEADER, requestIdFrom } from "../base/request-id.ts";
import type { ConfigurationService, View } from "../service/configurations.ts";
import { admits, type TokenVerifier } from "./auth.ts";
import type { BoundSeries, RequestSeries } from "./ops.ts";
import { etagHeader, noneMatch } from "./preconditions.ts";
import type { Family } from "./route.ts";
import { viewJson } from "./routes.ts";

export interface PublicRetrieveOptions {
  /** The route's pattern, `<family prefix>/:app/retrieve`. */
  pattern: string;
  family: Family;
  tokens: TokenVerifier;
  service: ConfigurationService;
  /** The route's request metrics (the observer's). */
  series: RequestSeries;
  /** The app's answer to what the service threw (src/http/app.ts). */
  answerError(error: unknown, requestId: string, path: string): Response;
}

/** The answer to a public retrieve, or undefined for the Hono app to answer. */
export function publicRetrieve(options: PublicRetrieveOptions): (request: Request) => Response | Promise<Response> | undefined {
  const { family, tokens, service, series } = options;
  const [prefix, suffix] = options.pattern.split(":app");
  if (prefix !== `${family.prefix}/` || suffix !== "/retrieve" || family.prefix.includes(":")) {
    throw new Error(`public retrieve: ${options.pattern} is not <a family prefix without parameters>/:app/retrieve`);
  }
  const ok = series.bound("GET", 200);
  const notModified = series.bound("GET", 304);

  /** `prepared`: the view's answer built before (a cached record's), else built now. */
  const answer = (view: View, prepared: Prepared | undefined, requestId: string, ifNoneMatch: string | null, started: number): Response => {
    const etag = prepared?.etagHeader ?? etagHeader(view.etag);
    let response: Response;
    let counted: BoundSeries;
    if (ifNoneMatch !== null && noneMatch(ifNoneMatch, view.etag)) {
      response = new Response(null, { status: 304, headers: { ETag: etag, [REQUEST_ID_HEADER]: requestId } });
      counted = notModified;
    } else {
      const body = prepared?.body ?? viewJson(view);
      response = new Response(body, { status: 200, headers: { "Content-Type": "application/json", ETag: etag, [REQUEST_ID_HEADER]: requestId } });
      counted = ok;
    }
    counted.count.inc();
    counted.duration.observe((performance.now() - started) / 1000);
    return response;
  };

  return (request) => {
    if (request.method !== "GET") return undefined;
    const started = performance.now();
    // The path, as Hono finds it (the first `/` after the scheme's `://`), and nothing after it:
    // the Hono route checks a query against its schema.
    const url = request.url;
    const start = url.indexOf("/", url.indexOf(":") + 3);
    if (start === -1 || !url.startsWith(prefix, start) || !url.endsWith(suffix)) return undefined;
    const app = url.slice(start + prefix.length, url.length - suffix.length);
    if (app === "" || app.includes("/") || app.includes("?") || app.includes("%")) return undefined;

    const headers = request.headers;
    const principal = tokens.remembered(headers.get("authorization"));
    if (principal === undefined || !admits(family.roles, principal)) return undefined;
    const owner = { createdBy: principal.username, project: null };
    const requestId = requestIdFrom(headers.get("x-request-id"));
    const ifNoneMatch = headers.get("if-none-match");

    const cached = service.retrieveCached(app, owner);
    if (cached !== undefined) return answer(cached, preparedOf(cached), requestId, ifNoneMatch, started);
    return service.retrieve(app, owner).then(
      (view) => answer(view, undefined, requestId, ifNoneMatch, started),
      (error: unknown) => {
        const response = options.answerError(error, requestId, url.slice(start));
        series.count("GET", response.status, (performance.now() - started) / 1000);
        return response;
      },
    );
  };
}

/**
 * A cached view's answer, built once per record version: a cached record is shared by its reads
 * and never changed, so its configuration object stands for the version (checked against the
 * ETag and warnings it was built for).
 */
interface Prepared {
  etag: string;
  warnings: string[] | undefined;
  etagHeader: string;
  body: string;
}
const prepared = new WeakMap<object, Prepared>();

function preparedOf(view: View): Prepared | undefined {
  const config = view.config;
  if (typeof config !== "object" || config === null) return undefined;
  let known = prepared.get(config);
  if (known === undefined || known.etag !== view.etag || known.warnings !== view.warnings) {
    known = { etag: view.etag, warnings: view.warnings, etagHeader: etagHeader(view.etag), body: viewJson(view) };
    prepared.set(config, known);
  }
  return known;
}
