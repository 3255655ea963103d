// The API under Bun: Bun.serve on [server] host and port, and its graceful stop. Used by
// src/main.ts (roles api and all), which owns the signals. The only file that knows Bun's server.
//
// `server.stop()` without `true` closes the listening socket at once and resolves once the
// requests in flight are answered; `stop(true)` cuts the connections still open.

import { upgradeWebSocket, websocket } from "hono/bun";
import { type Api, closingConnection, type Listener } from "./api.ts";

export function listenWithBun(api: Api): { url: string; listener: Listener } {
  const { host, port } = api.config.server;
  let draining = false;
  api.serveWebSockets(upgradeWebSocket);
  const server = Bun.serve({
    hostname: host,
    port,
    // The server is what hono/bun's upgradeWebSocket upgrades with. An answer given at once (a
    // warm retrieve) is handed on at once; whether to close the connection is decided when the
    // answer is ready, as draining may have begun while it was awaited.
    fetch(request, server) {
      const answer = api.fetch(request, server);
      if (answer instanceof Promise) return answer.then((response) => (draining ? closing(request, response) : response));
      return draining ? closing(request, answer) : answer;
    },
    websocket,
  });
  /** An answer given while draining closes its connection (an upgraded request has none to close). */
  function closing(request: Request, response: Response): Response {
    if (response.status === 101 || request.headers.get("upgrade")?.toLowerCase() === "websocket") return response;
    return closingConnection(response);
  }
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
