// What one update costs Redis (issue 14: an update in the fewest round trips and commands the
// guarantees allow; issue 13: creating an owner at a constant, small number of commands). Counted
// server side from INFO commandstats, scripts' own commands included, so that a change that adds
// a command to the write path fails here. Runs on a single server and, with
// IAPPS_TEST_REDIS=cluster, on a Redis Cluster (summed over its masters).

import { describe, expect, test } from "bun:test";
import type { Owner } from "../src/domain/owner.ts";
import { startHarness } from "./support/harness.ts";
import { CLUSTER_MODE } from "./support/redis-server.ts";
import { cacheLive, providerCall, syncthingConfig } from "./support/service.ts";

const h = await startHarness({ api: false });
const { redis } = h;

const owner = (name: string): Owner => ({ createdBy: name, project: null });
/** A configuration without folders: Syncthing's admission reads a folder's drive, which is not the write's to count. */
const config = (n: number) => ({ folders: [], devices: n % 2 === 0 ? [] : syncthingConfig(n).devices });
const update = (api: ReturnType<typeof h.instance>, who: Owner, n: number) => providerCall(api, "syncthing", "update", { principal: who, config: config(n) });

/** An instance past its first requests (connections made, scripts loaded), its cache subscribed. */
async function warmInstance() {
  const api = h.instance();
  await cacheLive(api);
  for (let i = 0; i < 3; i++) expect((await update(api, owner(`warm-up-${i}`), i)).status).toBe(200);
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
  test("an update of an existing record whose job is alive: 25 commands, scripts' own included", async () => {
    const api = await warmInstance();
    const who = owner("alice");
    expect((await update(api, who, 1)).status).toBe(200);
    // Its task is still pending (no worker here): the second update's add finds it there.
    const commands = await commandsOf(async () => expect((await update(api, who, 2)).status).toBe(200));
    // Before the transaction: the job's state (one field). The transaction: WATCH with the reads
    // (one round trip), MULTI with the write's script and (single server) the outbox index entry,
    // EXEC (one round trip). Then the relay: the queue's add script, and the audit entry with the
    // outbox emptied and the index entry dropped (one script on a single server).
    const expected: Record<string, number> = {
      hget: 2, // the job's state; the index entry compared before it is dropped
      watch: 1,
      hgetall: 1,
      get: 1,
      multi: 1,
      evalsha: 3, // write-record, the queue's add, the relay's end
      hset: 3, // the record, the outbox index entry, the task's request id
      lpush: 2, // the ETag log, the history
      ltrim: 2,
      pexpire: 1,
      publish: 1,
      sadd: 2, // the outbox, the queue's dirty set
      exec: 1,
      xadd: 1,
      srem: 1,
      scard: 1,
      hdel: 1,
    };
    if (CLUSTER_MODE) {
      // The index entry and the audit entry are in other slots: written with commands of their
      // own, and the outbox's emptying touches the fence a writer there watches.
      expected.evalsha = 4; // write-record, the add, release-outbox, compare-and-hdel
      expected.set = 1;
      expected.del = 1;
    }
    expect(commands).toEqual(expected);
    expect(total(commands)).toBe(CLUSTER_MODE ? 28 : 25);
  });

  test("a first update (a new owner: the job claim taken, the job registered, the claim given back in the write, the specification's template kept): 38 commands", async () => {
    const api = await warmInstance();
    const commands = await commandsOf(async () => expect((await update(api, owner("bob"), 1)).status).toBe(200));
    console.log(`a first update: ${total(commands)} Redis commands`, commands);
    // Registering the job includes one HSETNX that keeps its specification's template
    // (src/ucloud/embedded-registry.ts), sent in the INCR's round trip.
    expect(total(commands)).toBe(CLUSTER_MODE ? 41 : 38);
  });
});
