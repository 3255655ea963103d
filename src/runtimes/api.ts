// One API replica built from a configuration: its service context, its HTTP app as a plain
// `fetch(Request)`, and the way it stops. The one place that builds the API for every runtime;
// the runtime adapters only listen and stop listening: src/runtimes/serve.ts is the entry module (its
// default export `{ fetch }`), served by src/runtimes/bun.ts (Bun.serve, for src/main.ts roles api
// and all), src/runtimes/deno.ts (`deno serve`) and src/runtimes/node.ts (Node, @hono/node-server).
// Runtime-neutral: imports src/config, src/service, src/http and src/log.

import type { Config } from "../settings/config.ts";
import { httpAppFor } from "./http-app.ts";
import { log } from "../base/log.ts";
import { createContext, type ServiceContext } from "../service/context.ts";
import type { UpgradeWebSocket } from "hono/ws";
import { mountShellSocket, shellSessionsFor } from "../shell/mount.ts";
import { mountTerminalPage } from "../shell/page.ts";
import type { ShellSessions } from "../shell/session.ts";

export interface Api {
  config: Config;
  context: ServiceContext;
  /**
   * Answers one request; what every runtime's server calls (`env`: the runtime's bindings, which
   * its WebSocket helper needs). A Response, not a promise, when the app answered at once (a warm
   * retrieve): every runtime's server takes either.
   */
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
  /** The terminal's shell sessions attached to this replica. */
  shells: ShellSessions;
  /** Serves the shell sessions' WebSocket with the runtime's helper; before the first request. */
  // biome-ignore lint/suspicious/noExplicitAny: each runtime's helper has its own socket type.
  serveWebSockets(upgradeWebSocket: UpgradeWebSocket<any>): void;
  /** Requests whose handler is running now. */
  inFlight(): number;
  /** Resolves once no handler is running (at once when none is). */
  idle(): Promise<void>;
  /** Closes the Redis connections. After the server stopped: a request still running would fail. */
  close(): Promise<void>;
}

/** Throws when the configuration cannot serve (no JWT key); Redis connects in the background. */
export function createApi(config: Config): Api {
  const context = createContext(config);
  let app: ReturnType<typeof httpAppFor>;
  try {
    app = httpAppFor(context);
    // The terminal page (GET /terminal), for every runtime; its socket comes with serveWebSockets.
    mountTerminalPage(app);
  } catch (e) {
    void context.close();
    throw e;
  }
  let running = 0;
  const idleWaiters: (() => void)[] = [];
  const answered = () => {
    if (--running === 0 && idleWaiters.length > 0) for (const wake of idleWaiters.splice(0)) wake();
  };
  const shells = shellSessionsFor(context);
  return {
    config,
    context,
    // Runtimes pass extras (Bun its server, Deno connection info, Node its bindings) that the
    // app has no use for: it sees the request only. Counted for runtimes that stop accepting on
    // their own and give no handle to wait on (`deno serve`). No `async`: an answer given at once
    // is handed on at once, not a turn later.
    fetch(request, env) {
      running++;
      let answer: Response | Promise<Response>;
      try {
        answer = app.fetch(request, env);
      } catch (error) {
        answered();
        throw error;
      }
      // Not `finally`: it costs two promises more per request than a `then` with both callbacks.
      if (answer instanceof Promise) {
        return answer.then(
          (response) => {
            answered();
            return response;
          },
          (error: unknown) => {
            answered();
            throw error;
          },
        );
      }
      answered();
      return answer;
    },
    shells,
    serveWebSockets: (upgradeWebSocket) => mountShellSocket(app, upgradeWebSocket, shells),
    inFlight: () => running,
    idle: () => (running === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
    close: () => context.close(),
  };
}

/**
 * The answer with `Connection: close`, for answers given while draining: a keep-alive client
 * would send its next request on the connection, and the server would close it under that
 * request (a reset instead of a clean refusal at connect).
 */
export function closingConnection(response: Response): Response {
  const closing = new Response(response.body, response);
  closing.headers.set("connection", "close");
  return closing;
}

/** What a runtime adapter gives for a server it started. */
export interface Listener {
  /** Stops accepting connections; resolves once every request in flight has been answered. */
  drain(): Promise<void>;
  /** Cuts the connections still open (after `[server] shutdown_timeout`). */
  abort(): void;
}

/**
 * The API's part of SIGTERM: no new connections, the requests in flight answered (for at most
 * `[server] shutdown_timeout`; a request still running then is cut off), then the Redis
 * connections closed. The caller exits afterwards.
 */
export async function stopApi(api: Api, listener: Listener): Promise<"drained" | "timeout"> {
  const timeoutMs = api.config.server.shutdown_timeout;
  const startedAt = Date.now();
  log("info", "API stopping: no new connections, answering the requests in flight", { inFlight: api.inFlight(), timeoutMs, shellSessions: api.shells.size });
  // Shell sessions would hold the drain for as long as their users type: they end, with a message.
  api.shells.closeAll();
  const outcome = await within(listener.drain().then(() => "drained" as const), timeoutMs, "timeout" as const);
  if (outcome === "timeout") {
    log("warn", "API stopping: requests still running after [server] shutdown_timeout; cutting them off", { inFlight: api.inFlight(), timeoutMs });
    listener.abort();
  }
  // QUIT waits for Redis; an unreachable one must not hold the exit (the sockets close with the
  // process anyway). What is left of the timeout, and at least a second.
  const closed = await within(api.close().then(() => true), Math.max(timeoutMs - (Date.now() - startedAt), 1000), false);
  log(closed ? "info" : "warn", closed ? "API stopped" : "API stopped; Redis did not answer QUIT in time");
  return outcome;
}

/** `promise`'s value, or `fallback` after `ms`. */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
