// The API under Deno: `deno serve --port 8080 --host 0.0.0.0 src/runtimes/deno.ts` (flags in
// package.json's api:deno). Its default export is src/runtimes/serve.ts's; Deno picks port and host from
// its flags, not from [server].
//
// On SIGTERM or SIGINT `deno serve` itself closes the listening socket and lets the requests in
// flight finish; it has no handle to wait on, so we wait for our own handlers to end (bounded by
// [server] shutdown_timeout), then close the Redis connections. With nothing left open the
// process ends and Deno exits 0. Past the timeout we exit at once. The only file that knows Deno.
// Imports ./api.ts, ./serve.ts and ./signals.ts.

import { upgradeWebSocket } from "hono/deno";
import { closingConnection, stopApi } from "./api.ts";
import entry, { api } from "./serve.ts";
import { onStopSignal } from "./signals.ts";

let stopping = false;
api.serveWebSockets(upgradeWebSocket);

export default {
  async fetch(request: Request): Promise<Response> {
    const response = await entry.fetch(request);
    return stopping && response.status !== 101 ? closingConnection(response) : response;
  },
};

onStopSignal(async () => {
  stopping = true;
  const outcome = await stopApi(api, { drain: () => api.idle(), abort: () => {} });
  if (outcome === "timeout") process.exit(0);
});
