// How fast a configuration change becomes a running pod: the time from an update's answer to a
// Running pod carrying the update's ETag, over 500 updates on 100 owners (the first update of
// each owner registers its job and creates its pod; the later ones replace the pod), and the
// number of Kubernetes API calls the worker makes per update.
//
// Everything real but the cluster, which is the embedded simulator with no start delay: a
// redis-server of its own, the API (in-process, through its fetch handler), one reconciling
// worker (in-process, so its gateway can count calls) reaching the simulator over HTTP, and an
// observer watching pods through its own client. Updates go one at a time, so each latency is
// the pipeline's own: API write → queue → worker → Kubernetes → pod event.
//
// Usage: bun scripts/bench-reconcile.ts [--updates N] [--owners N]   (defaults 500, 100)

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sign } from "hono/jwt";
import { resolveConfig } from "../src/settings/config.ts";
import { httpAppFor } from "../src/runtimes/http-app.ts";
import { KubernetesGateway } from "../src/kubernetes/gateway.ts";
import { startSimulator } from "../src/kubernetes/simulator.ts";
import { ANNOTATIONS, LABELS } from "../src/reconciler/objects.ts";
import { createContext } from "../src/service/context.ts";
import { startReconcilingWorker } from "../src/worker/start.ts";
import { TestRedis } from "../test/support/redis-server.ts";
import { option } from "./options.ts";

const UPDATES = option("updates", "BENCH_UPDATES", 500);
const OWNERS = option("owners", "BENCH_OWNERS", 100);
const SECRET = "bench-reconcile-secret-0123456789";
const NAMESPACE = "bench";
const DEVICE = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";

process.env.IAPPS_LOG_LEVEL ??= "error";
const redis = await TestRedis.start();
const simulator = await startSimulator({ port: 0, startDelayMs: 0 });
// Syncthing runs only over folders its owner may write: one per update, in each owner's home drive.
const storageRoot = mkdtempSync(join(tmpdir(), "iapps-bench-storage-"));
for (let i = 0; i < UPDATES; i++) mkdirSync(join(storageRoot, `home-user-${i % OWNERS}`, `f${i}`), { recursive: true });
const settings = {
  redis: { url: redis.url },
  storage: { root: storageRoot },
  auth: { jwt_secret: SECRET },
  kubernetes: { mode: "embedded", namespace: NAMESPACE, simulator_port: simulator.port, simulator_start_delay: "0ms" },
  worker: { resync_interval: "1h" },
};
const config = resolveConfig(settings, { source: "bench", environment: {} });
const apiContext = createContext(config);
const app = httpAppFor(apiContext);
const workerContext = createContext(config, { cache: false });
const worker = startReconcilingWorker(workerContext, simulator.url);

// The observer: when did a Running pod with a given ETag first appear?
const runningAt = new Map<string, number>();
const waiters = new Map<string, () => void>();
const observer = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: simulator.url });
const stopObserver = observer.watchPods(LABELS.app, (type, pod) => {
  const etag = pod.metadata?.annotations?.[ANNOTATIONS.etag];
  if (type === "DELETED" || !etag || pod.status?.phase !== "Running" || runningAt.has(etag)) return;
  runningAt.set(etag, performance.now());
  waiters.get(etag)?.();
});

const service = await sign({ sub: "_UCloud", role: "SERVICE", exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET, "HS256");
async function update(owner: string, n: number): Promise<{ etag: string; answered: number }> {
  const response = await app.request("/ucloud/k8s/iapps/syncthing/update", {
    method: "POST",
    headers: { authorization: `Bearer ${service}` },
    body: JSON.stringify({
      principal: { createdBy: owner, project: null },
      config: { folders: [{ ucloudPath: `/home-${owner}/f${n}`, id: `f${n}` }], devices: [{ deviceId: DEVICE, label: String(n) }] },
      expectedETag: null,
    }),
  });
  if (response.status !== 200) throw new Error(`update answered ${response.status}: ${await response.text()}`);
  return { etag: response.headers.get("etag")!.slice(1, -1), answered: performance.now() };
}

function runningPod(etag: string, timeoutMs = 10_000): Promise<number> {
  const seen = runningAt.get(etag);
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no running pod with ETag ${etag} in ${timeoutMs} ms`)), timeoutMs);
    waiters.set(etag, () => {
      clearTimeout(timer);
      waiters.delete(etag);
      resolve(runningAt.get(etag)!);
    });
  });
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const describe = (name: string, values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return `${name.padEnd(28)} ${String(sorted.length).padStart(5)}  p50 ${percentile(sorted, 50).toFixed(1).padStart(6)} ms  p99 ${percentile(sorted, 99).toFixed(1).padStart(6)} ms  max ${sorted[sorted.length - 1]!.toFixed(1).padStart(6)} ms`;
};

try {
  const first: number[] = [];
  const later: number[] = [];
  const callsBefore = new Map(worker.gateway.calls);
  const started = performance.now();
  for (let i = 0; i < UPDATES; i++) {
    const owner = `user-${i % OWNERS}`;
    const { etag, answered } = await update(owner, i);
    const running = await runningPod(etag);
    (i < OWNERS ? first : later).push(running - answered);
  }
  const seconds = (performance.now() - started) / 1000;
  // Let the last pods' events settle before counting calls.
  await new Promise((r) => setTimeout(r, 300));
  const calls = [...worker.gateway.calls].map(([key, n]) => [key, n - (callsBefore.get(key) ?? 0)] as const).filter(([, n]) => n > 0);
  const total = calls.reduce((sum, [key, n]) => sum + (key.startsWith("watch") ? 0 : n), 0);
  const changing = calls.reduce((sum, [key, n]) => sum + (key.startsWith("create") || key.startsWith("delete") ? n : 0), 0);

  console.log(`\nUpdate answered → Running pod with the update's ETag (simulator start delay 0, ${UPDATES} updates on ${OWNERS} owners, one at a time, ${seconds.toFixed(1)} s)`);
  console.log(describe("all updates", [...first, ...later]));
  console.log(describe("first update of an owner", first));
  console.log(describe("later updates (pod replaced)", later));
  const all = [...first, ...later].sort((a, b) => a - b);
  console.log(`goal p50 <= 50 ms: ${percentile(all, 50) <= 50 ? "met" : "MISSED"}`);
  console.log(`\nKubernetes API calls by the worker: ${(total / UPDATES).toFixed(2)} per update, ${(changing / UPDATES).toFixed(2)} of them changing (create/delete)`);
  for (const [key, n] of calls.sort()) console.log(`  ${key.padEnd(24)} ${String(n).padStart(6)}  (${(n / UPDATES).toFixed(2)} per update)`);
} finally {
  stopObserver();
  await worker.stop();
  await workerContext.close();
  await apiContext.close();
  await simulator.stop();
  await redis.close();
  rmSync(storageRoot, { recursive: true, force: true });
}
