// A record's outbox: how the task a write causes reaches the queue on a Redis Cluster. Every key
// a record's transaction touches there is in the record's hash slot, and the queue has a slot of
// its own, so the task cannot join the write's MULTI. The MULTI puts it in the set
// `iapps:outbox:{<app>:<owner>}` (keys.outbox) instead, and after EXEC the writer relays it to the
// queue. A writer that dies in between leaves it in the outbox, where the worker's resync finds it
// (src/worker/resync.ts). On a single server a write's task joins its MULTI through the queue's
// own add script instead (records.ts), and its outbox is used only when the queue cannot add
// within a MULTI; what follows holds for every write that does use it.
//
// The resync finds it through an index, not a SCAN of the keyspace: `iapps:{queue}:outboxes`
// (keys.outboxIndex) maps the tag of every record whose outbox may hold a task to a version, the
// nonce of the latest write that indexed it. It never misses an outbox that holds a task:
//
// - A writer writes its entry (its own nonce) before its EXEC can land: inside the MULTI on a
//   single server; on Redis Cluster, where the index (in the queue's slot) cannot join the MULTI,
//   with a command of its own sent after its WATCH was answered and answered before its EXEC, and
//   the writer also watches the record's outbox fence (keys.outboxFence).
// - An entry goes only by `unindex`, in this order: read its version v; empty the outbox of what
//   reached the queue and look whether anything is left, touching the fence when nothing is
//   (release-outbox-2.lua, one atomic step on the record's node); then delete the entry only if
//   it still holds v (compare-and-hdel-1.lua). Anything left: the entry stays. (On a single
//   server a writer's relay takes these steps as one script, relay-audit-and-release-3.lua, with
//   its own nonce as v: the look and the compare are then one atomic step, which only narrows
//   what can happen in between.)
// - So a task in an outbox whose entry was deleted would need a write whose EXEC landed after
//   the look found the outbox empty (else the look saw the task, and the entry stays). If that
//   writer wrote its entry after v was read, the entry holds its nonce, not v, and stays. If it
//   wrote it before, its WATCH came earlier still: on a single server its EXEC carried the entry
//   (so it landed before v was read, and the look saw the task); on a cluster the look's touch of
//   the fence, after the writer's WATCH and before its EXEC, makes that EXEC fail (it retries and
//   writes its entry again). Either way no task is left without an entry, whichever process dies
//   at whichever step (an entry only goes in the last, conditional step).
//
// What can still lose an entry is Redis itself: a failover that drops an index write the old
// master had not yet replicated, while its writer dies before relaying. A worker that starts
// therefore SCANs every outbox once (`relayOutboxes` in src/worker/resync.ts), as it did on every
// pass before. A write costs one more command for this (the index entry; inside the MULTI on a
// single server) and the entry's removal after its relay.
//
// A write's audit entry (audit.ts) travels the same way, as a member of its own beside the task.
// The relay runs once the writer's transaction connection is back in the pool: the task's add
// (the queue's own script), then on a single server one script (relay-audit-and-release-3.lua)
// appends the audit entry, empties the outbox and drops the index entry; on a cluster, where
// those keys live in three slots, the same three steps go one by one.
//
// Imports src/store/keys.ts, src/store/scripts.ts, src/store/audit.ts, the connection type of
// src/store/connections.ts, the command type of src/store/resp.ts and the Owner and AuditEntry
// types of src/domain.

import { randomBytes } from "node:crypto";
import type { Owner } from "../domain/owner.ts";
import type { AuditEntry } from "../domain/record.ts";
import { appendAudit, auditFields, auditOfPayload, auditPayload, DEFAULT_AUDIT_MAX_LENGTH } from "./audit.ts";
import type { CommandConnection, RedisClient } from "./connections.ts";
import { keys, recordTag } from "./keys.ts";
import type { RespCommand } from "./resp.ts";
import { RedisScript } from "./scripts.ts";

/** Takes members out of an outbox; answers how many are left (and touches the fence when none). */
const releaseOutbox = new RedisScript(new URL("./scripts/release-outbox-2.lua", import.meta.url));
/** Deletes an index entry only if it still holds the version read. */
const compareAndHdel = new RedisScript(new URL("./scripts/compare-and-hdel-1.lua", import.meta.url));
/** On a single server, everything of a relay after the task's add, in one step. */
const relayAuditAndRelease = new RedisScript(new URL("./scripts/relay-audit-and-release-3.lua", import.meta.url));

/** An outbox member is `<payload> <nonce>`: a task id (they hold no space) or an audit entry (audit.ts), and the nonce of the write that owes it. */
export function taskOfOutboxMember(member: string): string {
  const space = member.indexOf(" ");
  return space === -1 ? member : member.slice(0, space);
}

/**
 * What a write owes: its outbox members (its task's, and its audit entry's: audit.ts), all with
 * the same nonce, which is also the version of its index entry; and, for its own relay, the task
 * and entry they carry.
 */
export interface Owed {
  members: string[];
  version: string;
  tasks: string[];
  audit: AuditEntry[];
}

/** What a new write owes for `taskId` and `audit`: members of its own (so emptying them after the relay cannot take another write's) and a version. */
export function owedFor(taskId: string | undefined, audit: AuditEntry | undefined): Owed {
  const nonce = randomBytes(6).toString("hex");
  const tasks = taskId === undefined ? [] : [taskId];
  const entries = audit === undefined ? [] : [audit];
  const members = [...tasks, ...entries.map(auditPayload)].map((payload) => `${payload} ${nonce}`);
  return { members, version: nonce, tasks, audit: entries };
}

/** The tasks and the audit entries among outbox members (each once: one relayed twice is only a duplicate). */
export function splitOutboxMembers(members: string[]): { tasks: string[]; audit: AuditEntry[] } {
  const tasks = new Set<string>();
  const audit: AuditEntry[] = [];
  for (const member of new Set(members)) {
    const payload = taskOfOutboxMember(member);
    const entry = auditOfPayload(payload);
    if (entry === null) tasks.add(payload);
    else audit.push(entry);
  }
  audit.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  return { tasks: [...tasks], audit };
}

/**
 * The command that writes the record's index entry as part of a write's MULTI, on a single server
 * (its members join the outbox in the same MULTI: records.ts). On Redis Cluster the writer wrote
 * the entry before (`OutboxRelay.index`) and watches the outbox fence.
 */
export function indexWithin(app: string, owner: Owner, owed: Owed): RespCommand {
  return ["HSET", keys.outboxIndex(), recordTag(app, owner), owed.version];
}

/** One record the index names, and the version its entry held when read. */
export interface IndexedOutbox {
  tag: string;
  version: string;
}

/**
 * Takes `members` (which reached the queue) out of the record's outbox and, when nothing is left,
 * deletes its index entry if it still holds `version` (see the header). Answers how many tasks
 * the outbox still holds.
 */
export async function unindex(client: RedisClient, app: string, owner: Owner, version: string, members: string[] = []): Promise<number> {
  const left = await release(client, app, owner, members);
  if (left === 0) await dropIndexEntry(client, app, owner, version);
  return left;
}

/** `unindex`'s first step: takes `members` out of the outbox; answers how many are left (none: the fence was touched). */
function release(client: RedisClient, app: string, owner: Owner, members: string[]): Promise<number> {
  return releaseOutbox.run(client, [keys.outbox(app, owner), keys.outboxFence(app, owner)], members).then(Number);
}

/** `unindex`'s last step, once the outbox was found empty: deletes the entry if it still holds `version`. */
async function dropIndexEntry(client: RedisClient, app: string, owner: Owner, version: string): Promise<void> {
  await compareAndHdel.run(client, [keys.outboxIndex()], [recordTag(app, owner), version]);
}

/** Runs `onBatch` for every entry of the outbox index (HSCAN: a few at a time, never all at once). */
export async function scanOutboxIndex(client: RedisClient, count: number, onBatch: (entries: IndexedOutbox[]) => Promise<void>): Promise<void> {
  let cursor = "0";
  do {
    const [next, flat] = await client.hscan(keys.outboxIndex(), cursor, "COUNT", count);
    cursor = next;
    const entries: IndexedOutbox[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push({ tag: flat[i]!, version: flat[i + 1]! });
    if (entries.length > 0) await onBatch(entries);
  } while (cursor !== "0");
}

export interface OutboxRelayOptions {
  /** Puts tasks on the queue (src/queue/queue.ts `addFor`), with the request that caused them. */
  enqueue: (ids: string[], requestId: string | undefined) => Promise<unknown>;
  /** `[api] audit_max_length`: the audit stream is trimmed to about this many entries. */
  auditMaxLength?: number;
  log?: (level: "warn", message: string, fields?: Record<string, unknown>) => void;
}

/** Moves a writer's tasks from its record's outbox to the queue, after its EXEC. */
export class OutboxRelay {
  constructor(
    private readonly commands: CommandConnection,
    private readonly options: OutboxRelayOptions,
    /** Whether the record, the queue and the audit stream may live on different nodes (Redis Cluster). */
    private readonly clustered: boolean,
  ) {}

  /** Writes the record's index entry (with the write's version) before a MULTI it cannot join (Redis Cluster). */
  async index(app: string, owner: Owner, owed: Owed): Promise<void> {
    const redis = await this.commands();
    await redis.hset(keys.outboxIndex(), recordTag(app, owner), owed.version);
  }

  /**
   * Moves a write's task to the queue and its audit entry to the stream, then takes them out of
   * the record's outbox and, when it is empty then, drops the record's index entry (`unindex`'s
   * steps). A failure here loses nothing (the outbox keeps the task, the index the record, for
   * the resync), so it is logged, not raised: the write itself is done. `requestId`: the request
   * that made the write.
   */
  async relay(app: string, owner: Owner, owed: Owed, requestId: string | undefined): Promise<void> {
    const { tasks, audit } = owed;
    const maxLength = this.options.auditMaxLength ?? DEFAULT_AUDIT_MAX_LENGTH;
    let client: RedisClient;
    try {
      if (tasks.length > 0) await this.options.enqueue(tasks, requestId);
      client = await this.commands();
      if (!this.clustered) {
        // After the add: an entry and its removal from the outbox never come before the task's.
        const entries = audit.flatMap(auditFields);
        await relayAuditAndRelease.run(
          client,
          [keys.audit(), keys.outbox(app, owner), keys.outboxIndex()],
          [recordTag(app, owner), owed.version, maxLength, audit.length, ...entries, ...owed.members],
        );
        return;
      }
      await appendAudit(client, audit, maxLength);
    } catch (e) {
      this.options.log?.("warn", "a task or audit entry stays in its record's outbox until the next resync", { app, owner, tasks, error: String(e) });
      return;
    }
    // The task is on the queue and the entry in the stream: an outbox entry or index entry left by
    // a failure from here on only makes the resync add them once more (tasks are deduplicated,
    // reconciles idempotent, a duplicate audit entry is the same entry again).
    try {
      if ((await release(client, app, owner, owed.members)) === 0) await dropIndexEntry(client, app, owner, owed.version);
    } catch {
      // The next resync pass finds the outbox and removes what reached the queue.
    }
  }
}
