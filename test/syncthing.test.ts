// Syncthing, complete (spec §7): the folders it may use, its state files, its port, and the shape
// of its pod, services and network policy; with real Redis, real storage folders, the simulator
// and real reconciling workers.

import { describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { foldersHash } from "../src/apps/syncthing.ts";
import { podName, policyName } from "../src/reconciler/objects.ts";
import { keys } from "../src/store/keys.ts";
import type { Owner } from "../src/domain/owner.ts";
import { eventually } from "./support/eventually.ts";
import { type DriveSpec, makeDrive } from "./support/drives.ts";
import { startHarness } from "./support/harness.ts";
import { DEVICE_A, DEVICE_B, providerCall } from "./support/service.ts";
import { runningPodOf } from "./support/pods.ts";

const appSettings = { port_min: 30000, port_max: 30300, ip_address: "10.20.30.40", relays: false, image: "example/syncthing", image_version: "7" };
const h = await startHarness({
  simulator: { namespace: "syncthing-test" },
  storage: {},
  settings: { apps: { syncthing: appSettings }, worker: { lease: "2s", resync_interval: "1h" } },
});
const { redis, api, kubernetes: cluster, root } = h;

const owner = (name: string): Owner => ({ createdBy: name, project: null });
const folder = (user: string, name: string) => {
  mkdirSync(join(root, `home-${user}`, name), { recursive: true });
  return `/home-${user}/${name}`;
};
const sharedDrive = async (id: string, drive: DriveSpec) => {
  await makeDrive(api.context.drives, root, id, drive, ["data"]);
  return `/${id}/data`;
};

async function update(user: string, config: unknown) {
  const response = await providerCall(api, "syncthing", "update", { principal: owner(user), config });
  expect(response.status).toBe(200);
  return response.headers.get("etag")!.slice(1, -1);
}

const record = (user: string) => redis.admin.hgetall(keys.record("syncthing", owner(user)));

const runningPod = (user: string, etag: string, check?: (pod: V1Pod) => boolean) => runningPodOf(redis.admin, cluster, "syncthing", user, etag, check, 15);

describe("which folders it runs with (spec §7)", () => {
  test("only folders the owner may write: the rest are left out; with none, or no device, it does not run", async () => {
    h.startWorker();
    const mine = folder("alice", "Documents");
    const readOnly = await sharedDrive("proj-read", { owner: "bob", members: { alice: "read" } });
    const writable = await sharedDrive("proj-write", { owner: "bob", members: { alice: "write" } });
    const config = {
      folders: [
        { ucloudPath: mine, id: "docs" },
        { ucloudPath: readOnly, id: "ro" },
        { ucloudPath: writable, id: "rw" },
        { ucloudPath: "/home-alice/missing", id: "gone" },
      ],
      devices: [{ deviceId: DEVICE_A, label: "laptop" }],
    };
    const etag = await update("alice", config);
    const pod = await runningPod("alice", etag);
    expect(pod.metadata!.annotations!["ucloud.dk/syncthingFolders"]).toBe(foldersHash([{ ucloudPath: mine }, { ucloudPath: writable }]));
    const mounts = pod.spec!.containers[0]!.volumeMounts!.map((m) => m.mountPath);
    expect(mounts).toEqual(["/syncthing-state", "/work/0", "/work/1"]);

    const { jobId } = await record("alice");
    await update("alice", { folders: [{ ucloudPath: readOnly, id: "ro" }], devices: config.devices });
    await eventually(async () => (await cluster.getPod(podName(jobId!))) === null, 10, "no pod without a writable folder");
    await update("alice", { folders: [{ ucloudPath: mine, id: "docs" }], devices: [] });
    await eventually(async () => (await redis.admin.hget(keys.job(jobId!), "state")) === "SUSPENDED", 10, "no pod without a device");
    expect(await cluster.getPod(podName(jobId!))).toBeNull();
  });

  test("a folder's drive locked after the pod runs: the pod is replaced without it, or stopped when none remain", async () => {
    const running = h.startWorker();
    const shared = await sharedDrive("proj-1", { owner: "alice" });
    const mine = folder("alice", "Photos");
    const devices = [{ deviceId: DEVICE_A, label: "laptop" }];
    const etag = await update("alice", { folders: [{ ucloudPath: shared, id: "p" }, { ucloudPath: mine, id: "m" }], devices });
    const before = await runningPod("alice", etag);

    await api.context.drives.setLocked("proj-1", true);
    await running.context.queue.add("reconcile:syncthing:alice"); // what the periodic resync does
    const after = await runningPod("alice", etag, (pod) => pod.metadata!.uid !== before.metadata!.uid);
    expect(after.metadata!.annotations!["ucloud.dk/syncthingFolders"]).toBe(foldersHash([{ ucloudPath: mine }]));

    await makeDrive(api.context.drives, root, "home-alice", { owner: "alice", locked: true });
    await running.context.queue.add("reconcile:syncthing:alice");
    const { jobId } = await record("alice");
    await eventually(async () => (await cluster.getPod(podName(jobId!))) === null, 10, "the pod stops");
  });
});

describe("state folder (spec §7)", () => {
  test("ucloud_config.json (accessible folders, ids filled in, devices) and job_id.txt, written atomically", async () => {
    h.startWorker();
    const a = folder("alice", "A");
    const b = folder("alice", "B");
    const devices = [{ deviceId: DEVICE_A, label: "laptop" }, { deviceId: DEVICE_B, label: "phone" }];
    const etag = await update("alice", { folders: [{ ucloudPath: a, id: "" }, { ucloudPath: b, id: "b", path: "/some/where" }, { ucloudPath: "/nope/x", id: "n" }], devices });
    await runningPod("alice", etag);
    const state = join(root, "home-alice", "Syncthing");
    const written = JSON.parse(readFileSync(join(state, "ucloud_config.json"), "utf8"));
    expect(written.folders).toEqual([
      { id: foldersId(a), ucloudPath: a },
      { id: "b", ucloudPath: b, path: "/some/where" },
    ]);
    expect(written.devices).toEqual(devices);
    expect(readFileSync(join(state, "job_id.txt"), "utf8").trim()).toBe((await record("alice")).jobId!);
    expect(readdirSync(state).sort()).toEqual(["job_id.txt", "ucloud_config.json"]);
  });

  test("reset deletes and recreates the state folder", async () => {
    h.startWorker();
    const etag = await update("alice", { folders: [{ ucloudPath: folder("alice", "A"), id: "a" }], devices: [{ deviceId: DEVICE_A, label: "x" }] });
    await runningPod("alice", etag);
    const state = join(root, "home-alice", "Syncthing");
    writeFileSync(join(state, "config.xml"), "<syncthing-keys/>");
    const { jobId } = await record("alice");
    expect((await providerCall(api, "syncthing", "reset", { principal: owner("alice") })).status).toBe(200);
    // The worker wipes it once the old pod is gone (the default configuration does not run).
    await eventually(async () => existsSync(state) && !readdirSync(state).includes("config.xml") && state, 10, "the state folder is wiped");
    expect(await cluster.getPod(podName(jobId!))).toBeNull();
    // The marker goes right after the wipe, in the same reconcile.
    await eventually(async () => (await redis.admin.exists(keys.resetPending("syncthing", owner("alice")))) === 0, 10, "the reset marker is cleared");
    expect(existsSync(join(state, "config.xml"))).toBe(false);
  });

  test("a reset's wipe waits until no pod runs: a running pod is never wiped under", async () => {
    // No worker yet: the reset is stored and its wipe owed.
    const etag = await update("alice", { folders: [{ ucloudPath: folder("alice", "A"), id: "a" }], devices: [{ deviceId: DEVICE_A, label: "x" }] });
    expect(etag).toBeTruthy();
    const state = join(root, "home-alice", "Syncthing");
    mkdirSync(state, { recursive: true });
    writeFileSync(join(state, "config.xml"), "<syncthing-keys/>");
    expect((await providerCall(api, "syncthing", "reset", { principal: owner("alice") })).status).toBe(200);
    expect(readdirSync(state)).toContain("config.xml");
    expect(await redis.admin.get(keys.resetPending("syncthing", owner("alice")))).toBe((await record("alice")).etag!);
    h.startWorker();
    await eventually(async () => !readdirSync(state).includes("config.xml") && state, 10, "the worker wipes it");
  });
});

function foldersId(ucloudPath: string) {
  return new Bun.CryptoHasher("sha256").update(ucloudPath).digest("hex").slice(0, 16);
}

describe("the pod, its services and network policy (spec §7)", () => {
  test("env, mounts, requests, annotations, image; the extra service with externalIPs; ingress rules", async () => {
    h.startWorker();
    const etag = await update("alice", { folders: [{ ucloudPath: folder("alice", "A"), id: "a" }], devices: [{ deviceId: DEVICE_A, label: "x" }] });
    const pod = await runningPod("alice", etag);
    const container = pod.spec!.containers[0]!;
    const port = Number(pod.metadata!.annotations!["ucloud.dk/syncthingPort"]);
    expect(port).toBeGreaterThanOrEqual(30000);
    expect(port).toBeLessThan(30300);
    expect(container.image).toBe("example/syncthing:7");
    expect(pod.metadata!.annotations).toMatchObject({ "ucloud.dk/iapp-version": "7", "ucloud.dk/syncthingUcxVersion": "1" });
    expect(container.env).toEqual(
      expect.arrayContaining([
        { name: "SYNCTHING_PORT", value: String(port) },
        { name: "SYNCTHING_RELAYS", value: "false" },
        { name: "STATE_DIR", value: "/syncthing-state" },
      ]),
    );
    expect(container.resources).toEqual({ requests: { cpu: "400m", memory: "2000000000" } });
    // Spec §7, §10: the storage root is the one volume; state and folders are subPath mounts of it.
    expect(pod.spec!.volumes).toEqual([{ name: "ucloud-filesystem", hostPath: { path: root, type: "Directory" } }]);
    expect(container.volumeMounts).toEqual([
      { name: "ucloud-filesystem", mountPath: "/syncthing-state", subPath: "home-alice/Syncthing", readOnly: false },
      { name: "ucloud-filesystem", mountPath: "/work/0", subPath: "home-alice/A", readOnly: false },
    ]);

    const { jobId } = await record("alice");
    const service = await cluster.getService(`j-${jobId}-syncthing`);
    expect(service?.spec).toMatchObject({ type: "ClusterIP", externalIPs: ["10.20.30.40"], selector: { "ucloud.dk/jobId": jobId } });
    expect(service?.spec?.ports).toEqual([expect.objectContaining({ name: "syncthing", protocol: "TCP", port, targetPort: port })]);
    expect(service?.metadata?.ownerReferences?.[0]?.uid).toBe(pod.metadata!.uid!);
    const policy = await cluster.getNetworkPolicy(policyName(jobId!));
    const open = policy!.spec!.ingress!.find((rule) => rule._from?.some((peer) => peer.ipBlock?.cidr === "0.0.0.0/0"));
    expect(open?.ports?.map((p) => p.port).sort()).toEqual([8435, port].sort());
  });
});

describe("ports (spec §7)", () => {
  test("never 8435, and freed when the pod goes", async () => {
    const around = { ...appSettings, port_min: 8434, port_max: 8437 };
    const running = h.startWorker({ apps: { syncthing: around } });
    const devices = [{ deviceId: DEVICE_A, label: "x" }];
    const ports: number[] = [];
    for (const user of ["u1", "u2"]) {
      const etag = await update(user, { folders: [{ ucloudPath: folder(user, "A"), id: "a" }], devices });
      ports.push(Number((await runningPod(user, etag)).metadata!.annotations!["ucloud.dk/syncthingPort"]));
    }
    expect(ports.sort()).toEqual([8434, 8436]);
    // The range is exhausted: a third owner's pod waits, with the reason on its job, and no retry storm.
    await update("u3", { folders: [{ ucloudPath: folder("u3", "A"), id: "a" }], devices });
    const { jobId } = await record("u3");
    await eventually(async () => ((await redis.admin.hget(keys.job(jobId!), "status")) ?? "").includes("No free Syncthing port"), 10, "the job says why");
    // Nothing to wait for: that no retry is scheduled shows only after a while.
    await new Promise((r) => setTimeout(r, 500));
    expect(await running.context.queue.stats()).toMatchObject({ pending: 0, retrying: 0, scheduled: 0, dead: 0 });
    expect(await cluster.getPod(podName(jobId!))).toBeNull();
    // u1 stops running (no devices): its port is freed, and u3 gets it at the next reconcile.
    await update("u1", { folders: [], devices: [] });
    const u1Job = (await record("u1")).jobId!;
    await eventually(async () => (await redis.admin.hget(keys.portsByJob("syncthing"), u1Job)) === null, 10, "u1's port is freed");
    await running.context.queue.add("reconcile:syncthing:u3");
    const u3 = await runningPod("u3", (await record("u3")).etag!);
    expect([8434, 8436]).toContain(Number(u3.metadata!.annotations!["ucloud.dk/syncthingPort"]));
  });

  test("3 workers, 200 owners updated at once: all ports distinct and in range", async () => {
    const env = { IAPPS_APPS_SYNCTHING_PORT_MIN: "30000", IAPPS_APPS_SYNCTHING_PORT_MAX: "30300", IAPPS_WORKER_RESYNC_INTERVAL: "1h" };
    for (let w = 0; w < 3; w++) h.startWorkerProcess(env);
    const users = Array.from({ length: 200 }, (_, i) => `user${i}`);
    const devices = [{ deviceId: DEVICE_A, label: "x" }];
    const answers = await Promise.all(users.map((u) => providerCall(api, "syncthing", "update", { principal: owner(u), config: { folders: [{ ucloudPath: folder(u, "A"), id: "a" }], devices } })));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    const pods = await eventually(async () => {
      const all = (await cluster.listPods("ucloud.dk/iapp-name=syncthing")).filter((p) => p.status?.phase === "Running");
      return all.length === 200 && all;
    }, 45, "200 running pods");
    const ports = pods.map((p) => Number(p.metadata!.annotations!["ucloud.dk/syncthingPort"]));
    expect(new Set(ports).size).toBe(200);
    expect(ports.every((p) => p >= 30000 && p < 30300 && p !== 8435)).toBe(true);
    expect(await redis.admin.hlen(keys.portsByPort("syncthing"))).toBe(200);
  }, 60_000);
});
