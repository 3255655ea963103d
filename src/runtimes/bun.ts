// The API under Bun: Bun.serve on [server] host and port, and its graceful stop. Used by
// src/main.ts (roles api and all), which owns the signals. The only file that knows Bun's server.
//
// `server.stop()` without `true` closes the listening socket at once and resolves once the
// requests in flight are answered; `stop(true)` cuts the connections still open.

import { type Api, closingConnection, type Listener } from "./api.ts";

export function listenWithBun(api: Api): { url: string; listener: Listener } {
  const { host, port } = api.config.server;
  let draining = false;
  const server = Bun.serve({
    hostname: host,
    port,
    async fetch(request) {
      const response = await api.fetch(request);
      return draining ? closingConnection(response) : response;
    },
  });
  return {
    url: `http://${host}:${server.port}`,
    listener: {
      drain: () => {
        draining = true;
        return server.stop();
      },
      abort: () => void server.stop(true),
    },
  };
}
