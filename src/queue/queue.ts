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
// named (add, take, renew, complete, fail, promote). Times come from the Redis server's clock,
// so workers on machines with skewed clocks agree on leases and backoffs.
//
// Imports src/store/keys.ts and the connection types of src/store/redis.ts only.

import { createHash } from "node:crypto";
import type { CommandConnection, RedisClient } from "../store/redis.ts";
import { keys } from "../store/keys.ts";

const NOW_MS = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
/** Wake one idle worker; the token list is capped, since one token may start many tasks. */
const WAKE = `if redis.call('LLEN', KEYS[5]) < 256 then redis.call('RPUSH', KEYS[5], '1') end`;

/** The (app, owner) part of a task id: tasks of one tag never run at once, whatever their kind. */
const TAG_OF = `local function tagOf(id) local at = string.find(id, ':', 1, true) return at and string.sub(id, at + 1) or id end`;

/**
 * A task leaves the active set: its (app, owner) is free again, and a task of it that had to
 * wait (parked at take) goes back to pending. Expects TAG_OF, WAKE's KEYS[5] = wake, and the
 * indices of pending, busy and parked.
 */
const FREE = (busy: number, parked: number) => `
local function free(id)
  local tag = tagOf(id)
  if redis.call('HGET', KEYS[${busy}], tag) == id then redis.call('HDEL', KEYS[${busy}], tag) end
  local waiting = redis.call('HGET', KEYS[${parked}], tag)
  if waiting then
    redis.call('HDEL', KEYS[${parked}], tag)
    redis.call('RPUSH', KEYS[1], waiting)
    ${WAKE}
  end
end`;

// KEYS: pending, dirty, active, delayed, wake. ARGV: id.
const ADD = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 2 end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
${WAKE}
return 1`;

// ADD, on behalf of a request: KEYS as ADD's, then request ids; ARGV: task id, request id. The
// request id replaces the task's (the latest of coalesced requests wins), even when the task was
// pending already.
const ADD_FOR = `
redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
${ADD}`;

// KEYS: pending, dirty, active, leases, wake, busy, parked, request ids. ARGV: lease ms, token
// prefix, how many. Answers id, token, request id ('' for none) for each task taken.
// A task whose (app, owner) is busy with another task (a restart while a reconcile runs) is
// parked, still dirty, until that one leaves: spec §5, never two workers on one (app, owner).
const TAKE = `
${NOW_MS}
${TAG_OF}
local out = {}
local taken = 0
while taken < tonumber(ARGV[3]) do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  local tag = tagOf(id)
  if redis.call('HEXISTS', KEYS[6], tag) == 1 then
    redis.call('HSET', KEYS[7], tag, id)
  else
    taken = taken + 1
    redis.call('SREM', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), id)
    local token = ARGV[2] .. ':' .. taken
    redis.call('HSET', KEYS[4], id, token)
    redis.call('HSET', KEYS[6], tag, id)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = redis.call('HGET', KEYS[8], id) or ''
  end
end
-- Wake-up tokens only say "something is pending"; with nothing pending they would make idle
-- workers spin through empty takes.
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[5]) end
return out`;

// KEYS: active, leases. ARGV: id, token, lease ms.
const RENEW = `
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
${NOW_MS}
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1`;

// KEYS as FAIL. ARGV: id, token.
const COMPLETE = `
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
${TAG_OF}
${FREE(10, 11)}
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
free(ARGV[1])
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  ${WAKE}
else
  -- Added again meanwhile, the request id is that of the next run; else it is done with.
  redis.call('HDEL', KEYS[12], ARGV[1])
end
return 1`;

// A task out of attempts becomes a dead letter, with the request that last asked for it.
// Expects the KEYS of FAIL.
const BURY = `
local function bury(id, attempts, err, now)
  local requestId = redis.call('HGET', KEYS[12], id)
  redis.call('HSET', KEYS[9], id, cjson.encode({id = id, attempts = attempts, error = err, failedAt = now, requestId = requestId or nil}))
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[7], id)
  redis.call('HDEL', KEYS[12], id)
end`;

// A failed attempt (also an expired lease): run again now if it was added meanwhile, else back
// off, or park it as a dead letter once it is out of attempts. Expects NOW_MS, id, error, and
// the KEYS of FAIL. Returns 1 requeued, 2 dead, 3 delayed.
const RETRY_OR_BURY = `
local attempts = redis.call('HINCRBY', KEYS[6], id, 1)
redis.call('HSET', KEYS[7], id, err)
if redis.call('SISMEMBER', KEYS[2], id) == 1 then
  redis.call('RPUSH', KEYS[1], id)
  ${WAKE}
  return 1
end
if attempts >= tonumber(ARGV[1]) then
  bury(id, attempts, err, now)
  return 2
end
local delay = math.min(tonumber(ARGV[2]) * 2 ^ (attempts - 1), tonumber(ARGV[3]))
redis.call('ZADD', KEYS[8], now + math.floor(delay * (0.5 + 0.5 * tonumber(ARGV[4]))), id)
return 3`;

// KEYS: pending, dirty, active, leases, wake, attempts, errors, delayed, dead, busy, parked,
// request ids. ARGV: max attempts, backoff base ms, backoff max ms, jitter in [0,1), id, token, error.
const FAIL = `
if redis.call('HGET', KEYS[4], ARGV[5]) ~= ARGV[6] then return 0 end
${NOW_MS}
${TAG_OF}
${FREE(10, 11)}
${BURY}
local id, err = ARGV[5], ARGV[7]
redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
free(id)
${RETRY_OR_BURY}`;

// Moves retries whose backoff is over back to pending, and hands out again the tasks whose lease
// expired (their worker died or stalled: that counts as a failed attempt).
// KEYS as FAIL. ARGV: max attempts, backoff base, backoff max, jitter, batch size.
const PROMOTE = `
${NOW_MS}
${TAG_OF}
${FREE(10, 11)}
${BURY}
local promoted, expired, buried = 0, 0, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  redis.call('ZREM', KEYS[8], id)
  if redis.call('SADD', KEYS[2], id) == 1 and not redis.call('ZSCORE', KEYS[3], id) then
    redis.call('RPUSH', KEYS[1], id)
    ${WAKE}
  end
  promoted = promoted + 1
end
-- An expired lease counts as a failed attempt (a task that kills its worker must not loop
-- forever), but is handed out again at once: the task itself may be fine.
local function reap(id)
  local err = 'lease expired: the worker processing it stopped renewing (killed or stalled)'
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  free(id)
  local attempts = redis.call('HINCRBY', KEYS[6], id, 1)
  redis.call('HSET', KEYS[7], id, err)
  if attempts >= tonumber(ARGV[1]) and redis.call('SISMEMBER', KEYS[2], id) == 0 then
    bury(id, attempts, err, now)
    buried[#buried + 1] = id
    return
  end
  redis.call('SADD', KEYS[2], id)
  redis.call('RPUSH', KEYS[1], id)
  ${WAKE}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  reap(id)
  expired = expired + 1
end
return {promoted, expired, buried}`;

// KEYS: delayed, dirty. ARGV: id, delay ms. Keeps the earlier time when one is already set.
const ADD_AFTER = `
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
${NOW_MS}
redis.call('ZADD', KEYS[1], 'LT', now + tonumber(ARGV[2]), ARGV[1])
return 1`;

// KEYS: dead, attempts, errors, + ADD's. ARGV: id.
const REPLAY = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1`;

class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(redis: RedisClient, keyNames: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keyNames.length, ...keyNames, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith("NOSCRIPT")) throw e;
      return redis.eval(this.source, keyNames.length, ...keyNames, ...args);
    }
  }
}

const scripts = {
  add: new Script(ADD),
  addFor: new Script(ADD_FOR),
  take: new Script(TAKE),
  renew: new Script(RENEW),
  complete: new Script(COMPLETE),
  fail: new Script(FAIL),
  promote: new Script(PROMOTE),
  replay: new Script(REPLAY),
  addAfter: new Script(ADD_AFTER),
};

const addKeys = () => [keys.queuePending(), keys.queueDirty(), keys.queueActive(), keys.queueDelayed(), keys.queueWake()];
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
}

export interface DeadLetter {
  id: string;
  attempts: number;
  error: string;
  failedAt: number;
  requestId?: string;
}

export interface QueueStats {
  pending: number;
  active: number;
  delayed: number;
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
    if (ids.length === 1) return (await scripts.add.run(redis, addKeys(), [ids[0]!])) === 0 ? 0 : 1;
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.eval(ADD, 5, ...addKeys(), id);
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
   * `on`: a connection of the caller's to the queue's node (to WAIT for replicas on it after).
   */
  async addFor(requestId: string | undefined, ids: string[], on?: RedisClient): Promise<number> {
    if (ids.length === 0) return 0;
    const redis = on ?? (await this.redis());
    // One script per task: the request id is never seen without its task.
    const replies = await Promise.all(
      ids.map((id) =>
        requestId === undefined
          ? scripts.add.run(redis, addKeys(), [id])
          : scripts.addFor.run(redis, [...addKeys(), keys.queueRequestIds()], [id, requestId]),
      ),
    );
    return replies.filter((value) => value !== 0).length;
  }

  /** Adds a task to run in `delayMs` (unless it is pending anyway): a check at a known time. */
  async addAfter(id: string, delayMs: number): Promise<void> {
    const redis = await this.redis();
    await scripts.addAfter.run(redis, [keys.queueDelayed(), keys.queueDirty()], [id, Math.max(0, Math.ceil(delayMs))]);
  }

  /** Takes up to `count` tasks under a lease of `leaseMs`; `tokenPrefix` must be unique per call. */
  async take(count: number, leaseMs: number, tokenPrefix: string): Promise<Lease[]> {
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
    const reply = (await scripts.take.run(redis, keyNames, [leaseMs, tokenPrefix, count])) as string[];
    const leases: Lease[] = [];
    for (let i = 0; i < reply.length; i += 3) {
      const requestId = reply[i + 2]!;
      leases.push({ id: reply[i]!, token: reply[i + 1]!, ...(requestId === "" ? {} : { requestId }) });
    }
    return leases;
  }

  /** Extends a lease; false when the lease is no longer ours (it expired and was handed out). */
  async renew(lease: Lease, leaseMs: number): Promise<boolean> {
    const redis = await this.redis();
    return (await scripts.renew.run(redis, [keys.queueActive(), keys.queueLeases()], [lease.id, lease.token, leaseMs])) === 1;
  }

  async complete(lease: Lease): Promise<boolean> {
    const redis = await this.redis();
    const keyNames = taskKeys();
    return (await scripts.complete.run(redis, keyNames, [lease.id, lease.token])) === 1;
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
    const replies = await redis
      .multi()
      .llen(keys.queuePending())
      .zcard(keys.queueActive())
      .zcard(keys.queueDelayed())
      .hlen(keys.queueDead())
      .exec();
    const [pending, active, delayed, dead] = (replies ?? []).map(([, value]) => Number(value));
    return { pending: pending ?? 0, active: active ?? 0, delayed: delayed ?? 0, dead: dead ?? 0 };
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
    await scripts.add.run(redis, addKeys(), [id]);
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
