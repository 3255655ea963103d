// What one update costs Redis (issue 14: an update in the fewest round trips and commands the
// guarantees allow; issue 13: creating an owner at a constant, small number of commands). Counted
// server side from INFO commandstats, scripts' own commands included, so that a change that adds
// a command to the write path fails here. Runs on a single server and, with
// IAPPS_TEST_REDIS=cluster, on a Redis Cluster (summed over its masters). Also: a single server's
// write, whose task and audit entry join its MULTI, when the server's script cache was flushed.

import { describe, expect, test } from "bun:test";
import type { Owner } from "../src/domain/owner.ts";
import { keys } from "../src/store/keys.ts";
import { startHarness } from "./support/harness.ts";
import { CLUSTER_MODE } from "./support/redis-server.ts";
import { cacheLive, providerCall, syncthingConfig } from "./support/service.ts";

const h = await startHarness({ api: false });
const { redis } = h;

const owner = (name: string): Owner => ({ createdBy: name, project: null });
/** A configuration without folders: Syncthing's admission reads a folder's drive, which is not the write's to count. */
const config = (n: number) => ({ folders: [], devices: n % 2 === 0 ? [] : syncthingConfig(n).devices });
const update = (api: ReturnType<typeof h.instance>, who: Owner, n: number) => providerCall(api, "syncthing", "update", { principal: who, config: config(n) });

/**
 * An instance past its first requests (connections made, scripts loaded, the first write of a
 * cached record's probe of the server made: records.ts), its cache subscribed.
 */
async function warmInstance() {
  const api = h.instance();
  await cacheLive(api);
  for (let i = 0; i < 3; i++) expect((await update(api, owner(`warm-up-${i}`), i)).status).toBe(200);
  expect((await update(api, owner("warm-up-0"), 3)).status).toBe(200);
  return api;
}

/**
 * Every command Redis ran so far, by name, from INFO commandstats (summed over a cluster's
 * masters), less INFO, PING (health checks that may fall in between) and a cluster client's
 * look at the slot map (CLUSTER ...).
 */
async function commandsRun(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [, name, calls] of (await redis.admin.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (name !== "info" && name !== "ping" && !name!.startsWith("cluster")) counts.set(name!, (counts.get(name!) ?? 0) + Number(calls));
  }
  return counts;
}

async function commandsOf(call: () => Promise<unknown>): Promise<Record<string, number>> {
  const before = await commandsRun();
  await call();
  const after = await commandsRun();
  const delta: Record<string, number> = {};
  for (const [name, calls] of after) if (calls !== (before.get(name) ?? 0)) delta[name] = calls - (before.get(name) ?? 0);
  return delta;
}

const total = (commands: Record<string, number>) => Object.values(commands).reduce((sum, n) => sum + n, 0);

describe("the Redis commands of one update (issues 13 and 14)", () => {
  test("an update of an existing record whose job is alive: 17 commands (a cluster's: 28), scripts' own included", async () => {
    const api = await warmInstance();
    const who = owner("alice");
    expect((await update(api, who, 1)).status).toBe(200);
    // Its task is still pending (no worker here): the second update's add finds it there.
    const commands = await commandsOf(async () => expect((await update(api, who, 2)).status).toBe(200));
    // The record is in the replica's cache, so the transaction is one round trip: WATCH, the guard
    // (a script that reads the record's ETag, state and job and the job's state: one field each),
    // then MULTI with the queue's add and the write's own plain commands (the audit entry's XADD
    // among them), EXEC. Nothing after EXEC.
    const single: Record<string, number> = {
      watch: 1,
      eval: 1, // the guard
      hmget: 1, // the record's etag, state and jobId, in the guard
      hget: 1, // the job's state, in the guard
      multi: 1,
      evalsha: 1, // the queue's add
      hset: 2, // the record, the task's request id
      lpush: 2, // the ETag log, the history
      ltrim: 2,
      pexpire: 1,
      publish: 1,
      sadd: 1, // the queue's dirty set
      exec: 1,
      xadd: 1,
    };
    // On a cluster the queue and the audit stream live in other slots: the MULTI puts the task and
    // the entry in the record's outbox, the index entry is written with a command of its own, and
    // the relay after EXEC adds the task, appends the entry, empties the outbox (touching the
    // fence a writer there watches) and drops the index entry.
    const cluster: Record<string, number> = {
      hget: 2, // the job's state; the index entry compared before it is dropped
      watch: 1,
      hgetall: 1,
      get: 1,
      multi: 1,
      evalsha: 4, // write-record, the add, release-outbox, compare-and-hdel
      hset: 3, // the record, the outbox index entry, the task's request id
      lpush: 2,
      ltrim: 2,
      pexpire: 1,
      publish: 1,
      sadd: 2, // the outbox, the queue's dirty set
      exec: 1,
      xadd: 1,
      srem: 1,
      scard: 1,
      set: 1,
      del: 1,
      hdel: 1,
    };
    expect(commands).toEqual(CLUSTER_MODE ? cluster : single);
    expect(total(commands)).toBe(CLUSTER_MODE ? 28 : 17);
  });

  test("a first update (a new owner: the job claim taken, the job registered, the claim given back in the write, the specification's template kept): 30 commands (a cluster's: 41)", async () => {
    const api = await warmInstance();
    const commands = await commandsOf(async () => expect((await update(api, owner("bob"), 1)).status).toBe(200));
    console.log(`a first update: ${total(commands)} Redis commands`, commands);
    // Registering the job includes one HSETNX that keeps its specification's template
    // (src/ucloud/embedded-registry.ts), sent in the INCR's round trip.
    expect(total(commands)).toBe(CLUSTER_MODE ? 41 : 30);
  });
});

// A single server's: on a cluster the write takes the outbox, and the queue's keys and the stream live in other slots.
describe.skipIf(CLUSTER_MODE)("a flushed script cache (SCRIPT FLUSH) on the way of a single server's write", () => {
  const pending = () => redis.admin.lrange(keys.queuePending(), 0, -1);
  const fresh = async () => {
    await redis.admin.del(keys.queuePending(), keys.queueDirty(), keys.audit());
    await redis.admin.script("FLUSH");
  };
  test("the update lands once, with its task and one audit entry, when the server lacks the queue's add", async () => {
    const api = await warmInstance();
    const who = owner("carol");
    expect((await update(api, who, 1)).status).toBe(200);
    // The write itself is plain commands: it lands; the add's NOSCRIPT among the EXEC's replies
    // has its task added after EXEC, by the queue's own path (which loads the script).
    await fresh();
    expect((await update(api, who, 2)).status).toBe(200);
    expect(await pending()).toEqual(["reconcile:syncthing:carol"]);
    expect(await redis.admin.xlen(keys.audit())).toBe(1);
    expect(await redis.admin.llen(keys.history("syncthing", who))).toBe(2);
    // The queue's own path loaded the script again: the next write's add lands in its MULTI.
    await redis.admin.del(keys.queuePending(), keys.queueDirty());
    expect((await update(api, who, 3)).status).toBe(200);
    expect(await pending()).toEqual(["reconcile:syncthing:carol"]);
  });
});
