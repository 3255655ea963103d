// The periodic resync: the safety net that makes the system converge whatever was lost or missed
// (an informer's event, a task, a drive's change, a pod deleted behind the worker's back), and
// relays the tasks left in records' outboxes by writers that died between their EXEC and the
// queue. The watch caches' events and the records' writes bring reconciles as things change; a
// pass only looks. With a check (the reconciler's read-only `check`, given by start.ts) it asks
// of every record "would a reconcile change anything?" and puts a reconcile on the queue only for
// those where it would (or where the check failed): an unchanged record costs the check's reads
// (its record and job: 2 Redis commands for a running Syncthing pod), no queue traffic. Without
// one (workers of tests with their own handlers) it enqueues a reconcile for every record.
// One worker at a time runs it (a lock held for most of the interval), paced over half the
// interval, and not while the last one's tasks still wait; it reads keys with SCAN (on every
// master of a cluster), never all at once. A worker that starts makes one pass of its own at once,
// unchecked: a reconcile for every record (pods come back right after role all restarts).
// Outboxes that may hold a task are found through their index (src/store/outbox.ts), which is
// empty when none does; only the pass of a worker that starts also SCANs for every outbox, in
// case Redis lost an index entry (a failover).
// Imports src/domain/owner.ts (type), src/queue (the queue, task ids), src/store (keys,
// connections, routing for SCAN, the outbox's member format, its index and unindex, the audit
// stream: an outbox also holds the audit entries of writes whose writer died before relaying them).

import type { Owner } from "../domain/owner.ts";
import type { TaskQueue } from "../queue/queue.ts";
import { taskId } from "../queue/tasks.ts";
import { keys, outboxTagOfKey, parseRecordTag, recordTag, recordTagOfKey } from "../store/keys.ts";
import { scanOutboxIndex, splitOutboxMembers, unindex } from "../store/outbox.ts";
import { appendAudit, DEFAULT_AUDIT_MAX_LENGTH } from "../store/audit.ts";
import type { CommandConnection } from "../store/connections.ts";
import { scanEach } from "../store/routing.ts";

const BATCH = 500;
/** Keys SCAN looks at per call: the keyspace holds several keys per record. */
const SCAN_COUNT = 2000;
/** Records checked at once: enough to keep Redis busy with pipelined reads, few enough to pace. */
const CHECKS_AT_ONCE = 64;

/** Whether a reconcile of (app, owner) would change anything: null when not, else what (in words). */
export type RecordCheck = (app: string, owner: Owner) => Promise<string | null>;

/** What a pass checks records with (the reconciler's read-only `check`, src/worker/start.ts). */
export interface PassCheck {
  /**
   * Once per pass, before the first record: brings what the checks read up to date (the watch
   * caches listed again, the drive metadata's version read) and answers the check of one record.
   * `resetsPending`: the tags of the records that owe a reset, as the pass found them.
   */
  begin(pass: { resetsPending: ReadonlySet<string> }): Promise<RecordCheck>;
}

export interface ResyncOptions {
  /**
   * The pass a worker makes when it starts: no lock, and not skipped for a busy queue, since
   * after a restart of role `all` the cluster may hold none of the pods.
   */
  atStart?: boolean;
  /** Spread the pass over about this long, rather than all at once. */
  spreadMs?: number;
  /** How many records the last pass found: the pace of this one. */
  lastCount?: number;
  /** `[api] audit_max_length`, for the audit entries left in outboxes. */
  auditMaxLength?: number;
  /** Check records before enqueuing; without it every record gets a reconcile. */
  check?: PassCheck;
}

export interface PassResult {
  /** Records found. */
  records: number;
  /** Reconciles put on the queue (records a reconcile would change, or whose check failed). */
  enqueued: number;
  /** Checks that failed (their records were enqueued), and the first one's error. */
  failed: number;
  firstError?: string;
  /** What the checks found, by what a reconcile would do first: how many records each. */
  reasons: Map<string, number>;
  /** How long the pass took, pacing included, in seconds. */
  seconds: number;
  /** Of that, how long it was not waiting for its pace: what the same pass would take unpaced. */
  busySeconds: number;
}

/**
 * One pass over every record, in batches paced over `spreadMs`: a reconcile for each record the
 * check finds out of date (for every record without a check); null when another worker holds
 * this round, or when the last round's tasks are still waiting (a pass must never pile onto the
 * one before it: the worker is busy, and the informers' events keep it current).
 */
export async function resyncOnce(redis: CommandConnection, queue: TaskQueue, intervalMs: number, workerId: string, options: ResyncOptions = {}): Promise<PassResult | null> {
  const connection = await redis();
  if (!options.atStart) {
    const held = await connection.set(keys.resyncLock(), workerId, "PX", Math.max(Math.floor(intervalMs * 0.9), 1), "NX");
    if (held !== "OK") return null;
    if ((await connection.llen(keys.queuePending())) > 0) return null;
  }
  const started = Date.now();
  if (options.atStart) await relayOutboxes(redis, queue, options.auditMaxLength);
  await relayIndexedOutboxes(redis, queue, options.auditMaxLength);
  const result: PassResult = { records: 0, enqueued: 0, failed: 0, reasons: new Map(), seconds: 0, busySeconds: 0 };
  let paused = 0;
  const tags: string[] = [];
  await scanEach(connection, keys.recordPattern(), SCAN_COUNT, async (batch) => {
    for (const key of batch) {
      const tag = recordTagOfKey(key);
      if (tag !== null && parseRecordTag(tag) !== null) tags.push(tag);
    }
  });
  result.records = tags.length;
  let check: RecordCheck | null = null;
  // A worker that starts enqueues every record unchecked: after a restart of role `all` every
  // pod is missing, and checking first only delays them (at 10,000 owners the checks held back
  // the first creates for seconds); after a worker's own restart a reconcile of an unchanged
  // record costs its queue commands once, and no Kubernetes call.
  if (options.check && !options.atStart) {
    const resetKeys = new Set<string>();
    await scanEach(connection, keys.resetPattern(), SCAN_COUNT, async (batch) => {
      for (const key of batch) resetKeys.add(key);
    });
    const resetsPending = new Set<string>();
    for (const tag of tags) {
      const { app, owner } = parseRecordTag(tag)!;
      if (resetKeys.has(keys.resetPending(app, owner))) resetsPending.add(recordTag(app, owner));
    }
    check = await options.check.begin({ resetsPending });
  }
  // Paced by the clock: the n-th record is looked at no earlier than n/lastCount of the way
  // through `spreadMs`, so the pass ends within about `spreadMs` (later only when it is slower).
  const expected = options.lastCount ?? 0;
  for (let from = 0; from < tags.length; from += BATCH) {
    const due = options.spreadMs && expected > 0 ? started + (options.spreadMs * Math.min(from, expected)) / expected : 0;
    if (due - Date.now() >= 1) {
      const wait = due - Date.now();
      paused += wait;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const batch = tags.slice(from, from + BATCH);
    const ids = check === null ? batch.map((tag) => reconcileTaskOf(tag)!) : await outOfDate(batch, check, result);
    if (ids.length > 0) await queue.add(...ids);
    result.enqueued += ids.length;
  }
  result.seconds = (Date.now() - started) / 1000;
  result.busySeconds = Math.max(0, result.seconds - paused / 1000);
  return result;
}

/** The reconcile tasks of the records in `tags` that a reconcile would change (or whose check failed). */
async function outOfDate(tags: string[], check: RecordCheck, result: PassResult): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const one = async () => {
    for (let i = next++; i < tags.length; i = next++) {
      const { app, owner } = parseRecordTag(tags[i]!)!;
      let why: string | null;
      try {
        why = await check(app, owner);
      } catch (e) {
        result.failed++;
        result.firstError ??= e instanceof Error ? e.message : String(e);
        why = "the check failed";
      }
      if (why === null) continue;
      result.reasons.set(why, (result.reasons.get(why) ?? 0) + 1);
      ids.push(taskId("reconcile", app, owner));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CHECKS_AT_ONCE, tags.length) }, one));
  return ids;
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
