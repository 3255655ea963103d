// The outbox index (issue 13): the resync finds the outboxes that may hold a task through
// `iapps:{queue}:outboxes` instead of SCANning the keyspace on every pass, and the index never
// misses an outbox that holds one (src/store/outbox.ts argues why). Runs on a single server and,
// with IAPPS_TEST_REDIS=cluster, on a Redis Cluster, where the index entry is written outside the
// write's MULTI and the outbox fence keeps a late EXEC out.

import { describe, expect, test } from "bun:test";
import type { Owner } from "../src/domain/owner.ts";
import { keys, recordTag } from "../src/store/keys.ts";
import { newEtag, RecordStore } from "../src/store/records.ts";
import { splitOutboxMembers, unindex } from "../src/store/outbox.ts";
import { relayIndexedOutboxes } from "../src/worker/resync.ts";
import { startHarness } from "./support/harness.ts";
import { CLUSTER_MODE } from "./support/redis-server.ts";
import { providerCall, syncthingConfig } from "./support/service.ts";

const h = await startHarness({ api: false });
const { redis } = h;
const context = h.context();

const owner = (name: string): Owner => ({ createdBy: name, project: null });
const update = (api: ReturnType<typeof h.instance>, who: Owner, n: number) => providerCall(api, "syncthing", "update", { principal: who, config: syncthingConfig(n) });

/** An API instance whose writes reach Redis but whose tasks never reach the queue: a writer that dies between its EXEC and its relay. */
function writerThatDiesAfterExec() {
  const api = h.instance();
  api.context.queue.addFor = async () => {
    throw new Error("the writer died before it could relay its task");
  };
  // Nor within the write's MULTI.
  api.context.queue.addCommands = () => {
    throw new Error("the writer died before it could relay its task");
  };
  return api;
}

/**
 * Every command Redis ran so far, by name, from INFO commandstats (summed over a cluster's
 * masters), less INFO and the cluster client's own look at the slot map (CLUSTER ...).
 */
async function commandsRun(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [, name, calls] of (await redis.admin.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name !== "info" && !name!.startsWith("cluster")) counts.set(name!, (counts.get(name!) ?? 0) + Number(calls));
  }
  return counts;
}

async function commandsOf(call: () => Promise<unknown>): Promise<Map<string, number>> {
  const before = await commandsRun();
  await call();
  const after = await commandsRun();
  const delta = new Map<string, number>();
  for (const [name, calls] of after) if (calls !== (before.get(name) ?? 0)) delta.set(name, calls - (before.get(name) ?? 0));
  return delta;
}

describe("the outbox index (issue 13)", () => {
  test("an answered write leaves neither an outbox nor an index entry", async () => {
    const api = h.instance();
    expect((await update(api, owner("alice"), 1)).status).toBe(200);
    expect(await redis.admin.exists(keys.outbox("syncthing", owner("alice")))).toBe(0);
    expect(await redis.admin.hlen(keys.outboxIndex())).toBe(0);
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["reconcile:syncthing:alice"]);
  });

  test("with no outbox owing anything, a resync pass finds none with one HSCAN, and no SCAN", async () => {
    const api = h.instance();
    for (let i = 0; i < 20; i++) expect((await update(api, owner(`user${i}`), i)).status).toBe(200);
    const commands = await commandsOf(() => relayIndexedOutboxes(context.commands, context.queue));
    expect(Object.fromEntries(commands)).toEqual({ hscan: 1 });
  });

  test("a task whose writer died after its EXEC is indexed, and a pass moves it and empties the index", async () => {
    const api = writerThatDiesAfterExec();
    const who = owner("bob");
    expect((await update(api, who, 1)).status).toBe(200);
    expect(splitOutboxMembers(await redis.admin.smembers(keys.outbox("syncthing", who))).tasks).toEqual(["reconcile:syncthing:bob"]);
    expect(Object.keys(await redis.admin.hgetall(keys.outboxIndex()))).toEqual([recordTag("syncthing", who)]);

    const commands = await commandsOf(async () => expect(await relayIndexedOutboxes(context.commands, context.queue)).toBe(1));
    expect(commands.get("scan")).toBeUndefined();
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["reconcile:syncthing:bob"]);
    expect(await redis.admin.exists(keys.outbox("syncthing", who))).toBe(0);
    expect(await redis.admin.hlen(keys.outboxIndex())).toBe(0);
  });

  test("an entry goes only when its outbox is empty and nobody indexed it again since it was read", async () => {
    const who = owner("carol");
    const [outbox, tag] = [keys.outbox("syncthing", who), recordTag("syncthing", who)];
    const client = await context.commands();
    // A task is left: the entry stays.
    await redis.admin.hset(keys.outboxIndex(), tag, "v1");
    await redis.admin.sadd(outbox, "reconcile:syncthing:carol n1");
    expect(await unindex(client, "syncthing", who, "v1")).toBe(1);
    expect(await redis.admin.hget(keys.outboxIndex(), tag)).toBe("v1");
    // Empty, but a writer indexed it again (v2) after v1 was read: the entry stays.
    await redis.admin.hset(keys.outboxIndex(), tag, "v2");
    expect(await unindex(client, "syncthing", who, "v1", ["reconcile:syncthing:carol n1"])).toBe(0);
    expect(await redis.admin.hget(keys.outboxIndex(), tag)).toBe("v2");
    // Empty, and still the version read: it goes.
    expect(await unindex(client, "syncthing", who, "v2")).toBe(0);
    expect(await redis.admin.hlen(keys.outboxIndex())).toBe(0);
  });

  test("the fence: a writer watching it cannot land a task after an empty outbox was looked at", async () => {
    const who = owner("dave");
    await context.pool.with(keys.record("syncthing", who), async (connection) => {
      await connection.send([["WATCH", keys.outboxFence("syncthing", who)]]);
      // The look (a resync, or another writer's relay) finds the outbox empty and touches the fence.
      expect(await unindex(await context.commands(), "syncthing", who, "whatever")).toBe(0);
      const replies = await connection.send([["MULTI"], ["SADD", keys.outbox("syncthing", who), "reconcile:syncthing:dave n"], ["EXEC"]]);
      expect(replies.at(-1)).toBeNull();
    });
    expect(await redis.admin.exists(keys.outbox("syncthing", who))).toBe(0);
    expect(await redis.admin.exists(keys.outboxFence("syncthing", who))).toBe(0);
  });

  test("a resync pass between a write's index entry and its EXEC: the task is never left without its entry", async () => {
    const who = owner("erin");
    let attempts = 0;
    // A store whose writer dies after its EXEC, and a resync pass right before its first EXEC.
    const store = new RecordStore(context.commands, context.pool, {
      enqueue: async () => {
        throw new Error("the writer died before it could relay its task");
      },
      beforeExec: async () => {
        if (attempts++ === 0) await relayIndexedOutboxes(context.commands, context.queue);
      },
    });
    const outcomes: boolean[] = [];
    for (;;) {
      const outcome = await store.attempt("syncthing", who, async () => ({
        commit: { record: { config: syncthingConfig(1), etag: newEtag(), jobId: "1", state: "active" as const, updatedAt: new Date().toISOString() }, enqueue: "reconcile:syncthing:erin" },
        value: null,
      }));
      outcomes.push(outcome.committed);
      if (outcome.committed) break;
    }
    // On a cluster the entry is written before the MULTI: the pass removed it, touching the fence,
    // so that EXEC failed and the next attempt indexed the record again. On a single server the
    // entry is part of the MULTI, and the pass had nothing to remove.
    expect(outcomes).toEqual(CLUSTER_MODE ? [false, true] : [true]);
    expect(attempts).toBe(outcomes.length);
    expect(splitOutboxMembers(await redis.admin.smembers(keys.outbox("syncthing", who))).tasks).toEqual(["reconcile:syncthing:erin"]);
    expect(await redis.admin.hexists(keys.outboxIndex(), recordTag("syncthing", who))).toBe(1);
    expect(await relayIndexedOutboxes(context.commands, context.queue)).toBe(1);
    expect(await redis.admin.hlen(keys.outboxIndex())).toBe(0);
  });

  test("writers dying after EXEC, writers relaying and resync passes at once: no owed task is left without its entry", async () => {
    const [dying, living] = [writerThatDiesAfterExec(), h.instance()];
    const owners = Array.from({ length: 4 }, (_, i) => owner(`racer${i}`));
    let writing = true;
    const passes = (async () => {
      while (writing) await relayIndexedOutboxes(context.commands, context.queue);
    })();
    const answers = await Promise.all(Array.from({ length: 120 }, (_, i) => update(i % 3 === 0 ? dying : living, owners[i % owners.length]!, i)));
    writing = false;
    await passes;
    expect(answers.every((r) => r.status === 200)).toBe(true);
    // Nobody writes or relays now: a task that lost its entry on the way would stay unindexed.
    for (const who of owners) {
      const owed = await redis.admin.scard(keys.outbox("syncthing", who));
      if (owed > 0) expect(await redis.admin.hexists(keys.outboxIndex(), recordTag("syncthing", who))).toBe(1);
    }
    // What the dying writers owed reaches the queue; then nothing is owed, and the index is empty.
    await relayIndexedOutboxes(context.commands, context.queue);
    for (const who of owners) expect(await redis.admin.exists(keys.outbox("syncthing", who))).toBe(0);
    expect(await redis.admin.hlen(keys.outboxIndex())).toBe(0);
    expect((await redis.admin.lrange(keys.queuePending(), 0, -1)).sort()).toEqual(owners.map((who) => `reconcile:syncthing:${who.createdBy}`).sort());
  });
});
