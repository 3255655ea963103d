// The shell sessions' WebSocket at `/ucloud/<providerId>/websocket` (UCloud's path), mounted on
// the HTTP app with the runtime's WebSocket helper (hono/bun, hono/deno, @hono/node-server): the
// only runtime-specific part, handed in by the adapter. No token: the session identifier is the
// capability, as in UCloud/IM.
// Imports hono (types), src/kubernetes/gateway.ts, src/service/context.ts, src/base/log.ts and ./session.ts.

import type { Hono } from "hono";
import type { UpgradeWebSocket, WSContext } from "hono/ws";
import { log } from "../base/log.ts";
import { KubernetesGateway } from "../kubernetes/gateway.ts";
import type { ServiceContext } from "../service/context.ts";
import { type AttachedShell, DEFAULT_SHELL_LIMITS, type ShellLimits, ShellSessions } from "./session.ts";

/** The shell sessions of one API replica, talking to the configured cluster. */
export function shellSessionsFor(context: ServiceContext, limits: ShellLimits = DEFAULT_SHELL_LIMITS): ShellSessions {
  const { kubernetes } = context.config;
  const gateway = KubernetesGateway.fromSettings({ ...kubernetes, simulatorUrl: `http://127.0.0.1:${kubernetes.simulator_port}` });
  return new ShellSessions({ context, gateway, limits, log: (level, message, fields) => log(level, message, fields) });
}

// biome-ignore lint/suspicious/noExplicitAny: each runtime's helper has its own socket type.
export function mountShellSocket(app: Hono<any>, upgradeWebSocket: UpgradeWebSocket<any>, shells: ShellSessions) {
  const { maxMessageBytes } = shells.deps.limits;
  app.get(
    `/ucloud/${shells.deps.context.config.ucloud.provider_id}/websocket`,
    upgradeWebSocket(() => {
      let shell: AttachedShell | null = null;
      return {
        onOpen: (_event: Event, ws: WSContext) => {
          shell = shells.connect({ send: (data) => ws.send(data), close: (code, reason) => ws.close(code, reason) });
        },
        onMessage: (event: MessageEvent, ws: WSContext) => {
          const { data } = event;
          if (typeof data !== "string") return ws.close(1003, "text messages only");
          if (data.length > maxMessageBytes) return ws.close(1009, "message too large");
          void shell?.receive(data);
        },
        onClose: () => shell?.closed(),
        onError: () => shell?.closed(),
      };
    }),
  );
}
