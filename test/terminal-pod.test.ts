// The terminal's pod follows its inactivity lease (spec §8): with `inactivity = "2s"` the pod is
// gone a few seconds after the last activity, without any request, and comes back on the next
// open. Real Redis, real storage folders, the simulator, a reconciling worker.

import { describe, expect, test } from "bun:test";
import { podName } from "../src/reconciler/objects.ts";
import { keys } from "../src/store/keys.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { alice, providerCall } from "./support/service.ts";

const h = await startHarness({
  simulator: { namespace: "terminal-test" },
  storage: { folders: ["home-alice/code"] },
  settings: { apps: { terminal: { inactivity: "2s" } }, worker: { resync_interval: "1h" } },
});
const { redis, api, kubernetes: cluster } = h;

const open = async () => {
  const response = await providerCall(api, "terminal", "open", { principal: alice, folder: "/home-alice/code" });
  expect(response.status).toBe(200);
  return (await response.json()) as { jobId: string; etag: string; warnings: string[] };
};
const activity = async () => expect((await providerCall(api, "terminal", "activity", { principal: alice })).status).toBe(200);
const phase = async (jobId: string) => (await cluster.getPod(podName(jobId)))?.status?.phase ?? "gone";

describe("the terminal's pod and its inactivity lease (spec §8)", () => {
  test("open runs a pod over the drive; it goes a few seconds after the last activity, and comes back on the next open", async () => {
    h.startWorker();
    const { jobId, warnings } = await open();
    expect(warnings).toEqual([]);
    await eventually(async () => (await phase(jobId)) === "Running", 10, "the terminal runs");
    const pod = (await cluster.getPod(podName(jobId)))!;
    expect(pod.spec!.containers[0]!.command).toEqual(["sleep", "inf"]);
    expect(pod.spec!.containers[0]!.volumeMounts).toEqual([expect.objectContaining({ mountPath: "/work/home-alice", readOnly: false })]);

    // Key presses keep it alive past the first lease. The lease is a Redis key with a TTL: its
    // time passes for real, and the test waits to see that the pod does not go meanwhile.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      await activity();
    }
    expect(await phase(jobId)).toBe("Running");

    // Then nothing: no request reaches the service, and the pod goes once the lease runs out.
    const lastActivity = Date.now();
    await eventually(async () => (await phase(jobId)) === "gone", 10, "the pod goes after the lease");
    expect(Date.now() - lastActivity).toBeGreaterThanOrEqual(1500);
    // The reconciler records the job's state right after the deletion it sees through: one write later.
    await eventually(async () => (await redis.admin.hget(keys.job(jobId), "state")) === "SUSPENDED", 5, "the job is SUSPENDED");

    // The next open brings it back, for the same job.
    const again = await open();
    expect(again.jobId).toBe(jobId);
    await eventually(async () => (await phase(jobId)) === "Running", 10, "the terminal runs again");
  });
});
