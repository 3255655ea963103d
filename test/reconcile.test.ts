// The reconciler against the embedded Kubernetes simulator, through the real client over HTTP
// (spec §4.5, §5, §6): pods, services and network policies follow the records.

import { describe, expect, test } from "bun:test";
import type { V1Pod } from "@kubernetes/client-node";
import { KubernetesGateway } from "../src/kubernetes/gateway.ts";
import { ANNOTATIONS, podName, policyName, serviceName } from "../src/reconciler/objects.ts";
import { reconcilerFor } from "../src/worker/start.ts";
import { keys } from "../src/store/keys.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { startProcess } from "./support/processes.ts";
import { freePort } from "./support/redis-server.ts";
import { alice, providerCall, SECRET, syncthingConfig, token } from "./support/service.ts";

const NAMESPACE = "iapps-test";
const h = await startHarness({
  simulator: { namespace: NAMESPACE, startDelayMs: 50 },
  // Drives for the Syncthing folders: alice's home drive, with the folders the tests configure.
  storage: { folders: Array.from({ length: 10 }, (_, n) => `home-alice/folder-${n}`) },
  settings: { worker: { lease: "1s", resync_interval: "1h" } },
});
const { redis, api, simulator, kubernetes: gateway, root: storageRoot } = h;

const aliceRecord = () => redis.admin.hgetall(keys.record("syncthing", alice));

async function update(n: number) {
  const response = await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(n) });
  expect(response.status).toBe(200);
  return response.headers.get("etag")!.slice(1, -1);
}

/** The running pod of alice's record once it carries `etag`. */
async function runningPod(etag: string): Promise<V1Pod> {
  return eventually(
    async () => {
      const record = await aliceRecord();
      const pod = await gateway.getPod(podName(record.jobId!));
      return pod?.metadata?.annotations?.[ANNOTATIONS.etag] === etag && pod.status?.phase === "Running" && !pod.metadata.deletionTimestamp && pod;
    },
    10,
    `a running pod with ETag ${etag}`,
  );
}

const jobState = async (jobId: string) => redis.admin.hget(keys.job(jobId), "state");

describe("pods follow the records (spec §5, §6)", () => {
  test("an update makes a pod with the record's ETag, its headless service and network policy", async () => {
    h.startWorker();
    const etag = await update(1);
    const pod = await runningPod(etag);
    const { jobId } = await aliceRecord();
    expect(pod.metadata!.name).toBe(`j-${jobId}-job-0`);
    expect(pod.metadata!.labels).toMatchObject({ "ucloud.dk/jobId": jobId, "ucloud.dk/rank": "0" });
    expect(pod.metadata!.annotations).toMatchObject({
      "ucloud.dk/iapp-etag": etag,
      "ucloud.dk/iapp-name": "syncthing",
      "ucloud.dk/iapp-version": "1.0.0",
    });
    expect(pod.spec!.restartPolicy).toBe("Never");
    expect(pod.spec!.containers[0]!.name).toBe("user-job");
    expect(pod.spec!.nodeSelector).toEqual({ "ucloud.dk/machine": "syncthing" });
    const service = await gateway.getService(serviceName(jobId!));
    expect(service?.spec?.clusterIP).toBe("None");
    expect(service?.metadata?.ownerReferences?.[0]?.uid).toBe(pod.metadata!.uid!);
    const policy = await gateway.getNetworkPolicy(policyName(jobId!));
    expect(policy?.metadata?.ownerReferences?.[0]?.uid).toBe(pod.metadata!.uid!);
    await eventually(async () => (await jobState(jobId!)) === "RUNNING", 5, "the job is RUNNING");
  });

  test("another update replaces the pod with one carrying the new ETag", async () => {
    h.startWorker();
    const first = await runningPod(await update(1));
    const etag = await update(2);
    const second = await runningPod(etag);
    expect(second.metadata!.uid).not.toBe(first.metadata!.uid);
    const { jobId } = await aliceRecord();
    const service = await gateway.getService(serviceName(jobId!));
    expect(service?.metadata?.ownerReferences?.[0]?.uid).toBe(second.metadata!.uid!);
  });

  test("restart deletes the pod and a new one (new uid) comes back with the same ETag", async () => {
    h.startWorker();
    const etag = await update(1);
    const before = await runningPod(etag);
    expect((await providerCall(api, "syncthing", "restart", { principal: alice })).status).toBe(200);
    const after = await eventually(
      async () => {
        const pod = await runningPod(etag);
        return pod.metadata!.uid !== before.metadata!.uid && pod;
      },
      10,
      "a new pod",
    );
    expect(after.metadata!.annotations![ANNOTATIONS.etag]).toBe(etag);
    expect((await aliceRecord()).etag).toBe(etag);
  });

  test("a pod deleted behind the worker's back is recreated from the pod watch, without waiting for a resync", async () => {
    h.startWorker();
    const etag = await update(1);
    const before = await runningPod(etag);
    await gateway.deletePod(before.metadata!.name!);
    const after = await eventually(async () => {
      const pod = await gateway.getPod(before.metadata!.name!);
      return pod && pod.metadata!.uid !== before.metadata!.uid && pod;
    }, 5, "the pod is back");
    expect(after.metadata!.annotations![ANNOTATIONS.etag]).toBe(etag);
  });

  test("a configuration that should not run has no pod, and its job is SUSPENDED", async () => {
    h.startWorker();
    await update(1);
    await runningPod((await aliceRecord()).etag!);
    const response = await providerCall(api, "syncthing", "update", { principal: alice, config: { folders: [], devices: [] } });
    expect(response.status).toBe(200);
    const { jobId } = await aliceRecord();
    await eventually(async () => (await gateway.getPod(podName(jobId!))) === null, 5, "the pod is gone");
    await eventually(async () => (await jobState(jobId!)) === "SUSPENDED", 5, "the job is SUSPENDED");
  });
});

describe("jobs that end (spec §4.3, §5)", () => {
  test("a job marked final detaches the record; the next update registers a new job with that update's config", async () => {
    const running = h.startWorker();
    await runningPod(await update(1));
    const { jobId: firstJob } = await aliceRecord();
    await api.context.jobs.updateState(firstJob!, "SUCCESS");
    await running.context.queue.add("reconcile:syncthing:alice");
    await eventually(async () => (await aliceRecord()).state === "detached", 5, "the record is detached");
    await eventually(async () => (await gateway.getPod(podName(firstJob!))) === null, 5, "the old pod is gone");
    const etag = await update(7);
    const record = await aliceRecord();
    expect(record.jobId).not.toBe(firstJob);
    expect(JSON.parse(record.config!)).toEqual(syncthingConfig(7));
    const pod = await runningPod(etag);
    expect(pod.metadata!.name).toBe(`j-${record.jobId}-job-0`);
  });
});

describe("pods of earlier jobs", () => {
  test("a record that got a new job before its old pod was gone: the old pod goes, and its port with it", async () => {
    const running = h.startWorker();
    await runningPod(await update(1));
    const { jobId: oldJob } = await aliceRecord();
    await running.stop();
    // The old job ends and, before any worker notices, an update registers a new one.
    await api.context.jobs.updateState(oldJob!, "FAILURE");
    const etag = await update(2);
    const { jobId: newJob } = await aliceRecord();
    expect(newJob).not.toBe(oldJob);
    expect(await gateway.getPod(podName(oldJob!))).not.toBeNull();
    h.startWorker();
    await runningPod(etag);
    await eventually(async () => (await gateway.getPod(podName(oldJob!))) === null, 10, "the old pod goes");
    expect(await redis.admin.hget(keys.portsByJob("syncthing"), oldJob!)).toBeNull();
    expect(await redis.admin.hget(keys.portsByJob("syncthing"), newJob!)).not.toBeNull();
  });
});

describe("idempotence (level-triggered)", () => {
  test("reconciling twice in a row makes no Kubernetes call that changes anything", async () => {
    const context = h.context();
    try {
      const counting = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: simulator.url });
      const reconciler = reconcilerFor(context, counting, () => {});
      await update(1);
      await reconciler.reconcile("syncthing", alice);
      expect(counting.changingCalls()).toBe(4); // pod, headless service, Syncthing's service, network policy
      await reconciler.reconcile("syncthing", alice);
      expect(counting.changingCalls()).toBe(4);
      await runningPod((await aliceRecord()).etag!);
      await reconciler.reconcile("syncthing", alice);
      await reconciler.reconcile("syncthing", alice);
      expect(counting.changingCalls()).toBe(4);
      expect(await jobState((await aliceRecord()).jobId!)).toBe("RUNNING");
    } finally {
      await context.close();
    }
  });
});

describe("a worker killed mid-restart", () => {
  test("killed between deleting and recreating a pod: after a worker restarts, the pod is there", async () => {
    const env = { IAPPS_WORKER_LEASE: "1s", IAPPS_WORKER_RESYNC_INTERVAL: "1h" };
    const crashing = h.startWorkerProcess({ ...env, TEST_CRASH_AFTER_POD_DELETE: "1" });
    const etag = await update(1);
    const before = await runningPod(etag);
    expect((await providerCall(api, "syncthing", "restart", { principal: alice })).status).toBe(200);
    expect(await crashing.exited).toBe("SIGKILL");
    expect(await gateway.getPod(before.metadata!.name!)).toBeNull();
    h.startWorkerProcess(env);
    const after = await eventually(async () => {
      const pod = await runningPod(etag);
      return pod.metadata!.uid !== before.metadata!.uid && pod;
    }, 15, "the pod is back");
    expect(after.metadata!.annotations![ANNOTATIONS.etag]).toBe(etag);
  });
});

describe("the worker's log names every object the reconciler creates or deletes", () => {
  test("an update logs the pod, service and policy it creates; a restart logs the pod's deletion, then its creation", async () => {
    const worker = h.startWorkerProcess({ IAPPS_WORKER_RESYNC_INTERVAL: "1h", IAPPS_LOG_LEVEL: "info", IAPPS_LOG_FORMAT: "json" });
    /** The worker's JSON log lines on stderr. */
    const lines = () =>
      worker
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const changes = () => lines().filter((line) => line.kind !== undefined);
    const etag = await update(1);
    const before = await runningPod(etag);
    const { jobId } = await aliceRecord();
    const pod = podName(jobId!);
    const owner = { createdBy: "alice", project: null };
    const created = await eventually(
      async () => {
        const kinds = changes().filter((line) => line.message !== undefined && String(line.message).startsWith("created"));
        // The companions come after the pod, the policy last: wait for all three kinds.
        const seen = new Set(kinds.map((line) => line.kind));
        return ["Pod", "Service", "NetworkPolicy"].every((kind) => seen.has(kind)) && kinds;
      },
      10,
      `the pod, service and policy created are logged (output: ${worker.output()})`,
    );
    expect(created).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ level: "info", message: "created a pod", app: "syncthing", owner, kind: "Pod", name: pod }),
        expect.objectContaining({ level: "info", message: "created a service", app: "syncthing", owner, kind: "Service", name: serviceName(jobId!) }),
        expect.objectContaining({ level: "info", message: "created a network policy", app: "syncthing", owner, kind: "NetworkPolicy", name: policyName(jobId!) }),
      ]),
    );

    const logged = changes().length;
    expect((await providerCall(api, "syncthing", "restart", { principal: alice })).status).toBe(200);
    await eventually(async () => (await runningPod(etag)).metadata!.uid !== before.metadata!.uid, 10, "a new pod");
    const afterRestart = await eventually(
      async () => {
        const later = changes().slice(logged);
        return later.some((line) => line.message === "created a pod") && later;
      },
      10,
      `the restart's changes are logged (output: ${worker.output()})`,
    );
    const deletion = afterRestart.findIndex((line) => line.message === "deleted a pod");
    const creation = afterRestart.findIndex((line) => line.message === "created a pod");
    expect(afterRestart[deletion]).toMatchObject({ level: "info", app: "syncthing", owner, kind: "Pod", name: pod, why: "restart" });
    expect(afterRestart[creation]).toMatchObject({ level: "info", app: "syncthing", owner, kind: "Pod", name: pod });
    expect(deletion).toBeGreaterThanOrEqual(0);
    expect(creation).toBeGreaterThan(deletion);
  });
});

describe("role all, as a newcomer runs it", () => {
  test("one process serves the API, runs the simulator and a worker: an update makes a running pod", async () => {
    const [port, simulatorPort] = [await freePort(), await freePort()];
    const all = startProcess(["src/main.ts", "all"], {
      IAPPS_REDIS_URL: redis.url,
      IAPPS_SERVER_PORT: String(port),
      IAPPS_SERVER_HOST: "127.0.0.1",
      IAPPS_KUBERNETES_SIMULATOR_PORT: String(simulatorPort),
      IAPPS_KUBERNETES_NAMESPACE: "newcomer",
      IAPPS_STORAGE_ROOT: storageRoot,
      IAPPS_AUTH_JWT_SECRET: SECRET,
    });
    const user = await token("alice");
    const call = () =>
      fetch(`http://127.0.0.1:${port}/api/iapps/syncthing/update`, {
        method: "POST",
        headers: { authorization: `Bearer ${user}` },
        body: JSON.stringify({ config: syncthingConfig(1), expectedETag: null }),
      }).then((r) => r.status, () => 0);
    await eventually(async () => (await call()) === 200, 20, "the API answers");
    const cluster = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: "newcomer", simulatorUrl: `http://127.0.0.1:${simulatorPort}` });
    const jobId = (await aliceRecord()).jobId!;
    await eventually(async () => (await cluster.getPod(podName(jobId)))?.status?.phase === "Running", 15, "the pod runs");
    all.kill("SIGTERM");
    expect(await all.exited).toBe(0);
  }, 40_000);
});
