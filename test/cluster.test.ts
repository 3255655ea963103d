// The service on a real Redis Cluster (six nodes, one replica per master): transactions in one
// hash slot each, invalidations reaching replicas subscribed on other nodes, the queue and the
// worker, the outbox relay, and no acknowledged update lost across a manual failover, nor, with
// `[redis] wait_replicas = 1`, across a master killed.

import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ANNOTATIONS } from "../src/reconciler/objects.ts";
import { keys } from "../src/store/keys.ts";
import type { Owner } from "../src/domain/owner.ts";
import { relayOutboxes } from "../src/worker/resync.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { cacheLive, DEVICE_A, type Instance, providerCall, startInstance } from "./support/service.ts";

const NAMESPACE = "iapps-cluster-test";
// Before each test the harness waits until the cluster is healthy again, then empties it.
const h = await startHarness({ redis: { cluster: {} }, simulator: { namespace: NAMESPACE, startDelayMs: 50 }, storage: {}, api: false });
const { cluster, kubernetes: gateway, root: storageRoot } = h;

/** Settings for an instance whose seed list starts at node `first` (so subscriptions land on different nodes). */
const redisSettings = (first = 0, extra: Record<string, unknown> = {}) => ({
  url: cluster.urls[first]!,
  cluster: [...cluster.urls.slice(first), ...cluster.urls.slice(0, first)],
  ...extra,
});

function instance(first = 0, extra: Record<string, unknown> = {}): Instance {
  return startInstance(cluster.urls[first]!, {
    redis: redisSettings(first, extra),
    storage: { root: storageRoot },
    kubernetes: { namespace: NAMESPACE },
  });
}

const owner = (name: string): Owner => ({ createdBy: name, project: null });
const config = (label: string) => ({ folders: [], devices: [{ deviceId: DEVICE_A, label }] });

async function update(api: Instance, who: Owner, label: string, expectedETag: string | null) {
  return providerCall(api, "syncthing", "update", { principal: who, config: config(label), expectedETag });
}

async function retrieve(api: Instance, who: Owner): Promise<{ etag: string; config: { devices: { label: string }[] } }> {
  return (await providerCall(api, "syncthing", "retrieve", { principal: who })).json() as never;
}

const etagOf = (response: Response) => response.headers.get("etag")!.slice(1, -1);

const opened: Instance[] = [];

afterEach(async () => {
  for (const api of opened.splice(0)) await api.close();
});

function open(first = 0, extra: Record<string, unknown> = {}) {
  const api = instance(first, extra);
  opened.push(api);
  return api;
}

describe("transactions stay in one hash slot", () => {
  test("records of many owners spread over every master, each written with its ETag rules", async () => {
    const api = open();
    const owners = Array.from({ length: 30 }, (_, i) => owner(`spread${i}`));
    for (const who of owners) expect((await update(api, who, "first", "initial")).status).toBe(200);
    const masters = new Set(await Promise.all(owners.map(async (who) => (await cluster.nodesOf(keys.record("syncthing", who))).master)));
    expect(masters.size).toBe(3);
    // Record, ETag log and outbox of one owner: one slot (the write would have been refused otherwise).
    const who = owners[0]!;
    const stored = await cluster.admin.hgetall(keys.record("syncthing", who));
    expect(await cluster.admin.lrange(keys.etagLog("syncthing", who), 0, 0)).toEqual([stored.etag!]);
    expect(await cluster.admin.scard(keys.outbox("syncthing", who))).toBe(0);
    expect(await cluster.admin.llen(keys.queuePending())).toBe(30);
  });

  test("two replicas (seeded on different nodes), twenty writers with the same ETag: exactly one wins", async () => {
    const [a, b] = [open(0), open(3)];
    const who = owner("race");
    const first = await update(a, who, "base", "initial");
    const etag = etagOf(first);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => update(i % 2 ? a : b, who, `w${i}`, etag)));
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
  });
});

describe("invalidations reach every replica", () => {
  test("a write through one replica is served by another, subscribed on another node, at once", async () => {
    const [a, b] = [open(0), open(4)];
    await cacheLive(a);
    await cacheLive(b);
    const who = owner("coherent");
    let etag = etagOf(await update(a, who, "v0", "initial"));
    for (let i = 1; i <= 20; i++) {
      expect((await retrieve(b, who)).etag).toBe(etag); // warm in b's cache
      etag = etagOf(await update(a, who, `v${i}`, etag));
      await eventually(async () => (await retrieve(b, who)).etag === etag, 5, `replica b serving write ${i}`);
    }
    expect(b.context.subscriber!.invalidations).toBeGreaterThanOrEqual(20);
  });
});

describe("the queue and the worker", () => {
  test("an update's task reaches the worker: the pod runs with the record's ETag", async () => {
    const api = open();
    h.startWorker({ redis: redisSettings(2), worker: { lease: "2s", resync_interval: "1h" } });
    const owners = Array.from({ length: 6 }, (_, i) => owner(`queued${i}`));
    const etags = new Map<string, string>();
    for (const who of owners) {
      // Syncthing runs with a folder to share.
      mkdirSync(join(storageRoot, `home-${who.createdBy}`, "Sync"), { recursive: true });
      const body = { principal: who, config: { ...config("run"), folders: [{ ucloudPath: `/home-${who.createdBy}/Sync`, id: "sync" }] }, expectedETag: "initial" };
      etags.set(who.createdBy, etagOf(await providerCall(api, "syncthing", "update", body)));
    }
    await eventually(
      async () => {
        const pods = await gateway.listPods("ucloud.dk/iapp-name");
        const running = new Set(pods.filter((p) => p.status?.phase === "Running").map((p) => p.metadata?.annotations?.[ANNOTATIONS.etag]));
        return [...etags.values()].every((etag) => running.has(etag));
      },
      30,
      "every owner's pod running with its ETag",
    );
    for (const pod of await gateway.listPods("ucloud.dk/iapp-name")) await gateway.deletePod(pod.metadata!.name!);
  });

  test("a task a dead writer left in the outbox is moved to the queue by the resync", async () => {
    const api = open();
    const who = owner("orphan");
    const outbox = keys.outbox("syncthing", who);
    await cluster.admin.sadd(outbox, "restart:syncthing:orphan");
    expect(await relayOutboxes(api.context.commands, api.context.queue)).toBe(1);
    expect(await cluster.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["restart:syncthing:orphan"]);
    expect(await cluster.admin.exists(outbox)).toBe(0);
  });
});

/**
 * Sequential writers, one per owner, each naming the ETag it last saw acknowledged. Answers, per
 * owner, every ETag that was acknowledged (200) or read back, in order.
 */
function writeUntil(apis: Instance[], owners: Owner[], stop: () => boolean): { acknowledged: Map<string, string[]>; done: Promise<unknown> } {
  const acknowledged = new Map<string, string[]>();
  const done = Promise.all(
    owners.map(async (who, index) => {
      const api = apis[index % apis.length]!;
      const seen: string[] = [];
      acknowledged.set(who.createdBy, seen);
      let current = "initial";
      for (let n = 0; !stop(); n++) {
        const answer = await update(api, who, `n${n}`, current).catch(() => null);
        if (answer?.status === 200) {
          current = etagOf(answer);
          seen.push(current);
        } else if (answer?.status === 409) {
          // An earlier answer was lost but its write landed: read what is there.
          const now = await retrieve(api, who).catch(() => null);
          if (now) {
            current = now.etag;
            seen.push(current);
          }
        } else {
          // A writer's pause after a failed write, not a wait for anything.
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }),
  );
  return { acknowledged, done };
}

/** Waits until every writer has had another write acknowledged since now. */
async function everyWriterWrites(acknowledged: Map<string, string[]>, when: string) {
  const now = new Map([...acknowledged].map(([name, seen]) => [name, seen.length]));
  await eventually(() => [...acknowledged].every(([name, seen]) => seen.length > now.get(name)!), 20, `every writer has a write acknowledged ${when}`);
}

/** Every owner's stored ETag is its last acknowledged one, or a later write's: never an older acknowledged one. */
async function expectNoneLost(acknowledged: Map<string, string[]>) {
  let writes = 0;
  for (const [name, seen] of acknowledged) {
    writes += seen.length;
    if (seen.length === 0) continue;
    const stored = await cluster.admin.hget(keys.record("syncthing", owner(name)), "etag");
    expect(stored).not.toBeNull();
    const index = seen.indexOf(stored!);
    // Not in the list: a write after the last acknowledged one, whose answer was lost. In the
    // list: it must be the last.
    if (index !== -1) expect({ owner: name, lostAfter: seen.length - 1 - index }).toEqual({ owner: name, lostAfter: 0 });
  }
  return writes;
}

describe("failover", () => {
  test("CLUSTER FAILOVER during writes loses no acknowledged update", async () => {
    const apis = [open(0), open(2)];
    const owners = Array.from({ length: 24 }, (_, i) => owner(`fo${i}`));
    const { master, replica } = await cluster.nodesOf(keys.record("syncthing", owners[0]!));
    expect(replica).not.toBeNull();
    let stopped = false;
    const { acknowledged, done } = writeUntil(apis, owners, () => stopped);
    await everyWriterWrites(acknowledged, "before the failover");
    const before = acknowledged.get(owners[0]!.createdBy)!.length;
    await cluster.manualFailover(replica!);
    expect((await cluster.nodesOf(keys.record("syncthing", owners[0]!))).master).toBe(replica!);
    expect(master).not.toBe(replica);
    await everyWriterWrites(acknowledged, "after the failover");
    stopped = true;
    await done;
    expect(await expectNoneLost(acknowledged)).toBeGreaterThan(owners.length);
    // The moved slots took writes again, on their new master.
    expect(acknowledged.get(owners[0]!.createdBy)!.length).toBeGreaterThan(before);
  });

  test("wait_replicas = 1: a master killed during writes loses no acknowledged update", async () => {
    const apis = [open(1, { wait_replicas: 1 }), open(3, { wait_replicas: 1 })];
    const owners = Array.from({ length: 24 }, (_, i) => owner(`kill${i}`));
    const { master } = await cluster.nodesOf(keys.record("syncthing", owners[0]!));
    let stopped = false;
    const { acknowledged, done } = writeUntil(apis, owners, () => stopped);
    await everyWriterWrites(acknowledged, "before the master dies");
    const before = acknowledged.get(owners[0]!.createdBy)!.length;
    await cluster.kill(master);
    await cluster.waitTakenOver(master);
    await everyWriterWrites(acknowledged, "after the take-over");
    stopped = true;
    await done;
    expect(await expectNoneLost(acknowledged)).toBeGreaterThan(owners.length);
    // Writes to the killed master's slots resumed on its replica.
    expect(acknowledged.get(owners[0]!.createdBy)!.length).toBeGreaterThan(before);
  });
});
