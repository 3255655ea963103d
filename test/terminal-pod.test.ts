// The terminal's pod follows its inactivity lease (spec §8): with `inactivity = "2s"` the pod is
// gone a few seconds after the last activity, without any request, and comes back on the next
// open. Real Redis, real storage folders, the simulator, a reconciling worker.

import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig } from "../src/settings/config.ts";
import { KubernetesGateway } from "../src/kubernetes/gateway.ts";
import { type RunningSimulator, startSimulator } from "../src/kubernetes/simulator.ts";
import { podName } from "../src/reconciler/objects.ts";
import { createContext, type ServiceContext } from "../src/service/context.ts";
import { keys } from "../src/store/keys.ts";
import { type ReconcilingWorker, startReconcilingWorker } from "../src/worker/start.ts";
import { eventually } from "./support/eventually.ts";
import { TestRedis } from "./support/redis-server.ts";
import { alice, type Instance, providerCall, startInstance } from "./support/service.ts";

setDefaultTimeout(60_000);

const NAMESPACE = "terminal-test";
let redis: TestRedis;
let simulator: RunningSimulator;
let api: Instance;
let cluster: KubernetesGateway;
let worker: { reconciling: ReconcilingWorker; context: ServiceContext };
let root: string;

beforeAll(async () => {
  redis = await TestRedis.start();
  simulator = await startSimulator({ port: 0, startDelayMs: 20 });
  root = mkdtempSync(join(tmpdir(), "iapps-terminal-"));
  mkdirSync(join(root, "home-alice", "code"), { recursive: true });
  const settings = {
    redis: { url: redis.url },
    storage: { root },
    apps: { terminal: { inactivity: "2s" } },
    kubernetes: { mode: "embedded", namespace: NAMESPACE, simulator_port: simulator.port },
    worker: { resync_interval: "1h" },
  };
  api = startInstance(redis.url, settings);
  const context = createContext(resolveConfig(settings, { source: "test", environment: {} }), { cache: false });
  worker = { reconciling: startReconcilingWorker(context, simulator.url), context };
  cluster = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: simulator.url });
});

afterAll(async () => {
  await worker.reconciling.stop();
  await worker.context.close();
  await api.close();
  await simulator.stop();
  await redis.close();
  rmSync(root, { recursive: true, force: true });
});

const open = async () => {
  const response = await providerCall(api, "terminal", "open", { principal: alice, folder: "/home-alice/code" });
  expect(response.status).toBe(200);
  return (await response.json()) as { jobId: string; etag: string; warnings: string[] };
};
const activity = async () => expect((await providerCall(api, "terminal", "activity", { principal: alice })).status).toBe(200);
const phase = async (jobId: string) => (await cluster.getPod(podName(jobId)))?.status?.phase ?? "gone";

describe("the terminal's pod and its inactivity lease (spec §8)", () => {
  test("open runs a pod over the drive; it goes a few seconds after the last activity, and comes back on the next open", async () => {
    const { jobId, warnings } = await open();
    expect(warnings).toEqual([]);
    await eventually(async () => (await phase(jobId)) === "Running", 10, "the terminal runs");
    const pod = (await cluster.getPod(podName(jobId)))!;
    expect(pod.spec!.containers[0]!.command).toEqual(["sleep", "inf"]);
    expect(pod.spec!.containers[0]!.volumeMounts).toEqual([expect.objectContaining({ mountPath: "/work/home-alice", readOnly: false })]);

    // Key presses keep it alive past the first lease.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      await activity();
    }
    expect(await phase(jobId)).toBe("Running");

    // Then nothing: no request reaches the service, and the pod goes once the lease runs out.
    const lastActivity = Date.now();
    await eventually(async () => (await phase(jobId)) === "gone", 10, "the pod goes after the lease");
    expect(Date.now() - lastActivity).toBeGreaterThanOrEqual(1500);
    expect(await redis.admin.hget(keys.job(jobId), "state")).toBe("SUSPENDED");

    // The next open brings it back, for the same job.
    const again = await open();
    expect(again.jobId).toBe(jobId);
    await eventually(async () => (await phase(jobId)) === "Running", 10, "the terminal runs again");
  });
});
