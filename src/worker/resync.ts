// The periodic resync: a reconcile task for every record, so the system converges whatever was
// lost or missed, and the tasks left in records' outboxes by writers that died between their
// EXEC and the queue. One worker at a time runs it (a lock held for most of the interval), and it
// reads keys in batches with SCAN (on every master of a cluster), never all at once.
// Imports the TaskQueue type of src/queue, and src/store (keys, connections, routing for SCAN,
// the outbox's member format).

import type { TaskQueue } from "../queue/queue.ts";
import { keys, outboxTagOfKey, recordTagOfKey } from "../store/keys.ts";
import { taskOfOutboxMember } from "../store/outbox.ts";
import type { CommandConnection } from "../store/connections.ts";
import { scanEach } from "../store/routing.ts";

const BATCH = 500;

/** Enqueues a reconcile for every record; null when another worker holds this round. */
export async function resyncOnce(redis: CommandConnection, queue: TaskQueue, intervalMs: number, workerId: string): Promise<number | null> {
  const connection = await redis();
  const held = await connection.set(keys.resyncLock(), workerId, "PX", Math.max(Math.floor(intervalMs * 0.9), 1), "NX");
  if (held !== "OK") return null;
  await relayOutboxes(redis, queue);
  let count = 0;
  await scanEach(connection, keys.recordPattern(), BATCH, async (batch) => {
    const ids = batch.map(recordTagOfKey).filter((tag): tag is string => tag !== null).map((tag) => `reconcile:${tag}`);
    await queue.add(...ids);
    count += ids.length;
  });
  return count;
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
