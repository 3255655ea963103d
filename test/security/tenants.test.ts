// Attacks of one user on another, run against the real service (API, worker, simulator, Redis)
// with only the rights a user has: the API, and everything inside their own home drive (spec
// §10). Each one worked against the service before drive metadata moved to Redis, before paths
// were walked without following links, and before pods mounted subPaths of one volume.

import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { podName } from "../../src/reconciler/objects.ts";
import { keys } from "../../src/store/keys.ts";
import type { Owner } from "../../src/domain/owner.ts";
import { makeDrive } from "../support/drives.ts";
import { eventually } from "../support/eventually.ts";
import { startHarness } from "../support/harness.ts";
import { BUN, ROOT, startProcess } from "../support/processes.ts";
import { DEVICE_A, DEVICE_B, providerCall } from "../support/service.ts";
import { runningPodOf } from "../support/pods.ts";

const appSettings = { port_min: 30000, port_max: 30300, ip_address: "10.20.30.40", relays: false, image: "example/syncthing", image_version: "7" };
const h = await startHarness({
  simulator: { namespace: "security-test" },
  storage: {},
  settings: {
    apps: { syncthing: appSettings },
    worker: { lease: "2s", resync_interval: "1h", backoff_base: "20ms", backoff_max: "200ms", max_attempts: 1000 },
  },
});
const { redis, api, kubernetes: cluster, root } = h;

const owner = (name: string): Owner => ({ createdBy: name, project: null });
const folder = (user: string, name: string) => {
  mkdirSync(join(root, `home-${user}`, name), { recursive: true });
  return `/home-${user}/${name}`;
};
const record = (user: string) => redis.admin.hgetall(keys.record("syncthing", owner(user)));

async function update(user: string, config: unknown, expected = 200) {
  const response = await providerCall(api, "syncthing", "update", { principal: owner(user), config });
  expect({ status: response.status, body: response.status === expected ? null : await response.text() }).toEqual({ status: expected, body: null });
  return (response.headers.get("etag") ?? "").slice(1, -1);
}

const runningPod = (user: string, etag: string, check?: (pod: V1Pod) => boolean) => runningPodOf(redis.admin, cluster, "syncthing", user, etag, check, 20);

/** Every file below `folder` with its content: what must not change. */
function snapshot(folder: string, prefix = ""): Record<string, string> {
  const files: Record<string, string> = {};
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) Object.assign(files, snapshot(path, `${prefix}${entry.name}/`));
    else files[prefix + entry.name] = entry.isFile() ? readFileSync(path, "utf8") : "(not a file)";
  }
  return files;
}

/** What a pod mounts: the volumes, and each mount's volume and subPath. */
function mountsOf(pod: V1Pod) {
  return {
    volumes: pod.spec!.volumes!,
    mounts: pod.spec!.containers[0]!.volumeMounts!.map((m) => ({ name: m.name, subPath: m.subPath })),
  };
}

describe("a symlink swap in alice's drive never redirects the worker into bob's (attack 1)", () => {
  test("alice swaps home-alice/Syncthing with a link to bob's while updating and resetting: bob's state is untouched", async () => {
    h.startWorker();
    // Bob, an honest user, with his Syncthing running and its state written.
    const bobEtag = await update("bob", { folders: [{ ucloudPath: folder("bob", "B"), id: "b" }], devices: [{ deviceId: DEVICE_B, label: "bob's phone" }] });
    await runningPod("bob", bobEtag);
    const bobState = join(root, "home-bob", "Syncthing");
    writeFileSync(join(bobState, "cert.pem"), "bob's private key");
    const before = snapshot(bobState);
    expect(Object.keys(before).sort()).toEqual(["cert.pem", "job_id.txt", "ucloud_config.json"]);

    // Alice: her own Syncthing, then a link to bob's state folder beside hers, swapped in a loop.
    const aliceEtag = await update("alice", { folders: [{ ucloudPath: folder("alice", "A"), id: "a" }], devices: [{ deviceId: DEVICE_A, label: "0" }] });
    await runningPod("alice", aliceEtag);
    symlinkSync(bobState, join(root, "home-alice", "evil"));
    const swapper = startProcess([join(ROOT, "test/support/swapper.ts"), join(root, "home-alice", "Syncthing"), join(root, "home-alice", "evil"), "6000"], {}, BUN);
    const attackEnds = Date.now() + 6000;
    let changes = 0;
    while (Date.now() < attackEnds) {
      // Updates rewrite ucloud_config.json and job_id.txt; resets wipe the state folder.
      if (changes % 6 === 5) expect((await providerCall(api, "syncthing", "reset", { principal: owner("alice") })).status).toBe(200);
      else await update("alice", { folders: [{ ucloudPath: "/home-alice/A", id: "a" }], devices: [{ deviceId: DEVICE_A, label: String(changes) }] });
      changes++;
      // The attack's pace, not a wait for anything: a change every 100 ms while the swapper runs.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await swapper.exited;
    expect(Number(swapper.stdout().trim())).toBeGreaterThan(1000);
    // Let what the worker still has in hand finish against the settled folders.
    await eventually(async () => (await redis.admin.llen(keys.queuePending())) === 0 && (await redis.admin.zcard(keys.queueActive())) === 0, 20, "the queue drains");

    expect(snapshot(bobState)).toEqual(before);
    expect(readFileSync(join(bobState, "ucloud_config.json"), "utf8")).not.toContain(DEVICE_A);
    // Alice's own state folder is a folder again and holds only her own files.
    const aliceState = join(root, "home-alice", "Syncthing");
    expect(readdirSync(aliceState).every((name) => ["job_id.txt", "ucloud_config.json"].includes(name))).toBe(true);
    // Every pod of alice's mounted her state by subPath of the storage volume, never bob's.
    for (const pod of await cluster.listPods("ucloud.dk/iapp-name")) {
      const { mounts } = mountsOf(pod);
      if (pod.metadata!.name === podName((await record("alice")).jobId!)) expect(mounts[0]).toEqual({ name: "ucloud-filesystem", subPath: "home-alice/Syncthing" });
    }
  });
});

describe("a file inside a drive grants nothing (attack 2)", () => {
  test("a .drive.json naming mallory owner of a drive without metadata: mallory's terminal gets a warning, not the drive", async () => {
    mkdirSync(join(root, "proj-x", "data"), { recursive: true });
    writeFileSync(join(root, "proj-x", ".drive.json"), JSON.stringify({ owner: "mallory", members: {}, locked: false }));
    const response = await providerCall(api, "terminal", "open", { principal: owner("mallory"), folder: "/proj-x/data" });
    expect(response.status).toBe(200);
    const opened = (await response.json()) as { warnings: string[] };
    expect(opened.warnings).toEqual([expect.stringContaining("/proj-x was not added to the terminal")]);
    expect(JSON.parse((await redis.admin.hget(keys.record("terminal", owner("mallory")), "config"))!)).toEqual({ folders: [] });
  });

  test("a write member who rewrites .drive.json (owner, members, lock) changes nothing", async () => {
    await makeDrive(api.context.drives, root, "proj-y", { owner: "alice", members: { bob: "write" }, locked: true }, ["data"]);
    // Bob could write the drive's files (through a terminal, had it not been locked).
    writeFileSync(join(root, "proj-y", ".drive.json"), JSON.stringify({ owner: "bob", members: { mallory: "write" }, locked: false }));
    const asBob = (await (await providerCall(api, "terminal", "open", { principal: owner("bob"), folder: "/proj-y" })).json()) as { warnings: string[] };
    expect(asBob.warnings).toEqual([expect.stringContaining("locked")]);
    await api.context.drives.setLocked("proj-y", false);
    const asMallory = (await (await providerCall(api, "terminal", "open", { principal: owner("mallory"), folder: "/proj-y" })).json()) as { warnings: string[] };
    expect(asMallory.warnings).toEqual([expect.stringContaining("you have no access to drive proj-y")]);
    expect(await api.context.drives.get("proj-y")).toMatchObject({ owner: "alice", members: { bob: "write" } });
  });

  test("a Syncthing folder on a drive a forged .drive.json 'gives' mallory is left out of her pod", async () => {
    h.startWorker();
    mkdirSync(join(root, "proj-z", "data"), { recursive: true });
    writeFileSync(join(root, "proj-z", ".drive.json"), JSON.stringify({ owner: "mallory", members: {}, locked: false }));
    const etag = await update("mallory", {
      folders: [{ ucloudPath: "/proj-z/data", id: "stolen" }, { ucloudPath: folder("mallory", "M"), id: "m" }],
      devices: [{ deviceId: DEVICE_A, label: "x" }],
    });
    const pod = await runningPod("mallory", etag);
    expect(mountsOf(pod).mounts.map((m) => m.subPath)).toEqual(["home-mallory/Syncthing", "home-mallory/M"]);
    const written = JSON.parse(readFileSync(join(root, "home-mallory", "Syncthing", "ucloud_config.json"), "utf8"));
    expect(written.folders.map((f: { ucloudPath: string }) => f.ucloudPath)).toEqual(["/home-mallory/M"]);
  });
});

describe("pods mount user data by subPath of one volume, never a hostPath inside the storage root (attack 3)", () => {
  test("Syncthing and terminal pods: one ucloud-filesystem volume of the root, a subPath per folder", async () => {
    h.startWorker();
    const etag = await update("alice", {
      folders: [{ ucloudPath: folder("alice", "A"), id: "a" }, { ucloudPath: folder("alice", "B/C"), id: "c" }],
      devices: [{ deviceId: DEVICE_A, label: "x" }],
    });
    const pod = await runningPod("alice", etag);
    expect(mountsOf(pod)).toEqual({
      volumes: [{ name: "ucloud-filesystem", hostPath: { path: root, type: "Directory" } }],
      mounts: [
        { name: "ucloud-filesystem", subPath: "home-alice/Syncthing" },
        { name: "ucloud-filesystem", subPath: "home-alice/A" },
        { name: "ucloud-filesystem", subPath: "home-alice/B/C" },
      ],
    });

    const opened = await providerCall(api, "terminal", "open", { principal: owner("alice"), folder: "/home-alice/A" });
    const { jobId, etag: terminalEtag } = (await opened.json()) as { jobId: string; etag: string };
    const terminalPod = await eventually(async () => {
      const found = await cluster.getPod(podName(jobId));
      return found?.metadata?.annotations?.["ucloud.dk/iapp-etag"] === terminalEtag && found;
    }, 20, "the terminal's pod");
    expect(mountsOf(terminalPod)).toEqual({
      volumes: [{ name: "ucloud-filesystem", hostPath: { path: root, type: "Directory" } }],
      mounts: [{ name: "ucloud-filesystem", subPath: "home-alice" }],
    });
  });

  test("a folder swapped for a link before the pod is built is not mounted at all", async () => {
    h.startWorker();
    folder("alice", "A");
    symlinkSync(join(root, "home-bob"), join(root, "home-alice", "B"));
    mkdirSync(join(root, "home-bob"), { recursive: true });
    const etag = await update("alice", {
      folders: [{ ucloudPath: "/home-alice/A", id: "a" }, { ucloudPath: "/home-alice/B", id: "b" }],
      devices: [{ deviceId: DEVICE_A, label: "x" }],
    });
    const pod = await runningPod("alice", etag);
    expect(mountsOf(pod).mounts.map((m) => m.subPath)).toEqual(["home-alice/Syncthing", "home-alice/A"]);
  });

  test("with [storage] volume_claim, the volume is that PersistentVolumeClaim", async () => {
    h.startWorker({ storage: { volume_claim: "ucloud-storage" } });
    const etag = await update("alice", { folders: [{ ucloudPath: folder("alice", "A"), id: "a" }], devices: [{ deviceId: DEVICE_A, label: "x" }] });
    const pod = await runningPod("alice", etag);
    expect(pod.spec!.volumes).toEqual([{ name: "ucloud-filesystem", persistentVolumeClaim: { claimName: "ucloud-storage" } }]);
  });
});

describe("restricted folders are never synchronised (spec §7 sensitivity)", () => {
  test("an update naming a SENSITIVE or CONFIDENTIAL folder (or one inside it) answers 400 and stores nothing", async () => {
    await makeDrive(api.context.drives, root, "proj-s", { owner: "alice", sensitivity: { secret: "CONFIDENTIAL", "open/private": "SENSITIVE" } }, ["secret/inner", "open/private"]);
    for (const [index, path] of ["/proj-s/secret", "/proj-s/secret/inner", "/proj-s/open/private"].entries()) {
      const response = await providerCall(api, "syncthing", "update", {
        principal: owner("alice"),
        config: { folders: [{ ucloudPath: "/proj-s/open", id: "o" }, { ucloudPath: path, id: `s${index}` }], devices: [] },
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({
        statusCode: 400,
        errorCode: "INVALID_CONFIGURATION",
        why: `config.folders[1].ucloudPath: Sensitive or confidential folders cannot be synchronized: ${path}`,
      });
    }
    expect(await redis.admin.exists(keys.record("syncthing", owner("alice")))).toBe(0);
    await update("alice", { folders: [{ ucloudPath: "/proj-s/open", id: "o" }], devices: [] });
  });

  test("a folder marked after it was configured is removed by the worker: new ETag, the pod restarts without it, the owner sees why", async () => {
    const running = h.startWorker();
    await makeDrive(api.context.drives, root, "proj-t", { owner: "alice" }, ["data"]);
    const mine = folder("alice", "Photos");
    const etag = await update("alice", {
      folders: [{ ucloudPath: "/proj-t/data", id: "d" }, { ucloudPath: mine, id: "m" }],
      devices: [{ deviceId: DEVICE_A, label: "x" }],
    });
    const before = await runningPod("alice", etag);
    expect(mountsOf(before).mounts).toHaveLength(3);

    await api.context.drives.mark("proj-t", "", "CONFIDENTIAL");
    await running.context.queue.add("reconcile:syncthing:alice"); // what the periodic resync does
    const pruned = await eventually(async () => {
      const now = await record("alice");
      return now.etag !== etag && now;
    }, 20, "a new version without the folder");
    expect(JSON.parse(pruned.config!).folders).toEqual([{ ucloudPath: mine, id: "m" }]);
    const after = await runningPod("alice", pruned.etag!);
    expect(mountsOf(after).mounts.map((m) => m.subPath)).toEqual(["home-alice/Syncthing", "home-alice/Photos"]);

    const view = await (await providerCall(api, "syncthing", "retrieve", { principal: owner("alice") })).json();
    expect(view).toEqual({
      etag: pruned.etag,
      config: { folders: [{ ucloudPath: mine, id: "m" }], devices: [{ deviceId: DEVICE_A, label: "x" }] },
      warnings: ["/proj-t/data was removed: Sensitive or confidential folders cannot be synchronized: /proj-t/data"],
    });
    // The owner's next write clears the warning.
    await update("alice", { folders: [{ ucloudPath: mine, id: "m" }], devices: [] });
    expect(await redis.admin.hexists(keys.record("syncthing", owner("alice")), "warnings")).toBe(0);
  });
});
