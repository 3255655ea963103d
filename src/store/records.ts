// Records (the stored configuration of one app and owner) in Redis, and the one way to change
// them: a WATCH/MULTI/EXEC transaction on a pooled connection of its own.
//
// A transaction watches the record and its job claim, lets the caller decide on what it read,
// and commits the decision atomically: EXEC fails when either key changed in between.
// Reads go through the replica's cache when there is one; every write publishes its
// invalidation in its own MULTI and updates this replica's cache at once.
//
// A write is two round trips on its connection (the WATCH with its reads, then MULTI to EXEC), or
// one on a single server for a record this replica's cache holds (`attemptAssuming`: a guard
// script reads it under the WATCH, on the server, in the pipeline that carries the MULTI).
// A write's version joins the record's history (`iapps:history:{…}`) in the same MULTI, and a
// reset's owed side effects are marked there (cleared here when done). The task a write causes
// and its audit entry (audit.ts) land in the same EXEC too:
// - on a single server the MULTI holds the queue's own add script (src/queue/queue.ts
//   `addCommands`, given as `enqueueWithin`) and the write's own plain commands, the audit
//   stream's XADD among them: nothing is left for after EXEC;
// - on a Redis Cluster, where the queue and the stream live in other slots, the MULTI puts both in
//   the record's outbox (outbox.ts, write-record-6.lua), relayed once the connection is back in
//   the pool. So does a single server's write whose queue cannot add within a MULTI.
// Every key a cluster's transaction touches is in the record's hash slot. The job claim a
// transaction watches is taken and given up by job-claims.ts.
// The transaction's connection speaks RESP itself (resp.ts): each round trip is one socket write.
// Imports src/store/* (keys, invalidations, connections, the transaction pool, resp,
// redis-errors, scripts, outbox, audit, job-claims), src/base/request-id.ts (the request a task
// remembers), src/metrics/metrics.ts (how cached writes fare) and the record and owner types of
// src/domain.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Owner } from "../domain/owner.ts";
import type { AuditEntry, StoredRecord, Version } from "../domain/record.ts";
import { currentRequestId } from "../base/request-id.ts";
import type { CommandConnection } from "./connections.ts";
import { encodeInvalidation } from "./invalidations.ts";
import { JobClaims } from "./job-claims.ts";
import { keys } from "./keys.ts";
import { auditXaddArguments, DEFAULT_AUDIT_MAX_LENGTH } from "./audit.ts";
import { indexWithin, type Owed, OutboxRelay, owedFor } from "./outbox.ts";
import { AmbiguousCommitError, isRedisUnavailable, isSlotMoved, RedisUnavailableError, replyCodeOf } from "./redis-errors.ts";
import { type Argument, hashOf, type Reply, type RespCommand, type RespConnection } from "./resp.ts";
import { compareAndDelete, RedisScript } from "./scripts.ts";
import { metrics } from "../metrics/metrics.ts";
import type { Lease, TransactionPool } from "./transaction-pool.ts";

/** What a write leaves for after its EXEC: a cluster's (or a fallback's) outbox to relay, or tasks its MULTI may have missed. */
interface AfterExec {
  owed?: Owed;
  late?: string[];
}

/** What one transaction read: the record and the job claim, as they were when watched. */
export interface Snapshot {
  record: StoredRecord | null;
  /** The token of whoever is registering this record's first job, or null. */
  claim: string | null;
  /** The reply of the read the caller asked to send alongside (`attempt`'s `alongside`), when it was sent. */
  alongside?: Reply;
}

/** What a transaction commits. Every part is optional; all of it lands, or none of it. */
export interface Commit {
  record?: StoredRecord;
  /** Delete the job claim (the caller checked it holds it). */
  releaseClaim?: boolean;
  /** A task id to put on the queue (see src/queue/tasks.ts). */
  enqueue?: string;
  /** Note that a reset's side effects are owed (the value is the reset's ETag). */
  resetMarker?: string;
  /** A version to push on the record's history (with `record`: a write and its version are one event). */
  version?: Version;
  /** An entry for the audit stream: appended in the MULTI on a single server, else put in the record's outbox and relayed after EXEC (audit.ts). */
  audit?: AuditEntry;
}

const cachedWritesLanded = metrics.cachedWrites.bind({ outcome: "landed" });
const cachedWritesRetried = metrics.cachedWrites.bind({ outcome: "retried" });

/**
 * The read under WATCH of a write decided on a cached record (attemptAssuming), without its comment
 * lines: sent with EVAL, as without the script in the server EVALSHA would leave that write
 * unchecked. Read from its file, not loaded as a RedisScript: no ioredis client runs it, and every
 * script defined on a client costs each of its pipelines a copy (scripts.ts).
 */
const GUARD_BODY = readFileSync(new URL("./scripts/guard-record-3.lua", import.meta.url), "utf8").replace(/^--.*\n/gm, "").trim();
/** Its number of keys (the file's name says it). */
const GUARD_KEYS = 3;
/** The keys the first cached write's probe uses: in the service's own prefix, and never holding a value. */
const PROBE_OWNER: Owner = { createdBy: ".probe", project: null };

/**
 * A job a write decided on a cached record relies on: alive while the field `state` of `key` is
 * present and not one of `deadStates` (the embedded registry's jobs: src/ucloud/embedded-registry.ts).
 */
export interface JobGuard {
  key: string;
  deadStates: readonly string[];
}

/** Everything a write changes in its record's slot, as the one command of its MULTI (its task and audit entry through the outbox: Redis Cluster). */
const writeRecord = new RedisScript(new URL("./scripts/write-record-6.lua", import.meta.url));
/** The five keys both write scripts share (scripts/_write-record.lua), in their order. */
const recordSlotKeys = (app: string, owner: Owner) => [
  keys.record(app, owner),
  keys.etagLog(app, owner),
  keys.history(app, owner),
  keys.jobClaim(app, owner),
  keys.resetPending(app, owner),
];
const writeRecordKeys = (app: string, owner: Owner) => [...recordSlotKeys(app, owner), keys.outbox(app, owner)];

/** `[api] history_length` when unset: versions kept per record. */
export const DEFAULT_HISTORY_LENGTH = 20;

/**
 * ETags of the latest writes of a record, newest first: how a writer whose EXEC was interrupted
 * learns its fate (`wasCommitted`). It asks within seconds of its EXEC, so its ETag is still there
 * unless this many writes of the same record landed meanwhile, and the writer then learns that it
 * cannot tell (AmbiguousCommitError), never that its write did not land.
 */
export const ETAG_LOG_LENGTH = 8;
/**
 * The log expires this long after the record's last write: a record at rest keeps none (issue 13:
 * 64 ETags were most of a record's memory). A writer asks long before (`ETAG_LOG_HORIZON_MS`).
 */
export const ETAG_LOG_TTL_MS = 10 * 60_000;
/** After this long since its EXEC, a writer no longer trusts an ETag log's silence (it may have expired). */
const ETAG_LOG_HORIZON_MS = ETAG_LOG_TTL_MS / 2;

export function decodeRecord(hash: Record<string, string>): StoredRecord | null {
  if (hash.etag === undefined || hash.config === undefined) return null;
  return {
    config: JSON.parse(hash.config),
    etag: hash.etag,
    jobId: hash.jobId ?? "",
    state: hash.state === "detached" ? "detached" : "active",
    updatedAt: hash.updatedAt ?? "",
    ...(hash.warnings === undefined ? {} : { warnings: JSON.parse(hash.warnings) as string[] }),
  };
}

function encodeRecord(record: StoredRecord): Record<string, string> {
  return {
    config: JSON.stringify(record.config),
    etag: record.etag,
    jobId: record.jobId,
    state: record.state,
    updatedAt: record.updatedAt,
    ...(record.warnings === undefined || record.warnings.length === 0 ? {} : { warnings: JSON.stringify(record.warnings) }),
  };
}

/** 128 bits from the system's CSPRNG: never repeats in practice, and never equals "initial". */
export function newEtag(): string {
  return randomBytes(16).toString("hex");
}

/**
 * What the store needs of a replica's cache (src/cache/record-cache.ts is one). A fill or a
 * write-through first opens a ticket, then closes it with what it read or wrote: an invalidation
 * that passes in between voids the ticket, so the older record is never installed.
 */
export interface WriteThroughCache {
  readonly maxEntries: number;
  /** The cached record (null: known absent), or undefined when not cached or not trusted now. */
  get(key: string): StoredRecord | null | undefined;
  /** As get, but a miss is not counted (the caller reads on through get). */
  hit(key: string): StoredRecord | null | undefined;
  open(key: string, etag?: string): unknown;
  close(ticket: unknown, value: StoredRecord | null | undefined): void;
}

export type Outcome<T> = { committed: true; value: T } | { committed: false };

/** What `attempt`'s caller decided on a snapshot: what to commit (null: nothing), and its answer. */
export type Decided<T> = { commit: Commit; value: T } | { commit: null; value: T };

export interface RecordStoreOptions {
  /** Puts tasks on the queue (src/queue/queue.ts `addFor`), with the request that caused them. */
  enqueue: (ids: string[], requestId: string | undefined) => Promise<unknown>;
  /**
   * On a single server: the commands that add `ids` within a write's MULTI (src/queue/queue.ts
   * `addCommands`), one per id, queued before the write's own. Unset, or throwing, the write's
   * task and audit entry go through the record's outbox, as on a cluster.
   */
  enqueueWithin?: (ids: string[], requestId: string | undefined) => RespCommand[];
  /** Replicas that must have a write before it counts as done (`[redis] wait_replicas`). */
  waitReplicas?: number;
  /** How long WAIT waits for them. */
  waitTimeoutMs?: number;
  /** A cluster answered MOVED or ASK, or a master could not be reached: its slot map should be read again. */
  onRoutingTrouble?: () => void;
  log?: (level: "warn", message: string, fields?: Record<string, unknown>) => void;
  /** This replica's cache, or null to read Redis every time. */
  cache?: WriteThroughCache | null;
  /** Test hook: runs between a cache fill's Redis read and its insert. */
  afterFillRead?: (key: string) => Promise<void>;
  /** `[api] history_length`: versions kept per record. */
  historyLength?: number;
  /** `[api] audit_max_length`: the audit stream is trimmed to about this many entries. */
  auditMaxLength?: number;
  /** Test hook: runs just before a write's EXEC, after its outbox index entry was written (outbox.ts). */
  beforeExec?: (key: string) => Promise<void>;
}

export class RecordStore {
  private readonly cache: WriteThroughCache | null;
  private readonly outbox: OutboxRelay;
  private readonly claims: JobClaims;
  /**
   * Whether writes of cached records take one round trip (attemptAssuming): unknown until the
   * first one's probe answered, off when the server did not do what the guard needs (refused its
   * WATCH or EVAL: an ACL, a renamed command) or a write landed without its guard's 1.
   */
  private cachedWrites: "unknown" | "on" | "off" = "unknown";
  private probing: Promise<void> | null = null;

  constructor(
    private readonly commands: CommandConnection,
    private readonly pool: TransactionPool,
    private readonly options: RecordStoreOptions,
  ) {
    this.cache = options.cache && options.cache.maxEntries > 0 ? options.cache : null;
    this.outbox = new OutboxRelay(commands, options, pool.clustered);
    this.claims = new JobClaims(commands);
  }

  /** The record, from this replica's cache when it can be trusted, else from Redis. */
  read(app: string, owner: Owner): Promise<StoredRecord | null> {
    const key = keys.record(app, owner);
    return this.cache ? this.readThrough(this.cache, key) : this.readFromRedis(key);
  }

  private async readThrough(cache: WriteThroughCache, key: string): Promise<StoredRecord | null> {
    const cached = cache.get(key);
    if (cached !== undefined) return cached;
    const ticket = cache.open(key);
    let record: StoredRecord | null | undefined;
    try {
      record = await this.readFromRedis(key);
      await this.options.afterFillRead?.(key);
      return record;
    } finally {
      cache.close(ticket, record);
    }
  }

  /** The record from this replica's cache (null: cached as absent), or undefined when only Redis can answer: never waits. */
  cached(app: string, owner: Owner): StoredRecord | null | undefined {
    return this.cache?.hit(keys.record(app, owner));
  }

  /** The record's kept versions, newest first (at most `[api] history_length`). */
  async history(app: string, owner: Owner): Promise<Version[]> {
    const redis = await this.commands();
    return (await redis.lrange(keys.history(app, owner), 0, this.historyLength - 1)).map((json) => JSON.parse(json) as Version);
  }

  private get historyLength(): number {
    return this.options.historyLength ?? DEFAULT_HISTORY_LENGTH;
  }

  /** The record as Redis has it now, past this replica's cache. */
  async readFresh(app: string, owner: Owner): Promise<StoredRecord | null> {
    return this.readFromRedis(keys.record(app, owner));
  }

  /**
   * One HGETALL, issued at once when the connection is ready. Without async and await: with the
   * cache off this is every retrieve, and each promise and turn between the command and the
   * answer is work the bare Hono route doing one HGETALL does not do (README, Performance).
   */
  private readFromRedis(key: string): Promise<StoredRecord | null> {
    const redis = this.commands.now?.();
    const hash = redis !== undefined ? redis.hgetall(key) : this.commands().then((connection) => connection.hgetall(key));
    return hash.then(decodeRecord);
  }

  /**
   * Whether `attempt` sends a read of the caller's alongside its own (any key, on a single server;
   * on a cluster the transaction's node may not serve it).
   */
  get readsAlongside(): boolean {
    return !this.pool.clustered;
  }

  /**
   * One optimistic attempt: watch, read, let `decide` choose, commit. Returns `committed: false`
   * when another writer changed the record or claim in between (the caller retries).
   * `decide` returns `null` for "nothing to write"; it may throw an AppError (409, 404, ...).
   *
   * `alongside`: a read of the caller's that joins the first round trip (when `readsAlongside`);
   * its reply is the snapshot's `alongside`.
   *
   * Two round trips on the transaction connection: the WATCH with every read (one pipeline), then
   * the MULTI with everything the write changes (one pipeline ending in EXEC): on a single server
   * its task and audit entry too. On a cluster their relay follows once the connection is back in
   * the pool.
   */
  async attempt<T>(
    app: string,
    owner: Owner,
    decide: (snapshot: Snapshot) => Decided<T> | Promise<Decided<T>>,
    alongside?: RespCommand,
  ): Promise<Outcome<T>> {
    const after: AfterExec = {};
    let outcome: Outcome<T>;
    try {
      outcome = await this.pool.with(keys.record(app, owner), (connection, lease) => this.attemptOn(connection, lease, app, owner, decide, after, alongside));
    } catch (e) {
      // The slot moved (a failover): nothing ran, and the caller's next pass goes to the new master.
      if (isSlotMoved(e)) {
        this.options.onRoutingTrouble?.();
        return { committed: false };
      }
      // A master that cannot be reached may have been replaced: learn the slot map again.
      if (isRedisUnavailable(e)) this.options.onRoutingTrouble?.();
      throw e;
    } finally {
      // A write that landed (also one whose replicas did not confirm it) relays what it owes.
      // Waited for, so that an answered write has nothing of it still in flight.
      if (after.owed !== undefined) await this.outbox.relay(app, owner, after.owed, currentRequestId());
      if (after.late !== undefined) await this.enqueueLate(app, owner, after.late);
    }
    return outcome;
  }

  private async attemptOn<T>(
    connection: RespConnection,
    lease: Lease,
    app: string,
    owner: Owner,
    decide: (snapshot: Snapshot) => Decided<T> | Promise<Decided<T>>,
    after: AfterExec,
    alongside: RespCommand | undefined,
  ): Promise<Outcome<T>> {
    const recordKey = keys.record(app, owner);
    const claimKey = keys.jobClaim(app, owner);
    // On a cluster the outbox index entry cannot join the MULTI: watching the outbox fence keeps
    // the EXEC from landing a task after that entry was removed (outbox.ts).
    const clustered = this.pool.clustered;
    const watch: RespCommand = clustered ? ["WATCH", recordKey, claimKey, keys.outboxFence(app, owner)] : ["WATCH", recordKey, claimKey];
    const reads = unwatchedFirst(lease, [watch]);
    const first = reads.length;
    reads.push(["HGETALL", recordKey], ["GET", claimKey]);
    const along = alongside !== undefined && this.readsAlongside;
    if (along) reads.push(alongside);
    const replies = await connection.send(reads);
    for (const reply of replies) if (reply instanceof Error) throw reply;
    const snapshot: Snapshot = { record: decodeRecord(hashOf(replies[first]!)), claim: replies[first + 1] as string | null };
    if (along) snapshot.alongside = replies[first + 2];

    // Most decisions need nothing more than the snapshot: taken without a turn of the event loop.
    const decided = decide(snapshot);
    const decision = decided instanceof Promise ? await decided : decided;
    if (decision.commit === null) return { committed: true, value: decision.value };
    return this.commitOn(connection, lease, app, owner, snapshot, decision.commit, decision.value, after, null);
  }

  /**
   * The write of `attempt` in one round trip, for a record this replica's cache holds (`assumed`):
   * `decide` decides on the cached copy, and the pipeline that carries the write reads it under
   * WATCH on the server instead of here. It holds the WATCH of the record, its claim and its guard
   * key, then guard-record-3.lua, then the MULTI: the guard finds the record still the version
   * `assumed` is (ETag, state, job) and `job`, when given, still alive, or it touches the guard
   * key and the EXEC fails. A write that lands is thus one `attempt` would have made on the same
   * snapshot, with every guarantee of WATCH/MULTI/EXEC.
   *
   * Answers undefined when this cannot be done and nothing landed: on a cluster (the job's key is
   * elsewhere), when `decide` commits nothing, takes a detour or throws (it may have judged a stale
   * copy: a 409 or 412 is for `attempt` to find), or when the guard or the WATCH failed the EXEC.
   * The caller then takes `attempt`. Its other failures are `attempt`'s.
   */
  async attemptAssuming<T>(
    app: string,
    owner: Owner,
    assumed: StoredRecord,
    job: JobGuard | null,
    decide: (snapshot: Snapshot) => Decided<T> | null,
  ): Promise<Outcome<T> | undefined> {
    if (this.pool.clustered || this.options.enqueueWithin === undefined || this.cachedWrites === "off") return undefined;
    if (this.cachedWrites === "unknown") {
      this.probing ??= this.probeCachedWrites().finally(() => {
        this.probing = null;
      });
      await this.probing;
      // Set by the probe meanwhile (TypeScript keeps the narrowing from before the await).
      if ((this.cachedWrites as string) !== "on") return undefined;
    }
    let decision: Decided<T> | null;
    const snapshot: Snapshot = { record: assumed, claim: null };
    try {
      decision = decide(snapshot);
    } catch {
      return undefined;
    }
    if (decision === null || decision.commit === null) return undefined;
    const { commit, value } = decision;
    const recordKey = keys.record(app, owner);
    const guardKey = keys.writeGuard(app, owner);
    const checkJob = job !== null;
    const guard: RespCommand = [
      "EVAL",
      GUARD_BODY,
      GUARD_KEYS,
      recordKey,
      guardKey,
      checkJob ? job.key : recordKey,
      assumed.etag,
      assumed.state === "detached" ? "1" : "",
      assumed.jobId,
      checkJob ? "1" : "",
      ...(checkJob ? job.deadStates : []),
    ];
    const after: AfterExec = {};
    try {
      const outcome = await this.pool.with(recordKey, (connection, lease) => {
        const watch: RespCommand = ["WATCH", recordKey, keys.jobClaim(app, owner), guardKey];
        const prefix = unwatchedFirst(lease, [watch, guard]);
        return this.commitOn(connection, lease, app, owner, snapshot, commit, value, after, prefix);
      });
      (outcome.committed ? cachedWritesLanded : cachedWritesRetried).inc();
      return outcome.committed ? outcome : undefined;
    } catch (e) {
      // EXECABORT: Redis refused a command of the MULTI, and nothing of it ran.
      if (replyCodeOf(e) === "EXECABORT") {
        cachedWritesRetried.inc();
        return undefined;
      }
      throw e;
    } finally {
      if (after.late !== undefined) await this.enqueueLate(app, owner, after.late);
    }
  }

  /**
   * Checks once that this server fails an EXEC as the guard means it to: WATCH and the guard's EVAL
   * accepted, and the guard touching its key when the record is not the one assumed (here, a record
   * that does not exist) so that the EXEC answers null. Anything else turns cached writes off, with
   * a warning: they take the ordinary two round trips. A probe Redis did not answer decides nothing.
   */
  private async probeCachedWrites(): Promise<void> {
    const record = keys.record(".probe", PROBE_OWNER);
    const guard = keys.writeGuard(".probe", PROBE_OWNER);
    let replies: Reply[];
    try {
      replies = await this.pool.with(record, async (connection, lease) => {
        const sent: RespCommand[] = [["WATCH", record, guard], ["EVAL", GUARD_BODY, GUARD_KEYS, record, guard, record, "none", "", "", ""], ["MULTI"], ["PING"], ["EXEC"]];
        const answer = await connection.send(unwatchedFirst(lease, sent));
        lease.leftUnwatched = true;
        return lease.mayBeWatching ? answer.slice(1) : answer;
      });
    } catch (e) {
      if (isRedisUnavailable(e)) return;
      replies = [e as Reply];
    }
    const [watched, guarded, , , exec] = replies;
    if (watched === "OK" && guarded === 0 && exec === null) {
      this.cachedWrites = "on";
      return;
    }
    this.cachedWrites = "off";
    this.options.log?.("warn", "writes of cached records take two round trips: Redis did not fail an EXEC as their guard needs (ACL or renamed commands?)", {
      replies: replies.map(String),
    });
  }

  /**
   * Commits `commit` on `connection`, which holds the WATCH of the record (sent before, or in
   * `prefix`: commands written ahead of the MULTI in the same round trip, the last of them the
   * guard of `attemptAssuming`).
   */
  private async commitOn<T>(
    connection: RespConnection,
    lease: Lease,
    app: string,
    owner: Owner,
    snapshot: Snapshot,
    commit: Commit,
    value: T,
    after: AfterExec,
    prefix: RespCommand[] | null,
  ): Promise<Outcome<T>> {
    const recordKey = keys.record(app, owner);
    const clustered = this.pool.clustered;
    const { record, enqueue, audit } = commit;
    const tasks = enqueue === undefined ? [] : [enqueue];
    const ahead = prefix === null ? 0 : prefix.length;
    const multi: RespCommand[] = prefix === null ? [["MULTI"]] : [...prefix, ["MULTI"]];
    // On a single server the task joins the MULTI through the queue's own add, and the audit entry
    // the write's own XADD: nothing is left for after EXEC. On a cluster (or with a queue that cannot
    // add within a MULTI) both go through the record's outbox.
    let direct = false;
    if (!clustered && this.options.enqueueWithin !== undefined) {
      direct = true;
      if (tasks.length > 0) {
        try {
          multi.push(...this.options.enqueueWithin(tasks, currentRequestId()));
        } catch {
          // A write decided on a cached copy has no outbox path: the caller takes `attempt`.
          if (prefix !== null) return { committed: false };
          direct = false;
          multi.length = 1;
        }
      }
    }
    // The write's replies follow the adds'.
    const adds = multi.length - 1 - ahead;
    let owed: Owed | undefined;
    if (direct) {
      multi.push(...this.writeCommands(app, owner, snapshot, commit));
    } else {
      owed = tasks.length === 0 && audit === undefined ? undefined : owedFor(enqueue, audit);
      // Indexed before the EXEC can land, after the WATCH (outbox.ts).
      if (owed !== undefined && clustered) await this.outbox.index(app, owner, owed);
      multi.push(["EVALSHA", writeRecord.sha, writeRecord.numberOfKeys, ...writeRecordKeys(app, owner), ...this.writeArguments(app, owner, snapshot, commit), owed?.members.length ?? 0, ...(owed?.members ?? [])]);
      if (owed !== undefined && !clustered) multi.push(indexWithin(app, owner, owed));
    }
    multi.push(["EXEC"]);

    // Write-through: this replica shows the new record at once, unless a newer write's
    // invalidation passes before EXEC answers.
    const ticket = record && this.cache ? this.cache.open(recordKey, record.etag) : null;
    let landed = false;
    try {
      let results: Reply[] | null;
      if (this.options.beforeExec !== undefined) await this.options.beforeExec(recordKey);
      const sentAt = Date.now();
      try {
        const replies = await connection.send(multi);
        // EXEC ends every WATCH, whether it ran the transaction or not.
        lease.leftUnwatched = true;
        results = execResults(ahead === 0 ? replies : replies.slice(ahead));
        // A write that landed had its WATCH and its guard's 1 (guard-record-3.lua fails the EXEC
        // otherwise, and Redis refuses a MULTI's writes for whatever it refuses a script for):
        // anything else is a bug to shout about, as the write is in.
        if (ahead > 0 && results !== null && !consented(replies, ahead)) {
          // It landed unchecked (the server refused the WATCH or the guard after the probe passed,
          // or ran out of memory for the guard's touch): no more of those from this replica.
          this.cachedWrites = "off";
          this.options.log?.("warn", "a write decided on a cached record landed without its guard's consent: writes of cached records now take two round trips", {
            app,
            owner,
            replies: replies.slice(0, ahead).map(String),
          });
        }
      } catch (e) {
        if (!record || !isRedisUnavailable(e)) throw e;
        // The EXEC may or may not have run. First make sure it never will (a timed-out EXEC may
        // still sit in the server's input buffer), then the ETag log says which.
        await this.pool.fence(connection);
        if (!(await this.wasCommitted(app, owner, record.etag, snapshot.record?.etag ?? null, sentAt))) throw e;
        // It did, and its tasks with it, unless the add script met NOSCRIPT there: added again
        // (a task added twice is only pending once).
        if (direct) after.late = tasks;
        results = [];
      }
      if (results === null) return { committed: false };
      if (results.length > 0) {
        if (!direct && replyCodeOf(results[adds]) === "NOSCRIPT") {
          // Nothing of the write ran (an index entry or a task alone is harmless: the resync finds
          // the outbox empty, the reconcile the record unchanged). Load the script where this
          // connection's node will find it, and try again.
          const [loaded] = await connection.send([["SCRIPT", "LOAD", writeRecord.lua]]);
          if (loaded instanceof Error) throw loaded;
          return { committed: false };
        }
        for (const result of results.slice(adds)) if (result instanceof Error) throw result;
        // The write landed; a task its add missed (NOSCRIPT: a flushed script cache) is added
        // after EXEC, by the queue's own path (and the resync would find its record anyway).
        if (results.slice(0, adds).some((result) => result instanceof Error)) after.late = tasks;
      }
      landed = true;
    } finally {
      if (ticket) this.cache!.close(ticket, landed ? record : undefined);
    }
    after.owed = owed;
    if (record && (this.options.waitReplicas ?? 0) > 0) await this.awaitReplicas(connection);
    return { committed: true, value };
  }

  /**
   * Puts on the queue, after EXEC, tasks the write's MULTI may not have added: tried for about a
   * second (a Redis that just restarted, which is when a script cache is empty, may still be
   * unsteady), then logged; the resync's check finds the record's pod out of date and reconciles it.
   */
  private async enqueueLate(app: string, owner: Owner, tasks: string[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.options.enqueue(tasks, currentRequestId());
        return;
      } catch (e) {
        if (attempt < 3) {
          await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
          continue;
        }
        this.options.log?.("warn", "a write's task waits for the next resync", { app, owner, tasks, error: String(e) });
        return;
      }
    }
  }

  /** The arguments of _write-record.lua for `commit` (see the script for their order): the part both write scripts share. */
  private writeArguments(app: string, owner: Owner, snapshot: Snapshot, commit: Commit): (string | number)[] {
    const { record, releaseClaim, resetMarker, version } = commit;
    const args: (string | number)[] = [];
    if (record) {
      const fields = encodeRecord(record);
      const names = Object.keys(fields);
      args.push(names.length);
      for (const name of names) args.push(name, fields[name]!);
      // A field the new version does not have must not outlive the old one.
      if (snapshot.record?.warnings !== undefined && fields.warnings === undefined) args.push(1, "warnings");
      else args.push(0);
      args.push(record.etag, ETAG_LOG_LENGTH, ETAG_LOG_TTL_MS, keys.invalidations(), encodeInvalidation({ app, owner, etag: record.etag }));
    } else {
      args.push(0, 0, "", ETAG_LOG_LENGTH, ETAG_LOG_TTL_MS, keys.invalidations(), "");
    }
    args.push(version ? JSON.stringify(version) : "", this.historyLength);
    args.push(releaseClaim ? "1" : "", resetMarker ?? "");
    return args;
  }

  /**
   * What a single server's write changes, as plain commands of its MULTI: what write-record-6.lua
   * does in the record's slot (see _write-record.lua), and the audit entry appended to the stream.
   * No script: nothing to load, and no script call's cost in Redis.
   */
  private writeCommands(app: string, owner: Owner, snapshot: Snapshot, commit: Commit): RespCommand[] {
    const { record, releaseClaim, resetMarker, version, audit } = commit;
    const commands: RespCommand[] = [];
    if (record) {
      const key = keys.record(app, owner);
      const fields = encodeRecord(record);
      const set: Argument[] = ["HSET", key];
      for (const name in fields) set.push(name, fields[name]!);
      commands.push(set);
      // A field the new version does not have must not outlive the old one.
      if (snapshot.record?.warnings !== undefined && fields.warnings === undefined) commands.push(["HDEL", key, "warnings"]);
      const etagLog = keys.etagLog(app, owner);
      commands.push(["LPUSH", etagLog, record.etag], ["LTRIM", etagLog, 0, ETAG_LOG_LENGTH - 1], ["PEXPIRE", etagLog, ETAG_LOG_TTL_MS]);
      commands.push(["PUBLISH", keys.invalidations(), encodeInvalidation({ app, owner, etag: record.etag })]);
    }
    if (version) {
      const history = keys.history(app, owner);
      commands.push(["LPUSH", history, JSON.stringify(version)], ["LTRIM", history, 0, this.historyLength - 1]);
    }
    if (releaseClaim) commands.push(["DEL", keys.jobClaim(app, owner)]);
    if (resetMarker) commands.push(["SET", keys.resetPending(app, owner), resetMarker]);
    if (audit) commands.push(["XADD", ...auditXaddArguments(audit, this.options.auditMaxLength ?? DEFAULT_AUDIT_MAX_LENGTH)]);
    return commands;
  }

  /**
   * With `[redis] wait_replicas`, a write counts as done only once that many replicas have it. A
   * write the master has but no replica confirmed may survive or not: the caller is told so.
   */
  private async awaitReplicas(connection: RespConnection) {
    const wanted = this.options.waitReplicas ?? 0;
    if (wanted === 0) return;
    let acknowledged = 0;
    try {
      const [reply] = await connection.send([["WAIT", wanted, this.options.waitTimeoutMs ?? 500]]);
      if (reply instanceof Error) throw reply;
      acknowledged = Number(reply);
    } catch {
      // The master went away, or was demoted under WAIT ("UNBLOCKED force unblock", "WAIT cannot
      // be used with replica instances"): the write is on it, and no replica confirmed it.
    }
    if (acknowledged < wanted) {
      throw new AmbiguousCommitError(`the write reached the master but only ${acknowledged} of ${wanted} replicas confirmed it ([redis] wait_replicas)`);
    }
  }

  /**
   * Marks the record detached when its job is `jobId` and it is still active (the reconciler
   * found the job gone or final). Published like any write. True when this call detached it.
   */
  async detach(app: string, owner: Owner, jobId: string): Promise<boolean> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const outcome = await this.attempt(app, owner, async ({ record }) => {
        if (!record || record.jobId !== jobId || record.state === "detached") return { commit: null, value: false };
        return { commit: { record: { ...record, state: "detached" as const, updatedAt: new Date().toISOString() } }, value: true };
      });
      if (outcome.committed) return outcome.value;
    }
    throw new RedisUnavailableError("could not detach the record: it kept changing");
  }

  /**
   * Stores `config` as a new version of a record whose ETag is still `etag` (the reconciler found
   * part of it must go), with a new ETag and the owner's `warnings`, and enqueues `task`. False
   * when the record changed meanwhile (the newer version gets its own reconcile).
   */
  async prune(app: string, owner: Owner, etag: string, config: unknown, warnings: string[], task: string): Promise<boolean> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const outcome = await this.attempt(app, owner, async ({ record }) => {
        if (!record || record.etag !== etag) return { commit: null, value: false };
        const pruned: StoredRecord = { ...record, config, etag: newEtag(), updatedAt: new Date().toISOString(), warnings };
        return { commit: { record: pruned, enqueue: task }, value: true };
      });
      if (outcome.committed) return outcome.value;
    }
    throw new RedisUnavailableError("could not prune the record: it kept changing");
  }

  /**
   * Whether a write that produced `etag` (replacing `previous`), its EXEC sent at `sentAt`, reached
   * Redis. Its ETag in the log: it did. Not there: it did not, when nothing can have pushed it out,
   * that is when the ETag it replaced is still there (had the write landed, its ETag would be the
   * newer of the two, and the log drops the oldest first) or the log was never trimmed (shorter
   * than its cap). Otherwise, and when Redis stays out of reach or so much time passed that the log
   * may have expired, it throws AmbiguousCommitError: never "did not land" for a write that did.
   */
  private async wasCommitted(app: string, owner: Owner, etag: string, previous: string | null, sentAt: number): Promise<boolean> {
    const deadline = Date.now() + 2_000;
    const unknown = (why: string) => new AmbiguousCommitError(`lost the connection during a write and could not learn whether it landed: ${why}`);
    const log = keys.etagLog(app, owner);
    for (;;) {
      try {
        // On a fresh connection of the pool, to the node that ran the EXEC: the shared client may
        // itself be recovering from what cut the EXEC off (a cluster client takes longest).
        const [position, previousPosition, length] = await this.pool.with(keys.record(app, owner), async (connection) => {
          const replies = await connection.send([["LPOS", log, etag], ["LPOS", log, previous ?? etag], ["LLEN", log]]);
          for (const reply of replies) if (reply instanceof Error) throw reply;
          return [replies[0] as number | null, previous === null ? null : (replies[1] as number | null), replies[2] as number];
        });
        if (Date.now() - sentAt > ETAG_LOG_HORIZON_MS) throw unknown("the record's ETag log may have expired since");
        if (position !== null) return true;
        if (previousPosition !== null || length < ETAG_LOG_LENGTH) return false;
        throw unknown(`${ETAG_LOG_LENGTH} later writes of the record landed meanwhile`);
      } catch (e) {
        if (e instanceof AmbiguousCommitError) throw e;
        if (!isRedisUnavailable(e) || Date.now() > deadline) throw unknown("Redis could not be reached");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** The ETag of a reset whose side effects are still owed, or null. */
  async resetPending(app: string, owner: Owner): Promise<string | null> {
    const redis = await this.commands();
    return redis.get(keys.resetPending(app, owner));
  }

  /** The owed reset side effects are done (unless a newer reset came meanwhile). */
  async resetDone(app: string, owner: Owner, marker: string): Promise<void> {
    const redis = await this.commands();
    await compareAndDelete.run(redis, [keys.resetPending(app, owner)], [marker]);
  }

  /** Takes the record's job claim for `ttlMs`; true when this caller now holds it (job-claims.ts). */
  claimJob(app: string, owner: Owner, token: string, ttlMs: number): Promise<boolean> {
    return this.claims.take(app, owner, token, ttlMs);
  }

  /** Extends a job claim that is still ours by `ttlMs`; false when it is not ours any more. */
  renewJobClaim(app: string, owner: Owner, token: string, ttlMs: number): Promise<boolean> {
    return this.claims.renew(app, owner, token, ttlMs);
  }

  /** Gives up a job claim only if it is still ours (a claim that expired may be someone else's). */
  releaseJobClaim(app: string, owner: Owner, token: string): Promise<void> {
    return this.claims.release(app, owner, token);
  }
}

/** `commands`, after an UNWATCH when whoever borrowed the lease's connection before may have returned it watching. */
function unwatchedFirst(lease: Lease, commands: RespCommand[]): RespCommand[] {
  return lease.mayBeWatching ? [["UNWATCH"], ...commands] : commands;
}

/** Whether the `ahead` replies before a MULTI (UNWATCH?, WATCH, the guard) let its write land: no error, and the guard's 1 last. */
function consented(replies: Reply[], ahead: number): boolean {
  for (let i = 0; i < ahead; i++) if (replies[i] instanceof Error) return false;
  return replies[ahead - 1] === 1;
}

/**
 * The EXEC's results from the replies of MULTI ... EXEC: null when a watched key changed (nothing
 * ran). A MULTI that Redis refused to queue (EXECABORT: a MOVED, say) throws its EXEC's error,
 * with the queueing errors that caused it as `previousErrors` (as ioredis raises it).
 */
function execResults(replies: Reply[]): Reply[] | null {
  const exec = replies.at(-1);
  if (exec instanceof Error) {
    (exec as Error & { previousErrors?: Error[] }).previousErrors = replies.slice(0, -1).filter((reply): reply is Error => reply instanceof Error);
    throw exec;
  }
  if (replies[0] instanceof Error) throw replies[0];
  return exec === null ? null : (exec as Reply[]);
}
