// A small HTTP listener for a process without the API (role `worker`): /healthz, /readyz and
// /metrics on `[worker] metrics_port`. Built on node:http, which Bun, Deno and Node all provide,
// and answering through the same Hono routes as the API (src/http/ops.ts). These routes take no
// request body, so the bridge from node:http to `fetch(Request)` stays a few lines.
// Imports node:http, hono and src/http/{ops,errors}.ts.

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Hono } from "hono";
import { errorResponse, routeNotFound, toAppError } from "./errors.ts";
import type { OpsOptions } from "../service/health.ts";
import { mountOps, RequestObserver } from "./ops.ts";

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

export interface OpsListener {
  port: number;
  close(): Promise<void>;
}

export async function listenOps(host: string, port: number, options: OpsOptions): Promise<OpsListener> {
  const app = new Hono();
  const observer = new RequestObserver((error, c) => errorResponse(c, toAppError(error)));
  mountOps(app, options, observer);
  app.notFound(observer.unmatched(routeNotFound));
  observer.checkEveryRoute(app);
  const server: Server = createServer((incoming, outgoing) => {
    // Any body is ignored: no route here reads one.
    incoming.resume();
    const method = incoming.method ?? "GET";
    if (!METHODS.has(method)) {
      outgoing.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    // Only the path matters here; the Host header is not trusted to make a URL.
    const url = new URL(`http://localhost${(incoming.url ?? "/").replace(/^\/*/, "/")}`);
    const headers = new Headers();
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (typeof value === "string") headers.set(name, value);
    }
    Promise.resolve()
      .then(() => app.fetch(new Request(url, { method, headers })))
      .then(async (response) => {
        outgoing.writeHead(response.status, Object.fromEntries(response.headers));
        outgoing.end(incoming.method === "HEAD" ? undefined : Buffer.from(await response.arrayBuffer()));
      })
      .catch(() => {
        if (!outgoing.headersSent) outgoing.writeHead(500);
        outgoing.end();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
