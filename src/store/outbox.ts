// A record's outbox: how the task a write causes reaches the queue. Every key a record's
// transaction touches is in the record's hash slot, and the queue has a slot of its own, so the
// task cannot join the write's MULTI. The MULTI puts it in the set `iapps:outbox:{<app>:<owner>}`
// (keys.outbox) instead, and after EXEC the writer relays it to the queue. A writer that dies in
// between leaves it in the outbox, where the worker's resync finds it (src/worker/resync.ts).
// Imports src/store/keys.ts, the connection type of src/store/connections.ts,
// src/base/request-id.ts (a task remembers the request that added it), the Owner type of
// src/domain and ioredis' types.

import { randomBytes } from "node:crypto";
import type { ChainableCommander } from "ioredis";
import { currentRequestId } from "../base/request-id.ts";
import type { Owner } from "../domain/owner.ts";
import type { CommandConnection } from "./connections.ts";
import { keys } from "./keys.ts";

/** An outbox member: the task id and a nonce of the write that owes it (task ids hold no space). */
export function outboxMember(taskId: string): string {
  return `${taskId} ${randomBytes(6).toString("hex")}`;
}

export function taskOfOutboxMember(member: string): string {
  const space = member.indexOf(" ");
  return space === -1 ? member : member.slice(0, space);
}

/**
 * Puts `taskId` in the record's outbox as part of `multi`; answers the member, to relay once the
 * MULTI has run. A member of this write's own: emptying it after the relay cannot take another
 * write's.
 */
export function addToOutbox(multi: ChainableCommander, app: string, owner: Owner, taskId: string): string {
  const member = outboxMember(taskId);
  multi.sadd(keys.outbox(app, owner), member);
  return member;
}

export interface OutboxRelayOptions {
  /** Puts tasks on the queue (src/queue/queue.ts `addFor`), with the request that caused them. */
  enqueue: (ids: string[], requestId: string | undefined) => Promise<unknown>;
  log?: (level: "warn", message: string, fields?: Record<string, unknown>) => void;
}

/** Moves a writer's tasks from its record's outbox to the queue, after its EXEC. */
export class OutboxRelay {
  constructor(
    private readonly commands: CommandConnection,
    private readonly options: OutboxRelayOptions,
  ) {}

  /**
   * Moves tasks from the record's outbox to the queue. A failure here loses nothing (the outbox
   * keeps them for the resync), so it is logged, not raised: the write itself is done.
   */
  async relay(app: string, owner: Owner, members: string[]): Promise<void> {
    const ids = members.map(taskOfOutboxMember);
    try {
      await this.options.enqueue(ids, currentRequestId());
    } catch (e) {
      this.options.log?.("warn", "a task stays in its record's outbox until the next resync", { app, owner, tasks: ids, error: String(e) });
      return;
    }
    // The task is on the queue: an outbox entry left by a failed SREM only makes the resync add
    // it once more (tasks are deduplicated, reconciles idempotent). Waited for all the same, so
    // that an answered write has nothing of it still in flight.
    try {
      const redis = await this.commands();
      await redis.srem(keys.outbox(app, owner), ...members);
    } catch {
      // see above
    }
  }
}
