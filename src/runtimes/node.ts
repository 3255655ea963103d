// The API under Node (20 or later): `node --import tsx src/runtimes/node.ts` (`npm run api:node`). Serves
// the default export of src/runtimes/serve.ts with @hono/node-server on [server] host and port; SIGTERM or
// SIGINT stops accepting, lets the requests in flight finish ([server] shutdown_timeout), closes
// Redis and exits 0. The only file that knows Node's HTTP server.
// Imports @hono/node-server, src/base (log, secrets) and ./api.ts, ./serve.ts, ./signals.ts.

import type { Server, ServerResponse } from "node:http";
import { serve, upgradeWebSocket } from "@hono/node-server";
import { WebSocketServer } from "ws";
import { stopApi } from "./api.ts";
import { maskSecrets } from "../base/secrets.ts";
import { log } from "../base/log.ts";
import entry, { api } from "./serve.ts";
import { onStopSignal } from "./signals.ts";

// The shell sessions' WebSocket: @hono/node-server upgrades through a `ws` server of its own.
api.serveWebSockets(upgradeWebSocket);
const websocket = { server: new WebSocketServer({ noServer: true, maxPayload: api.shells.deps.limits.maxMessageBytes }) };
const server = serve({ fetch: entry.fetch, hostname: entry.hostname, port: entry.port, websocket }, (address) => {
  log("info", "ucloud-iapps api listening (Node)", {
    url: `http://${address.address}:${address.port}`,
    redis: maskSecrets(api.config.redis.url),
    provider: api.config.ucloud.provider_id,
  });
}) as Server;

server.on("error", (error) => {
  log("error", "cannot listen", { error: error.message });
  void api.close().then(() => process.exit(1));
});

// Answers not yet sent when SIGTERM comes say `Connection: close`: Node would keep the
// connection open and serve whatever the client sends next on it, and the drain would go on for
// as long as clients keep sending.
const answering = new Set<ServerResponse>();
let stopping = false;
server.on("request", (_request, response: ServerResponse) => {
  if (stopping) response.shouldKeepAlive = false;
  answering.add(response);
  response.once("close", () => answering.delete(response));
});

onStopSignal(async (signal) => {
  stopping = true;
  log("info", "shutting down", { signal });
  for (const response of answering) if (!response.headersSent) response.shouldKeepAlive = false;
  await stopApi(api, {
    // close() refuses new connections and ends the idle ones (Node 19+); its callback runs once
    // the busy ones have answered and closed.
    drain: () => new Promise<void>((resolve) => server.close(() => resolve())),
    abort: () => server.closeAllConnections(),
  });
  process.exit(0);
});
