// The public retrieve answered from memory, around Hono: the UI's most frequent request, and one a
// replica can usually answer without waiting a turn, from the verified-token cache (auth.ts) and
// its record cache. Through Hono it cost about twice the bare route: a context, the router, the
// observer's closures, three promises between the route and the cache, Headers built and merged.
// Here it is one synchronous function that reads the URL once, three request headers, and builds
// one Response from a plain object of headers.
//
// It answers only what the route would answer the same way, byte for byte (status, headers, body;
// test/api.test.ts and test/cache.test.ts run through it): GET of `/api/iapps/<app>/retrieve`
// without a query, with an Authorization header verified before whose token the public family
// admits, for an app and owner the service answers from its cache (ConfigurationService
// retrieveCached). Anything else (HEAD, a query, a `%` in the path, a token to verify now, a
// refused role, an unknown app, a cache miss) is undefined: the caller hands the request to the
// Hono app, which answers it, errors included. Request ids and request metrics are the
// observer's (ops.ts), counted under the route's own series.
// Imports the service's types, src/base/request-id.ts and the HTTP helpers.

import { REQUEST_ID_HEADER, requestIdFrom } from "../base/request-id.ts";
import type { ConfigurationService } from "../service/configurations.ts";
import { admits, type TokenVerifier } from "./auth.ts";
import type { RequestSeries } from "./ops.ts";
import { etagHeader, noneMatch } from "./preconditions.ts";
import type { Family } from "./route.ts";
import { viewJson } from "./routes.ts";

export interface WarmRetrieveOptions {
  /** The route's pattern, `<family prefix>/:app/retrieve`. */
  pattern: string;
  family: Family;
  tokens: TokenVerifier;
  service: ConfigurationService;
  /** The route's request metrics (the observer's). */
  series: RequestSeries;
}

/** The answer to a warm retrieve, or undefined for the Hono app to answer. */
export function warmRetrieve(options: WarmRetrieveOptions): (request: Request) => Response | undefined {
  const { family, tokens, service } = options;
  const [prefix, suffix] = options.pattern.split(":app");
  if (prefix !== `${family.prefix}/` || suffix !== "/retrieve" || family.prefix.includes(":")) {
    throw new Error(`warm retrieve: ${options.pattern} is not <a family prefix without parameters>/:app/retrieve`);
  }
  const ok = options.series.bound("GET", 200);
  const notModified = options.series.bound("GET", 304);

  return (request) => {
    if (request.method !== "GET") return undefined;
    const started = performance.now();
    // The path, as Hono finds it (src/http/app.ts: the first `/` after the scheme's `://`), and
    // nothing after it: a query is checked against the route's schema by the Hono route.
    const url = request.url;
    const start = url.indexOf("/", url.indexOf(":") + 3);
    if (start === -1 || !url.startsWith(prefix, start) || !url.endsWith(suffix)) return undefined;
    const app = url.slice(start + prefix.length, url.length - suffix.length);
    if (app === "" || app.includes("/") || app.includes("?") || app.includes("%")) return undefined;

    const headers = request.headers;
    const principal = tokens.remembered(headers.get("authorization"));
    if (principal === undefined || !admits(family.roles, principal)) return undefined;
    const view = service.retrieveCached(app, { createdBy: principal.username, project: null });
    if (view === undefined) return undefined;

    const id = requestIdFrom(headers.get("x-request-id"));
    const etag = etagHeader(view.etag);
    const ifNoneMatch = headers.get("if-none-match");
    let response: Response;
    let series = ok;
    if (ifNoneMatch !== null && noneMatch(ifNoneMatch, view.etag)) {
      response = new Response(null, { status: 304, headers: { ETag: etag, [REQUEST_ID_HEADER]: id } });
      series = notModified;
    } else {
      response = new Response(viewJson(view), { status: 200, headers: { "Content-Type": "application/json", ETag: etag, [REQUEST_ID_HEADER]: id } });
    }
    series.count.inc();
    series.duration.observe((performance.now() - started) / 1000);
    return response;
  };
}
