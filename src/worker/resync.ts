// The periodic resync: a reconcile task for every record, so the system converges whatever was
// lost or missed. One worker at a time runs it (a lock held for most of the interval), and it
// reads record keys in batches with SCAN, never all at once.
// Imports ioredis, src/queue and src/store/keys.ts.

import type { Redis } from "ioredis";
import type { TaskQueue } from "../queue/queue.ts";
import { keys, recordTagOfKey } from "../store/keys.ts";

const BATCH = 500;

/** Enqueues a reconcile for every record; null when another worker holds this round. */
export async function resyncOnce(redis: () => Promise<Redis>, queue: TaskQueue, intervalMs: number, workerId: string): Promise<number | null> {
  const connection = await redis();
  const held = await connection.set(keys.resyncLock(), workerId, "PX", Math.max(Math.floor(intervalMs * 0.9), 1), "NX");
  if (held !== "OK") return null;
  let cursor = "0";
  let count = 0;
  do {
    const [next, batch] = await connection.scan(cursor, "MATCH", keys.recordPattern(), "COUNT", BATCH);
    cursor = next;
    const ids = batch.map(recordTagOfKey).filter((tag): tag is string => tag !== null).map((tag) => `reconcile:${tag}`);
    await queue.add(...ids);
    count += ids.length;
  } while (cursor !== "0");
  return count;
}
