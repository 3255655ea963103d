// The durable task queue, in Redis, with the guarantees of client-go's workqueue:
//
// - adding a task that is already pending does nothing (the dirty set);
// - adding a task that is being processed marks it to run once more afterwards;
// - a task is never processed by two workers at once (a lease token per take), nor are two tasks
//   of one (app, owner) (a restart waits for a running reconcile, and the other way round);
// - a task taken by a worker that dies is handed out again when its lease expires;
// - a failed task is retried with exponential backoff and jitter, then parked as a dead letter.
//
// Lists and sorted sets moved by Lua scripts, rather than streams: every transition touches the
// dirty set, the lease and the retry state together, and a script makes each one atomic and
// named (add, take, renew, complete, fail, promote; claim, an add that takes the task at once for
// a worker with room for it; and stats, which tells a retry's wait from a check scheduled on
// purpose): src/queue/scripts/<verb>-<number of keys>.lua.
// Times come from the Redis server's clock, so workers on machines with skewed clocks agree on
// leases and backoffs.
//
// Imports src/store/keys.ts, the script loader src/store/scripts.ts, the connection types of
// src/store/connections.ts and src/store/resp.ts only.

import { keys } from "../store/keys.ts";
import type { CommandConnection, RedisClient } from "../store/connections.ts";
import type { RespCommand, RespConnection } from "../store/resp.ts";
import { RedisScript, runOn } from "../store/scripts.ts";

/** The queue's transitions, one script each (in ./scripts, with their KEYS and ARGV). */
const scripts = {
  add: queueScript("add-6.lua"),
  take: queueScript("take-8.lua"),
  claim: queueScript("claim-8.lua"),
  renew: queueScript("renew-2.lua"),
  complete: queueScript("complete-12.lua"),
  fail: queueScript("fail-12.lua"),
  promote: queueScript("promote-12.lua"),
  replay: queueScript("replay-3.lua"),
  addAfter: queueScript("add-after-2.lua"),
  stats: queueScript("stats-5.lua"),
};

function queueScript(file: string): RedisScript {
  return new RedisScript(new URL(`./scripts/${file}`, import.meta.url));
}

const addKeys = () => [keys.queuePending(), keys.queueDirty(), keys.queueActive(), keys.queueDelayed(), keys.queueWake(), keys.queueRequestIds()];
/** add-6.lua's arguments: no request id is '' (a resync, a pod event). */
const addArgs = (id: string, requestId?: string) => [id, requestId ?? ""];
/** The keys of the scripts that move a taken task on (complete, fail, promote), in their order. */
const taskKeys = () => [
  keys.queuePending(),
  keys.queueDirty(),
  keys.queueActive(),
  keys.queueLeases(),
  keys.queueWake(),
  keys.queueAttempts(),
  keys.queueErrors(),
  keys.queueDelayed(),
  keys.queueDead(),
  keys.queueBusy(),
  keys.queueParked(),
  keys.queueRequestIds(),
];

export interface RetryPolicy {
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export interface Lease {
  id: string;
  token: string;
  /** The latest request that asked for this task, when one did (not a resync or a pod event). */
  requestId?: string;
  /** True when it was taken known to have no failed attempts (its complete has none to forget). */
  clean?: boolean;
}

export interface DeadLetter {
  id: string;
  attempts: number;
  error: string;
  failedAt: number;
  requestId?: string;
}

/** How many tasks are in each state. */
export interface QueueStats {
  /** Waiting for a worker. */
  pending: number;
  /** Being processed (under a lease). */
  active: number;
  /** Waiting out the backoff after a failed attempt. */
  retrying: number;
  /** Waiting for a time set on purpose (`addAfter`: a terminal's lease running out); healthy. */
  scheduled: number;
  /** Out of attempts: dead letters. */
  dead: number;
}

export class TaskQueue {
  constructor(
    private readonly redis: CommandConnection,
    private readonly policy: RetryPolicy,
  ) {}

  /** Adds tasks; answers how many were new (not already pending). */
  async add(...ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const redis = await this.redis();
    if (ids.length === 1) return (await scripts.add.run(redis, addKeys(), addArgs(ids[0]!))) === 0 ? 0 : 1;
    const pipeline = redis.pipeline();
    for (const id of ids) scripts.add.queue(pipeline, addKeys(), addArgs(id));
    const replies = (await pipeline.exec()) ?? [];
    let added = 0;
    for (const [error, value] of replies) {
      if (error) throw error;
      if (value !== 0) added++;
    }
    return added;
  }

  /**
   * Adds tasks on behalf of a request: `requestId` replaces the one stored for each task, since
   * several requests may coalesce into one task and its run is logged with the latest of them.
   * `on`: a transaction connection of the caller's to the queue's node (to WAIT for replicas on
   * it after).
   */
  async addFor(requestId: string | undefined, ids: string[], on?: RespConnection): Promise<number> {
    if (ids.length === 0) return 0;
    // One script per task: the request id is never seen without its task.
    const replies =
      on === undefined
        ? await Promise.all(ids.map(async (id) => scripts.add.run(await this.redis(), addKeys(), addArgs(id, requestId))))
        : await Promise.all(ids.map((id) => runOn(on, scripts.add, addKeys(), addArgs(id, requestId))));
    return replies.filter((value) => value !== 0).length;
  }

  /**
   * The commands that add tasks on behalf of a request (as addFor) within a MULTI of the caller's
   * on a single server, where the adds land with its EXEC or not at all: one plain EVALSHA of the
   * add script per task. Their replies come with the EXEC; a NOSCRIPT among them is the caller's
   * to handle (no client re-sends a script outside the transaction).
   */
  addCommands(requestId: string | undefined, ids: string[]): RespCommand[] {
    return ids.map((id) => ["EVALSHA", scripts.add.sha, scripts.add.numberOfKeys, ...addKeys(), ...addArgs(id, requestId)]);
  }

  /** Adds a task to run in `delayMs` (unless it is pending anyway): a check at a known time. */
  async addAfter(id: string, delayMs: number): Promise<void> {
    const redis = await this.redis();
    await scripts.addAfter.run(redis, [keys.queueDelayed(), keys.queueDirty()], [id, Math.max(0, Math.ceil(delayMs))]);
  }

  /** Takes up to `count` tasks under a lease of `leaseMs`; `tokenPrefix` must be unique per call. */
  async take(count: number, leaseMs: number, tokenPrefix: string): Promise<Lease[]> {
    return (await this.takeSome(count, leaseMs, tokenPrefix)).leases;
  }

  /**
   * `take`, and whether it left nothing pending (`drained`): then a worker waits for a wake-up
   * token rather than take again at once, since every task made pending since came with one.
   */
  async takeSome(count: number, leaseMs: number, tokenPrefix: string): Promise<{ leases: Lease[]; drained: boolean }> {
    const redis = await this.redis();
    const keyNames = [
      keys.queuePending(),
      keys.queueDirty(),
      keys.queueActive(),
      keys.queueLeases(),
      keys.queueWake(),
      keys.queueBusy(),
      keys.queueParked(),
      keys.queueRequestIds(),
    ];
    const reply = (await scripts.take.run(redis, keyNames, [leaseMs, tokenPrefix, count])) as (string | number)[];
    const leases: Lease[] = [];
    for (let i = 1; i < reply.length; i += 3) {
      const requestId = String(reply[i + 2]);
      leases.push({ id: String(reply[i]), token: String(reply[i + 1]), ...(requestId === "" ? {} : { requestId }) });
    }
    return { leases, drained: reply[0] === 1 };
  }

  /**
   * Adds a task as `add` does, but when it is neither pending nor running and its (app, owner) is
   * free, takes it at once under a lease of `leaseMs` with `token` (unique): the lease, or null
   * when it was only added (or was pending already). For a worker's own tasks (a watch event's
   * reconcile) while it has room to run them: no wake-up, no take.
   */
  async claim(id: string, leaseMs: number, token: string): Promise<Lease | null> {
    const redis = await this.redis();
    const keyNames = [
      keys.queuePending(),
      keys.queueDirty(),
      keys.queueActive(),
      keys.queueLeases(),
      keys.queueWake(),
      keys.queueBusy(),
      keys.queueDelayed(),
      keys.queueRequestIds(),
    ];
    const [held, requestId, failed] = (await scripts.claim.run(redis, keyNames, [id, leaseMs, token])) as [number, string | number, number?];
    if (held !== 1) return null;
    return { id, token, ...(requestId === "" ? {} : { requestId: String(requestId) }), ...(failed === 0 ? { clean: true } : {}) };
  }

  /** Extends a lease; false when the lease is no longer ours (it expired and was handed out). */
  async renew(lease: Lease, leaseMs: number): Promise<boolean> {
    const redis = await this.redis();
    return (await scripts.renew.run(redis, [keys.queueActive(), keys.queueLeases()], [lease.id, lease.token, leaseMs])) === 1;
  }

  async complete(lease: Lease): Promise<boolean> {
    return (await this.finish(lease)).held;
  }

  /**
   * Ends a run successfully (`complete`); with `rerun` (a lease's length and a new, unique token),
   * a task added again while it ran is not put back on the pending list but kept under that new
   * lease for the caller to run at once (`rerun`), unless a task of its (app, owner) waits.
   */
  async finish(lease: Lease, rerun?: { leaseMs: number; token: string }): Promise<{ held: boolean; rerun: Lease | null }> {
    const redis = await this.redis();
    const args = [lease.id, lease.token, lease.requestId === undefined ? "" : "1", lease.clean === true ? "" : "1"];
    if (rerun) args.push(String(rerun.leaseMs), rerun.token);
    const reply = (await scripts.complete.run(redis, taskKeys(), args)) as number | [number, string | number];
    if (!Array.isArray(reply)) return { held: reply === 1, rerun: null };
    const requestId = String(reply[1]);
    // Its failed attempts (if any) were forgotten just now.
    return { held: true, rerun: { id: lease.id, token: rerun!.token, ...(requestId === "" ? {} : { requestId }), clean: true } };
  }

  /** Records a failed attempt: answers what became of the task. */
  async fail(lease: Lease, error: string): Promise<"lease-lost" | "requeued" | "dead" | "delayed"> {
    const redis = await this.redis();
    const outcome = await scripts.fail.run(redis, taskKeys(), [...this.policyArgs(), lease.id, lease.token, error.slice(0, 2000)]);
    return (["lease-lost", "requeued", "dead", "delayed"] as const)[outcome as number]!;
  }

  /**
   * Promotes retries that are due and hands out tasks whose lease expired; `buried` are the
   * expired ones that ran out of attempts with it (now dead letters).
   */
  async promote(batch = 500): Promise<{ promoted: number; expired: number; buried: string[] }> {
    const redis = await this.redis();
    const [promoted, expired, buried] = (await scripts.promote.run(redis, taskKeys(), [...this.policyArgs(), batch])) as [number, number, string[]];
    return { promoted, expired, buried: buried ?? [] };
  }

  /** Blocks up to `timeoutMs` for a wake-up token, on a connection reserved for blocking. */
  async waitForWork(blocking: RedisClient, timeoutMs: number): Promise<void> {
    if (blocking.status !== "ready") {
      // Starting up or reconnecting: wait for the connection rather than fail on it.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          blocking.off("ready", done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        blocking.once("ready", done);
      });
      return;
    }
    await blocking.blpop(keys.queueWake(), Math.max(timeoutMs / 1000, 0.01));
  }

  async stats(): Promise<QueueStats> {
    const redis = await this.redis();
    const keyNames = [keys.queuePending(), keys.queueActive(), keys.queueDelayed(), keys.queueAttempts(), keys.queueDead()];
    const [pending, active, retrying, scheduled, dead] = ((await scripts.stats.run(redis, keyNames, [])) as number[]).map(Number);
    return { pending: pending ?? 0, active: active ?? 0, retrying: retrying ?? 0, scheduled: scheduled ?? 0, dead: dead ?? 0 };
  }

  async deadLetters(): Promise<DeadLetter[]> {
    const redis = await this.redis();
    const all = await redis.hgetall(keys.queueDead());
    return Object.values(all)
      .map((json) => JSON.parse(json) as DeadLetter)
      .sort((a, b) => a.failedAt - b.failedAt);
  }

  /** Puts a dead letter back on the queue with fresh attempts; false when there is no such letter. */
  async replay(id: string): Promise<boolean> {
    const redis = await this.redis();
    const replayed = await scripts.replay.run(redis, [keys.queueDead(), keys.queueAttempts(), keys.queueErrors()], [id]);
    if (replayed === 0) return false;
    await scripts.add.run(redis, addKeys(), addArgs(id));
    return true;
  }

  async purgeDead(): Promise<number> {
    const redis = await this.redis();
    const count = await redis.hlen(keys.queueDead());
    await redis.del(keys.queueDead());
    return count;
  }

  private policyArgs(): number[] {
    return [this.policy.maxAttempts, this.policy.backoffBaseMs, this.policy.backoffMaxMs, Math.random()];
  }
}
