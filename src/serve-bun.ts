// The API under Bun: Bun.serve on [server] host and port, and its graceful stop. Used by
// src/main.ts (roles api and all), which owns the signals. The only file that knows Bun's server.
//
// `server.stop()` without `true` closes the listening socket at once and resolves once the
// requests in flight are answered; `stop(true)` cuts the connections still open.

import type { Api, Listener } from "./api.ts";

export function listenWithBun(api: Api): { url: string; listener: Listener } {
  const { host, port } = api.config.server;
  const server = Bun.serve({ hostname: host, port, fetch: api.fetch });
  return {
    url: `http://${host}:${server.port}`,
    listener: {
      drain: () => server.stop(),
      abort: () => void server.stop(true),
    },
  };
}
