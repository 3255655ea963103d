// The API under Node (20 or later): `tsx src/serve-node.ts`. Serves the default export of
// src/serve.ts with @hono/node-server on [server] host and port; SIGTERM or SIGINT stops
// accepting, lets the requests in flight finish ([server] shutdown_timeout), closes Redis and
// exits 0. The only file that knows Node's HTTP server.

import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { stopApi } from "./api.ts";
import { log } from "./log.ts";
import entry, { api } from "./serve.ts";

const server = serve({ fetch: entry.fetch, hostname: entry.hostname, port: entry.port }, (address) => {
  log("info", "ucloud-iapps api listening (Node)", {
    url: `http://${address.address}:${address.port}`,
    redis: api.config.redis.url,
    provider: api.config.ucloud.provider_id,
  });
}) as Server;

server.on("error", (error) => {
  log("error", "cannot listen", { error: error.message });
  void api.close().then(() => process.exit(1));
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log("info", "shutting down", { signal });
  await stopApi(api, {
    drain: () =>
      new Promise<void>((resolve) => {
        // close() refuses new connections and ends idle keep-alive ones; its callback runs once
        // the busy ones are done. A connection busy now turns idle after its answer: end it then.
        server.close(() => resolve());
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        server.once("close", () => clearInterval(idle));
      }),
    abort: () => server.closeAllConnections(),
  });
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
