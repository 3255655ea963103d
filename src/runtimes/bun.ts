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
    // The server is what hono/bun's upgradeWebSocket upgrades with. Serving, the app's answer is
    // handed on as it comes (a Response at once, or a promise); draining, it closes the connection
    // (an upgraded request has no answer to close).
    fetch(request, server) {
      return draining ? drainingAnswer(request, server) : api.fetch(request, server);
    },
    websocket,
  });
  async function drainingAnswer(request: Request, server: unknown): Promise<Response> {
    const response = await api.fetch(request, server);
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
