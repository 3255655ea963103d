// Why a long-running role cannot start, in one line an operator can act on: the cause and the
// setting to change. `whyRoleCannotStart` checks a role's whole configuration before any part of
// it starts (role all would otherwise have its simulator listening when the API refuses);
// `cannotListen` says why a listener could not start (a port in use) instead of the runtime's
// stack trace. Used by src/main.ts. Imports src/settings, src/kubernetes/gateway.ts and ./http-app.ts.

import { KubernetesGateway } from "../kubernetes/gateway.ts";
import { type Config, settingName } from "../settings/config.ts";
import { authOptions } from "./http-app.ts";

export type ServiceRole = "api" | "worker" | "kube-sim" | "all";

/**
 * What keeps `role` from starting with `config`, or null. `environment`: where the in-cluster
 * mode finds the cluster (KUBERNETES_SERVICE_HOST).
 */
export function whyRoleCannotStart(config: Config, role: ServiceRole, environment: Record<string, string | undefined> = process.env): string | null {
  const serves = role === "api" || role === "all";
  const reconciles = role === "worker" || role === "all";
  if (serves) {
    try {
      authOptions(config);
    } catch (e) {
      return (e as Error).message;
    }
  }
  const { kubernetes } = config;
  if (role === "all" && kubernetes.mode === "embedded" && kubernetes.simulator_port !== 0 && kubernetes.simulator_port === config.server.port) {
    return `the API and the Kubernetes simulator both want port ${config.server.port}: set ${settingName("server.port")}, or ${settingName("kubernetes.simulator_port")}`;
  }
  if (!reconciles) return null;
  switch (kubernetes.mode) {
    case "embedded":
      // Role all starts the simulator itself (0: on a free port); a worker alone must be told where it is.
      if (role === "worker" && kubernetes.simulator_port === 0) {
        return `the worker needs the port of the simulator that role all or kube-sim runs, and [kubernetes] simulator_port is 0: set ${settingName("kubernetes.simulator_port")}`;
      }
      return null;
    case "kubeconfig":
      try {
        KubernetesGateway.fromSettings(kubernetes);
        return null;
      } catch (e) {
        return `cannot use the kubeconfig ${kubernetes.kubeconfig} (${(e as Error).message}): set ${settingName("kubernetes.kubeconfig")}, or ${settingName("kubernetes.mode")}`;
      }
    case "in-cluster":
      if (environment.KUBERNETES_SERVICE_HOST) return null;
      return `[kubernetes] mode is "in-cluster", but KUBERNETES_SERVICE_HOST is not set: this process does not run in a Kubernetes pod; set ${settingName("kubernetes.mode")}`;
  }
}

export interface ListenerSettings {
  /** The part that listens, as the operator knows it: "API", "Kubernetes simulator". */
  what: string;
  host: string;
  port: number;
  /** The setting of the port (a dotted path, "server.port"). */
  portSetting: string;
  /** The setting of the host, when there is one. */
  hostSetting?: string;
}

/** Why a listener could not start, from the error its runtime threw (Bun.serve's, node:http's). */
export function cannotListen(error: unknown, listener: ListenerSettings): string {
  const { what, host, port, portSetting, hostSetting } = listener;
  const code = (error as { code?: unknown } | null)?.code;
  const changePort = `set ${settingName(portSetting)}`;
  switch (code) {
    case "EADDRINUSE":
      return `${what}: port ${port} is in use: ${changePort}`;
    case "EACCES":
      return `${what}: port ${port} needs privileges this process does not have: ${changePort}`;
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      if (hostSetting) return `${what}: ${host} is not an address of this machine: set ${settingName(hostSetting)}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  return `${what}: cannot listen on ${host}:${port} (${message}): check ${settingName(portSetting)}${hostSetting ? ` and ${settingName(hostSetting)}` : ""}`;
}
