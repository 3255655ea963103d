// The one module that talks to Kubernetes, through @kubernetes/client-node 1.4 (2.x breaks TLS
// under Bun): pods, services and network policies in one namespace, and a pod watch. A missing
// object reads as null, and every call is counted (by verb and kind) for tests and benchmarks,
// and in the process's metrics with its failures.
// In `embedded` mode it reaches the simulator over HTTP, like any cluster: no shortcut.
// Imports @kubernetes/client-node and src/metrics/metrics.ts only.

import { homedir } from "node:os";
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  NetworkingV1Api,
  type V1NetworkPolicy,
  type V1Pod,
  type V1Service,
  Watch,
} from "@kubernetes/client-node";
import { metrics } from "../metrics/metrics.ts";

export interface GatewaySettings {
  mode: "embedded" | "kubeconfig" | "in-cluster";
  kubeconfig: string;
  namespace: string;
  /** The simulator's URL, in embedded mode. */
  simulatorUrl?: string;
}

export type PodEvent = "ADDED" | "MODIFIED" | "DELETED";

/** Calls that change something in the cluster, as counted in `calls`. */
export const CHANGING_VERBS = ["create", "delete"] as const;

export class KubernetesGateway {
  private readonly core: CoreV1Api;
  private readonly networking: NetworkingV1Api;
  readonly namespace: string;
  /** `<verb> <kind>` → how many calls were made (failed ones included). */
  readonly calls = new Map<string, number>();

  constructor(private readonly kubeConfig: KubeConfig, namespace: string) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.networking = kubeConfig.makeApiClient(NetworkingV1Api);
    this.namespace = namespace;
  }

  static fromSettings(settings: GatewaySettings): KubernetesGateway {
    const kubeConfig = new KubeConfig();
    if (settings.mode === "in-cluster") {
      kubeConfig.loadFromCluster();
    } else if (settings.mode === "kubeconfig") {
      kubeConfig.loadFromFile(settings.kubeconfig.replace(/^~(?=\/)/, homedir()));
    } else {
      if (!settings.simulatorUrl) throw new Error("embedded Kubernetes mode needs the simulator's URL");
      // Plain HTTP: the client needs skipTLSVerify for an http:// server.
      kubeConfig.loadFromOptions({
        clusters: [{ name: "simulator", server: settings.simulatorUrl, skipTLSVerify: true }],
        users: [{ name: "simulator" }],
        contexts: [{ name: "simulator", cluster: "simulator", user: "simulator" }],
        currentContext: "simulator",
      });
    }
    return new KubernetesGateway(kubeConfig, settings.namespace);
  }

  /** How many calls changed something (creates and deletes) so far. */
  changingCalls(): number {
    let total = 0;
    for (const [key, count] of this.calls) if (CHANGING_VERBS.some((verb) => key.startsWith(`${verb} `))) total += count;
    return total;
  }

  getPod(name: string): Promise<V1Pod | null> {
    return this.orNull("get pod", () => this.core.readNamespacedPod({ name, namespace: this.namespace }));
  }

  async listPods(labelSelector: string): Promise<V1Pod[]> {
    return (await this.count("list pod", () => this.core.listNamespacedPod({ namespace: this.namespace, labelSelector }))).items;
  }

  createPod(body: V1Pod): Promise<V1Pod> {
    return this.count("create pod", () => this.core.createNamespacedPod({ namespace: this.namespace, body }));
  }

  /** Deletes at once (grace period 0) with background propagation; false when it was already gone. */
  deletePod(name: string): Promise<boolean> {
    return this.gone("delete pod", () =>
      this.core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 0, propagationPolicy: "Background" }),
    );
  }

  getService(name: string): Promise<V1Service | null> {
    return this.orNull("get service", () => this.core.readNamespacedService({ name, namespace: this.namespace }));
  }

  createService(body: V1Service): Promise<V1Service> {
    return this.count("create service", () => this.core.createNamespacedService({ namespace: this.namespace, body }));
  }

  deleteService(name: string): Promise<boolean> {
    return this.gone("delete service", () => this.core.deleteNamespacedService({ name, namespace: this.namespace, propagationPolicy: "Background" }));
  }

  getNetworkPolicy(name: string): Promise<V1NetworkPolicy | null> {
    return this.orNull("get networkpolicy", () => this.networking.readNamespacedNetworkPolicy({ name, namespace: this.namespace }));
  }

  createNetworkPolicy(body: V1NetworkPolicy): Promise<V1NetworkPolicy> {
    return this.count("create networkpolicy", () => this.networking.createNamespacedNetworkPolicy({ namespace: this.namespace, body }));
  }

  deleteNetworkPolicy(name: string): Promise<boolean> {
    return this.gone("delete networkpolicy", () =>
      this.networking.deleteNamespacedNetworkPolicy({ name, namespace: this.namespace, propagationPolicy: "Background" }),
    );
  }

  /**
   * Watches pods matching `labelSelector` until stopped, reconnecting after any end or error
   * (a reconnect starts with ADDED events for every pod, so nothing is missed for long).
   */
  watchPods(labelSelector: string, onEvent: (type: PodEvent, pod: V1Pod) => void, onError?: (error: unknown) => void): () => void {
    const watch = new Watch(this.kubeConfig);
    let stopped = false;
    let controller: AbortController | null = null;
    let failures = 0;
    const path = `/api/v1/namespaces/${this.namespace}/pods`;
    const start = async () => {
      if (stopped) return;
      const again = (error: unknown) => {
        controller = null;
        if (stopped) return;
        if (error) {
          failures++;
          countError("watch pod", error);
          onError?.(error);
        } else {
          failures = 0;
        }
        setTimeout(start, Math.min(100 * 2 ** failures, 5000));
      };
      try {
        this.tally("watch pod");
        controller = await watch.watch(
          path,
          { labelSelector, allowWatchBookmarks: false },
          (type, object) => {
            failures = 0;
            if (type === "ADDED" || type === "MODIFIED" || type === "DELETED") onEvent(type, object as V1Pod);
          },
          again,
        );
        if (stopped) controller.abort();
      } catch (e) {
        again(e);
      }
    };
    void start();
    return () => {
      stopped = true;
      controller?.abort();
    };
  }

  private tally(what: string) {
    this.calls.set(what, (this.calls.get(what) ?? 0) + 1);
    const [verb, resource] = what.split(" ") as [string, string];
    metrics.kubernetesRequests.inc({ verb, resource });
  }

  private async count<T>(what: string, call: () => Promise<T>): Promise<T> {
    this.tally(what);
    try {
      return await call();
    } catch (e) {
      countError(what, e);
      throw e;
    }
  }

  private async orNull<T>(what: string, call: () => Promise<T>): Promise<T | null> {
    try {
      return await this.count(what, call);
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw e;
    }
  }

  private async gone(what: string, call: () => Promise<unknown>): Promise<boolean> {
    try {
      await this.count(what, call);
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw e;
    }
  }
}

function countError(what: string, error: unknown) {
  const [verb, resource] = what.split(" ") as [string, string];
  metrics.kubernetesErrors.inc({ verb, resource, code: String(statusOf(error) ?? "network") });
}

/** The HTTP status of a failed Kubernetes call, or null when it never got an answer. */
export function statusOf(error: unknown): number | null {
  return error instanceof ApiException ? error.code : null;
}
