// The periodic resync: a reconcile task for every record, so the system converges whatever was
// lost or missed, and the tasks left in records' outboxes by writers that died between their
// EXEC and the queue. It is the safety net: the watch caches' events and the records' writes
// bring reconciles as things change. One worker at a time runs it (a lock held for most of the
// interval), spread over half the interval, and not while the last one's tasks still wait; it
// reads keys in batches with SCAN (on every master of a cluster), never all at once. A worker
// that starts makes one pass of its own at once (pods come back right after role all restarts).
// Outboxes that may hold a task are found through their index (src/store/outbox.ts), which is
// empty when none does; only the pass of a worker that starts also SCANs for every outbox, in
// case Redis lost an index entry (a failover).
// Imports src/queue (the queue, task ids), src/store (keys, connections, routing for SCAN, the
// outbox's member format, its index and unindex, the audit stream: an outbox also holds the audit
// entries of writes whose writer died before relaying them).

import type { TaskQueue } from "../queue/queue.ts";
import { taskId } from "../queue/tasks.ts";
import { keys, outboxTagOfKey, parseRecordTag, recordTagOfKey } from "../store/keys.ts";
import { scanOutboxIndex, splitOutboxMembers, unindex } from "../store/outbox.ts";
import { appendAudit, DEFAULT_AUDIT_MAX_LENGTH } from "../store/audit.ts";
import type { CommandConnection } from "../store/connections.ts";
import { scanEach } from "../store/routing.ts";

const BATCH = 500;

export interface ResyncOptions {
  /**
   * The pass a worker makes when it starts: no lock, and not skipped for a busy queue, since
   * after a restart of role `all` the cluster may hold none of the pods.
   */
  atStart?: boolean;
  /** Spread the pass over about this long, rather than adding every task at once. */
  spreadMs?: number;
  /** How many records the last pass found: the pace of this one. */
  lastCount?: number;
  /** `[api] audit_max_length`, for the audit entries left in outboxes. */
  auditMaxLength?: number;
}

/**
 * Enqueues a reconcile for every record, in batches spread over `spreadMs`; null when another
 * worker holds this round, or when the last round's tasks are still waiting (a pass must never
 * pile onto the one before it: the worker is busy, and the informers' events keep it current).
 */
export async function resyncOnce(redis: CommandConnection, queue: TaskQueue, intervalMs: number, workerId: string, options: ResyncOptions = {}): Promise<number | null> {
  const connection = await redis();
  if (!options.atStart) {
    const held = await connection.set(keys.resyncLock(), workerId, "PX", Math.max(Math.floor(intervalMs * 0.9), 1), "NX");
    if (held !== "OK") return null;
    if ((await connection.llen(keys.queuePending())) > 0) return null;
  }
  if (options.atStart) await relayOutboxes(redis, queue, options.auditMaxLength);
  await relayIndexedOutboxes(redis, queue, options.auditMaxLength);
  // Paced by the clock, not by SCAN's batches (a batch holds however many records its keys were):
  // the n-th record is added no earlier than n/lastCount of the way through `spreadMs`, so the
  // pass ends within about `spreadMs` whatever the keyspace holds besides records.
  const started = Date.now();
  const expected = options.lastCount ?? 0;
  let count = 0;
  await scanEach(connection, keys.recordPattern(), BATCH, async (batch) => {
    const ids = batch.map(recordTagOfKey).filter((tag): tag is string => tag !== null).flatMap((tag) => reconcileTaskOf(tag) ?? []);
    if (ids.length === 0) return;
    const due = options.spreadMs && expected > 0 ? started + (options.spreadMs * Math.min(count, expected)) / expected : 0;
    if (due - Date.now() >= 1) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
    await queue.add(...ids);
    count += ids.length;
  });
  return count;
}

/**
 * The reconcile task of the record whose tag (a record key's, or a pod's owner annotation) is
 * `tag`: `<app>:<createdBy>[:<project>]`, as src/store/keys.ts builds it. Null for anything else.
 */
export function reconcileTaskOf(tag: string): string | null {
  const parsed = parseRecordTag(tag);
  return parsed === null ? null : taskId("reconcile", parsed.app, parsed.owner);
}

/**
 * Moves the tasks in the outboxes the index names to the queue, and takes the records whose
 * outbox is then empty out of the index (src/store/outbox.ts says why that never loses one).
 * With no outbox owing anything, one HSCAN of an empty hash. Answers how many tasks it moved.
 */
export async function relayIndexedOutboxes(redis: CommandConnection, queue: TaskQueue, auditMaxLength = DEFAULT_AUDIT_MAX_LENGTH): Promise<number> {
  const connection = await redis();
  let moved = 0;
  await scanOutboxIndex(connection, BATCH, async (entries) => {
    for (const { tag, version } of entries) {
      const parsed = parseRecordTag(tag);
      if (parsed === null) continue;
      const members = await connection.smembers(keys.outbox(parsed.app, parsed.owner));
      if (members.length > 0) moved += await relayMembers(connection, queue, members, auditMaxLength);
      // Exactly the members read: one a write added meanwhile keeps the entry, for its writer or the next round.
      await unindex(connection, parsed.app, parsed.owner, version, members);
    }
  });
  return moved;
}

/** Puts the tasks among outbox members on the queue and appends their audit entries to the stream; answers how many tasks. */
async function relayMembers(connection: Awaited<ReturnType<CommandConnection>>, queue: TaskQueue, members: string[], auditMaxLength: number): Promise<number> {
  const { tasks, audit } = splitOutboxMembers(members);
  if (tasks.length > 0) await queue.add(...tasks);
  await appendAudit(connection, audit, auditMaxLength);
  return tasks.length;
}

/**
 * Moves every task still in a record's outbox to the queue, finding outboxes with SCAN: the safety
 * net a worker runs as it starts (passes read the index). Answers how many it moved.
 */
export async function relayOutboxes(redis: CommandConnection, queue: TaskQueue, auditMaxLength = DEFAULT_AUDIT_MAX_LENGTH): Promise<number> {
  const connection = await redis();
  let moved = 0;
  await scanEach(connection, keys.outboxPattern(), BATCH, async (batch) => {
    for (const key of batch) {
      if (outboxTagOfKey(key) === null) continue;
      const members = await connection.smembers(key);
      if (members.length === 0) continue;
      const relayed = await relayMembers(connection, queue, members, auditMaxLength);
      // Exactly the members read: one a write added meanwhile stays for its writer or the next round.
      await connection.srem(key, ...members);
      moved += relayed;
    }
  });
  return moved;
}
