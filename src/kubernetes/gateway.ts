// The one module that talks to Kubernetes, through @kubernetes/client-node 1.4 (2.x breaks TLS
// under Bun): pods, services and network policies in one namespace, a pod watch, and the watch
// caches the worker reconciles against (`startCaches`, informers.ts): once they run, `cached*`
// reads come from memory and every create and delete updates them before it returns. A missing
// object reads as null, and every call is counted (by verb and kind) for tests and benchmarks,
// and in the process's metrics with its failures.
// In `embedded` mode it reaches the simulator over HTTP, like any cluster: no shortcut.
// Imports @kubernetes/client-node, ./informers.ts and src/metrics/metrics.ts only.

import { homedir } from "node:os";
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  NetworkingV1Api,
  setHeaderOptions,
  type V1NetworkPolicy,
  type V1Pod,
  type V1Service,
  Watch,
} from "@kubernetes/client-node";
import { metrics } from "../metrics/metrics.ts";
import { type ExecProcess, type ExecRequest, execWithTty } from "./exec.ts";
import { InformerCache } from "./informers.ts";

export interface GatewaySettings {
  mode: "embedded" | "kubeconfig" | "in-cluster";
  kubeconfig: string;
  namespace: string;
  /** The simulator's URL, in embedded mode. */
  simulatorUrl?: string;
}

export type PodEvent = "ADDED" | "MODIFIED" | "DELETED";

/** The watch caches of one worker: pods (indexed by `indexLabel`), services, network policies. */
export interface ClusterCaches {
  pods: InformerCache<V1Pod>;
  services: InformerCache<V1Service>;
  policies: InformerCache<V1NetworkPolicy>;
}

export interface CacheOptions {
  /** The label every object the worker manages carries (informers select by its presence). */
  selectLabel: string;
  /** The pods' label to index by (`podsByIndex`). */
  indexLabel: string;
  /**
   * Any change to a cached object (watch events and the informers' relists; not the process's
   * own writes, nor `relistCaches`), with the version the cache had before (null: none).
   */
  onChange?: (kind: "pod" | "service" | "networkpolicy", object: V1Pod | V1Service | V1NetworkPolicy, deleted: boolean, previous: V1Pod | V1Service | V1NetworkPolicy | null) => void;
  onError?: (kind: string, error: unknown) => void;
}

/**
 * What a relist asks for: metadata only (as `kubectl get --show-kind -o name` and client-go's
 * metadata informers do), else plain JSON from a server that cannot give that.
 */
const METADATA_ONLY = setHeaderOptions("Accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json");

/** Calls that change something in the cluster, as counted in `calls`. */
export const CHANGING_VERBS = ["create", "delete"] as const;

export class KubernetesGateway {
  private readonly core: CoreV1Api;
  private readonly networking: NetworkingV1Api;
  readonly namespace: string;
  /** `<verb> <kind>` → how many calls were made (failed ones included). */
  readonly calls = new Map<string, number>();
  /** The watch caches, once started. */
  private caches: ClusterCaches | null = null;

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

  /** Runs a command with a TTY in a container of one of the namespace's pods (./exec.ts). */
  exec(request: Omit<ExecRequest, "namespace">): Promise<ExecProcess> {
    return execWithTty(this.kubeConfig, { ...request, namespace: this.namespace });
  }

  /** How many calls changed something (creates and deletes) so far. */
  changingCalls(): number {
    let total = 0;
    for (const [key, count] of this.calls) if (CHANGING_VERBS.some((verb) => key.startsWith(`${verb} `))) total += count;
    return total;
  }

  /**
   * Starts the watch caches (one list each, then watches): until `stopCaches`, the `cached*`
   * reads answer from memory. Resolves once every cache has its first list.
   */
  async startCaches(options: CacheOptions): Promise<void> {
    const namespace = this.namespace;
    const selector = options.selectLabel;
    // Each informer lists (counted here), then watches (counted by its failures).
    const common = <T extends V1Pod | V1Service | V1NetworkPolicy>(kind: "pod" | "service" | "networkpolicy", list: string, watch: string) => ({
      labelSelector: selector,
      onChange: (object: T, deleted: boolean, previous: T | null) => options.onChange?.(kind, object, deleted, previous),
      onError: (error: unknown) => {
        countError(watch, error);
        options.onError?.(kind, error);
      },
      onConnect: () => this.tally(list),
    });
    const caches: ClusterCaches = {
      pods: new InformerCache<V1Pod>(this.kubeConfig, {
        path: `/api/v1/namespaces/${namespace}/pods`,
        list: () => this.core.listNamespacedPod({ namespace, labelSelector: selector }),
        listMetadata: () => this.core.listNamespacedPod({ namespace, labelSelector: selector }, METADATA_ONLY),
        read: (name) => this.getPod(name),
        indexLabel: options.indexLabel,
        ...common<V1Pod>("pod", "list pod", "watch pod"),
      }),
      services: new InformerCache<V1Service>(this.kubeConfig, {
        path: `/api/v1/namespaces/${namespace}/services`,
        list: () => this.core.listNamespacedService({ namespace, labelSelector: selector }),
        listMetadata: () => this.core.listNamespacedService({ namespace, labelSelector: selector }, METADATA_ONLY),
        read: (name) => this.getService(name),
        ...common<V1Service>("service", "list service", "watch service"),
      }),
      policies: new InformerCache<V1NetworkPolicy>(this.kubeConfig, {
        path: `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies`,
        list: () => this.networking.listNamespacedNetworkPolicy({ namespace, labelSelector: selector }),
        listMetadata: () => this.networking.listNamespacedNetworkPolicy({ namespace, labelSelector: selector }, METADATA_ONLY),
        read: (name) => this.getNetworkPolicy(name),
        ...common<V1NetworkPolicy>("networkpolicy", "list networkpolicy", "watch networkpolicy"),
      }),
    };
    this.caches = caches;
    for (const cache of Object.values(caches)) cache.start();
    await this.cachesSynced();
  }

  /** Resolves once every started cache has its first list (at once without caches). */
  async cachesSynced(): Promise<void> {
    if (this.caches) await Promise.all(Object.values(this.caches).map((cache) => cache.whenSynced()));
  }

  /** Whether the caches run and each has its first list: what a worker's /readyz waits for. */
  get synced(): boolean {
    return this.caches !== null && Object.values(this.caches).every((cache) => cache.synced);
  }

  /**
   * Lists every cache again (three list calls, by metadata: names and resourceVersions; a read
   * of each object the cache lacks the version of), for what their watches may have missed: the
   * resync's safety net. Answers how many cached objects changed; nothing without caches.
   */
  async relistCaches(): Promise<number> {
    if (!this.caches) return 0;
    const changed = await Promise.all(Object.values(this.caches).map((cache) => cache.relist()));
    return changed.reduce((sum, n) => sum + n, 0);
  }

  async stopCaches(): Promise<void> {
    const caches = this.caches;
    this.caches = null;
    if (caches) await Promise.all(Object.values(caches).map((cache) => cache.stop()));
  }

  /** The pods whose index label (`CacheOptions.indexLabel`) is `value`: from the cache, else listed. */
  async podsByIndex(label: string, value: string): Promise<V1Pod[]> {
    if (this.caches) return this.caches.pods.byIndex(value);
    return this.listPods(`${label}=${value}`);
  }

  cachedService(name: string): Promise<V1Service | null> {
    return this.caches ? Promise.resolve(this.caches.services.get(name)) : this.getService(name);
  }

  cachedNetworkPolicy(name: string): Promise<V1NetworkPolicy | null> {
    return this.caches ? Promise.resolve(this.caches.policies.get(name)) : this.getNetworkPolicy(name);
  }

  /** A pod as the cache has it (no call), or null; without caches, from the API server. */
  cachedPod(name: string): Promise<V1Pod | null> {
    return this.caches ? Promise.resolve(this.caches.pods.get(name)) : this.getPod(name);
  }

  getPod(name: string): Promise<V1Pod | null> {
    return this.orNull("get pod", () => this.core.readNamespacedPod({ name, namespace: this.namespace }));
  }

  async listPods(labelSelector: string): Promise<V1Pod[]> {
    return (await this.count("list pod", () => this.core.listNamespacedPod({ namespace: this.namespace, labelSelector }))).items;
  }

  async createPod(body: V1Pod): Promise<V1Pod> {
    const created = await this.count("create pod", () => this.core.createNamespacedPod({ namespace: this.namespace, body }));
    this.caches?.pods.wrote(created);
    return created;
  }

  /** Deletes at once (grace period 0) with background propagation; false when it was already gone. */
  async deletePod(name: string): Promise<boolean> {
    const gone = await this.gone("delete pod", () =>
      this.core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 0, propagationPolicy: "Background" }),
    );
    this.caches?.pods.deleted(name);
    return gone;
  }

  getService(name: string): Promise<V1Service | null> {
    return this.orNull("get service", () => this.core.readNamespacedService({ name, namespace: this.namespace }));
  }

  async createService(body: V1Service): Promise<V1Service> {
    const created = await this.count("create service", () => this.core.createNamespacedService({ namespace: this.namespace, body }));
    this.caches?.services.wrote(created);
    return created;
  }

  async deleteService(name: string): Promise<boolean> {
    const gone = await this.gone("delete service", () =>
      this.core.deleteNamespacedService({ name, namespace: this.namespace, propagationPolicy: "Background" }),
    );
    this.caches?.services.deleted(name);
    return gone;
  }

  getNetworkPolicy(name: string): Promise<V1NetworkPolicy | null> {
    return this.orNull("get networkpolicy", () => this.networking.readNamespacedNetworkPolicy({ name, namespace: this.namespace }));
  }

  async createNetworkPolicy(body: V1NetworkPolicy): Promise<V1NetworkPolicy> {
    const created = await this.count("create networkpolicy", () => this.networking.createNamespacedNetworkPolicy({ namespace: this.namespace, body }));
    this.caches?.policies.wrote(created);
    return created;
  }

  async deleteNetworkPolicy(name: string): Promise<boolean> {
    const gone = await this.gone("delete networkpolicy", () =>
      this.networking.deleteNamespacedNetworkPolicy({ name, namespace: this.namespace, propagationPolicy: "Background" }),
    );
    this.caches?.policies.deleted(name);
    return gone;
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
