// The periodic resync: a reconcile task for every record, so the system converges whatever was
// lost or missed, and the tasks left in records' outboxes by writers that died between their
// EXEC and the queue. One worker at a time runs it (a lock held for most of the interval), and it
// reads keys in batches with SCAN (on every master of a cluster), never all at once.
// Imports src/queue (the queue, task ids), src/store (keys, outboxes, SCAN) and src/domain (types).

import type { Owner } from "../domain/owner.ts";
import type { TaskQueue } from "../queue/queue.ts";
import { taskId } from "../queue/tasks.ts";
import { keys, outboxTagOfKey, recordTagOfKey } from "../store/keys.ts";
import { taskOfOutboxMember } from "../store/records.ts";
import { type CommandConnection, scanEach } from "../store/redis.ts";

const BATCH = 500;

/** Enqueues a reconcile for every record; null when another worker holds this round. */
export async function resyncOnce(redis: CommandConnection, queue: TaskQueue, intervalMs: number, workerId: string): Promise<number | null> {
  const connection = await redis();
  const held = await connection.set(keys.resyncLock(), workerId, "PX", Math.max(Math.floor(intervalMs * 0.9), 1), "NX");
  if (held !== "OK") return null;
  await relayOutboxes(redis, queue);
  let count = 0;
  await scanEach(connection, keys.recordPattern(), BATCH, async (batch) => {
    const ids = batch.map(recordTagOfKey).filter((tag): tag is string => tag !== null).flatMap((tag) => reconcileTaskOf(tag) ?? []);
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
  const [app, createdBy, project, ...rest] = tag.split(":");
  if (!app || !createdBy || rest.length > 0) return null;
  const owner: Owner = { createdBy, project: project ?? null };
  return taskId("reconcile", app, owner);
}

/** Moves every task still in a record's outbox to the queue. Answers how many it moved. */
export async function relayOutboxes(redis: CommandConnection, queue: TaskQueue): Promise<number> {
  const connection = await redis();
  let moved = 0;
  await scanEach(connection, keys.outboxPattern(), BATCH, async (batch) => {
    for (const key of batch) {
      if (outboxTagOfKey(key) === null) continue;
      const members = await connection.smembers(key);
      if (members.length === 0) continue;
      const ids = [...new Set(members.map(taskOfOutboxMember))];
      await queue.add(...ids);
      // Exactly the members read: one a write added meanwhile stays for its writer or the next round.
      await connection.srem(key, ...members);
      moved += ids.length;
    }
  });
  return moved;
}
