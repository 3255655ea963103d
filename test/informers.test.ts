// The worker reads the cluster from watch caches (architecture.md "Kubernetes modes", spec §9):
// a reconcile of an unchanged record makes no Kubernetes call, a write is seen before the next
// decision, and what changes in the cluster (a pod deleted, the API server restarted empty)
// brings the record's reconcile without waiting for a resync.

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig, type V1Pod } from "@kubernetes/client-node";
import type { Owner } from "../src/domain/owner.ts";
import { KubernetesGateway } from "../src/kubernetes/gateway.ts";
import { InformerCache } from "../src/kubernetes/informers.ts";
import { type RunningSimulator, startSimulator } from "../src/kubernetes/simulator.ts";
import { LABELS, podName } from "../src/reconciler/objects.ts";
import { createContext, type ServiceContext } from "../src/service/context.ts";
import { resolveConfig } from "../src/settings/config.ts";
import { keys } from "../src/store/keys.ts";
import { type ReconcilingWorker, reconcilerFor, startReconcilingWorker } from "../src/worker/start.ts";
import { eventually } from "./support/eventually.ts";
import { freePort, TestRedis } from "./support/redis-server.ts";
import { DEVICE_A, type Instance, providerCall, startInstance } from "./support/service.ts";
import { runningPodOf } from "./support/pods.ts";

const NAMESPACE = "informer-test";
let redis: TestRedis;
let simulator: RunningSimulator;
let simulatorPort: number;
let api: Instance;
let cluster: KubernetesGateway;
let root: string;

const appSettings = { port_min: 30000, port_max: 30300 };
const config = () =>
  resolveConfig(
    {
      redis: { url: redis.url },
      storage: { root },
      apps: { syncthing: appSettings },
      kubernetes: { mode: "embedded", namespace: NAMESPACE, simulator_port: simulatorPort, simulator_start_delay: "20ms" },
      worker: { lease: "2s", resync_interval: "1h", backoff_base: "20ms", backoff_max: "200ms" },
    },
    { source: "test", environment: {} },
  );

beforeAll(async () => {
  redis = await TestRedis.start();
  simulatorPort = await freePort();
  simulator = await startSimulator({ port: simulatorPort, startDelayMs: 20 });
  root = mkdtempSync(join(tmpdir(), "iapps-informers-"));
  api = startInstance(redis.url, { storage: { root }, apps: { syncthing: appSettings } });
  cluster = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: simulator.url });
});

afterAll(async () => {
  await api.close();
  await simulator.stop();
  await redis.close();
  rmSync(root, { recursive: true, force: true });
});

let running: { worker: ReconcilingWorker; context: ServiceContext } | null = null;

beforeEach(async () => {
  await redis.admin.flushall();
  api.forgetCache();
  for (const pod of await cluster.listPods(LABELS.app)) await cluster.deletePod(pod.metadata!.name!);
});

afterEach(async () => {
  if (running) {
    await running.worker.stop();
    await running.context.close();
    running = null;
  }
});

const owner = (name: string): Owner => ({ createdBy: name, project: null });

async function update(user: string, label = "x"): Promise<string> {
  mkdirSync(join(root, `home-${user}`, "A"), { recursive: true });
  const response = await providerCall(api, "syncthing", "update", {
    principal: owner(user),
    config: { folders: [{ ucloudPath: `/home-${user}/A`, id: "a" }], devices: [{ deviceId: DEVICE_A, label }] },
  });
  expect(response.status).toBe(200);
  return response.headers.get("etag")!.slice(1, -1);
}

const runningPod = (user: string, etag: string, check?: (pod: V1Pod) => boolean) => runningPodOf(redis.admin, cluster, "syncthing", user, etag, check, 15);

describe("a reconcile reads the watch caches, not the API server", () => {
  test("an unchanged record's reconcile makes no Kubernetes call; a fast second reconcile after a create creates nothing", async () => {
    const context = createContext(config(), { cache: false });
    const gateway = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: simulator.url });
    try {
      await gateway.startCaches({ selectLabel: LABELS.app, indexLabel: LABELS.owner });
      const reconciler = reconcilerFor(context, gateway, () => {});
      const etag = await update("alice");
      const calls = () => [...gateway.calls.values()].reduce((sum, n) => sum + n, 0);
      const afterStart = calls();
      await reconciler.reconcile("syncthing", owner("alice"));
      // pod, headless service, Syncthing's service, network policy: created, nothing read.
      expect(gateway.changingCalls()).toBe(4);
      expect(calls() - afterStart).toBe(4);
      // Right after, before any watch event could arrive: the cache has what was written.
      await reconciler.reconcile("syncthing", owner("alice"));
      expect(calls() - afterStart).toBe(4);
      await runningPod("alice", etag);
      // Running now, seen through the watch: every further reconcile is free.
      await eventually(async () => (await gateway.cachedPod(podName((await redis.admin.hget(keys.record("syncthing", owner("alice")), "jobId"))!)))?.status?.phase === "Running", 10, "the cache sees it running");
      const before = calls();
      for (let i = 0; i < 5; i++) await reconciler.reconcile("syncthing", owner("alice"));
      expect(calls()).toBe(before);
    } finally {
      await gateway.stopCaches();
      await context.close();
    }
  }, 30_000);
});

describe("the cache keeps the newest version it has seen", () => {
  test("a create's answer older than what a watch event already brought (the pod running) does not replace it", () => {
    const cache = new InformerCache<V1Pod>(new KubeConfig(), { path: "/api/v1/namespaces/x/pods", list: async () => ({ items: [] }), labelSelector: "a" });
    const running: V1Pod = { metadata: { name: "p", resourceVersion: "12" }, status: { phase: "Running" } };
    const created: V1Pod = { metadata: { name: "p", resourceVersion: "11" }, status: { phase: "Pending" } };
    cache.wrote(running);
    cache.wrote(created);
    expect(cache.get("p")?.status?.phase).toBe("Running");
    cache.deleted("p");
    expect(cache.get("p")).toBeNull();
    cache.wrote({ metadata: { name: "p", resourceVersion: "20" }, status: { phase: "Pending" } });
    expect(cache.get("p")?.metadata?.resourceVersion).toBe("20");
  });
});

describe("changes in the cluster bring a reconcile at once", () => {
  test("a pod deleted by someone else comes back without a resync", async () => {
    const context = createContext(config(), { cache: false });
    running = { worker: startReconcilingWorker(context, simulator.url), context };
    const etag = await update("alice");
    const first = await runningPod("alice", etag);
    await cluster.deletePod(first.metadata!.name!);
    await runningPod("alice", etag, (pod) => pod.metadata!.uid !== first.metadata!.uid);
  }, 30_000);

  test("an API server restarted empty (role all restarting): every pod is back within seconds, with no resync", async () => {
    const context = createContext(config(), { cache: false });
    running = { worker: startReconcilingWorker(context, simulator.url), context };
    const users = ["alice", "bob", "carol", "dave"];
    const etags = await Promise.all(users.map((user) => update(user)));
    await Promise.all(users.map((user, i) => runningPod(user, etags[i]!)));
    await simulator.stop();
    simulator = await startSimulator({ port: simulatorPort, startDelayMs: 20 });
    expect(await cluster.listPods(LABELS.app)).toEqual([]);
    const started = Date.now();
    await Promise.all(users.map((user, i) => runningPod(user, etags[i]!)));
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 60_000);
});
