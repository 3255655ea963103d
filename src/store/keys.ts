// Every Redis key and channel the service uses is built here, and nowhere else.
// The redis-cli section of docs/operations.md is written from this file; test/keys.test.ts checks the two agree.
//
// Keys that one transaction touches together share a hash tag `{<app>:<owner>}`, so every
// multi-key transaction stays inside one hash slot and the service also runs on Redis Cluster.

import type { Owner } from "../domain/owner.ts";

const PREFIX = "iapps";

/** `syncthing:alice` or `syncthing:alice:<project>`: the identity of one record. */
export function recordTag(app: string, owner: Owner): string {
  return owner.project === null ? `${app}:${owner.createdBy}` : `${app}:${owner.createdBy}:${owner.project}`;
}

/** The `<app>:<owner>` tag of a record key, or null for another key. */
export function recordTagOfKey(key: string): string | null {
  const match = /^iapps:cfg:\{([^}]+)\}$/.exec(key);
  return match ? match[1]! : null;
}

/** The app and owner a record's tag names (the inverse of `recordTag`), or null for anything else. */
export function parseRecordTag(tag: string): { app: string; owner: Owner } | null {
  const [app, createdBy, project, ...rest] = tag.split(":");
  if (!app || !createdBy || rest.length > 0) return null;
  return { app, owner: { createdBy, project: project ?? null } };
}

/** The `<app>:<owner>` tag of an outbox key, or null for another key. */
export function outboxTagOfKey(key: string): string | null {
  const match = /^iapps:outbox:\{([^}]+)\}$/.exec(key);
  return match ? match[1]! : null;
}

export const keys = {
  /** Hash: config, etag, jobId, state, updatedAt. */
  record: (app: string, owner: Owner) => `${PREFIX}:cfg:{${recordTag(app, owner)}}`,
  /** SCAN pattern of every record key. */
  recordPattern: () => `${PREFIX}:cfg:*`,
  /**
   * List of the record's latest ETags, newest first (capped at 8, expiring 10 minutes after the
   * last write: src/store/records.ts). Written in the same MULTI as the record, so a writer whose
   * connection dropped during EXEC can learn whether the write landed.
   */
  etagLog: (app: string, owner: Owner) => `${PREFIX}:etags:{${recordTag(app, owner)}}`,
  /**
   * String holding a random token while one replica registers the first job of a record
   * (SET NX PX). Lives in the record's slot so the final write can WATCH it.
   */
  jobClaim: (app: string, owner: Owner) => `${PREFIX}:claim:{${recordTag(app, owner)}}`,
  /**
   * String (the time of the last activity, ISO 8601) that lives as long as the owner's
   * inactivity lease: set with PX on every open and activity; PTTL is what is left (the terminal).
   */
  activityLease: (app: string, owner: Owner) => `${PREFIX}:lease:{${recordTag(app, owner)}}`,

  /** String, present while a reset's side effects (Syncthing's state wipe) are owed: the reset's ETag. */
  resetPending: (app: string, owner: Owner) => `${PREFIX}:reset:{${recordTag(app, owner)}}`,
  /** SCAN pattern of every reset marker: the resync learns which records owe a reset without a read each. */
  resetPattern: () => `${PREFIX}:reset:*`,
  /**
   * Set of tasks writes owe the queue, `<task id> <nonce>` (one member per write): added in the
   * write's MULTI, removed once the task is on the queue (the queue's keys are in another hash
   * slot, so they cannot join the MULTI).
   */
  outbox: (app: string, owner: Owner) => `${PREFIX}:outbox:{${recordTag(app, owner)}}`,
  /** SCAN pattern of every outbox: what a worker relays as it starts (the safety net; passes read `outboxIndex`). */
  outboxPattern: () => `${PREFIX}:outbox:*`,
  /**
   * A key that never holds a value, in the record's slot: emptying the outbox sets and deletes it,
   * so that a writer watching it (one that wrote its `outboxIndex` entry outside its MULTI, on
   * Redis Cluster) cannot land a task after the index entry was removed (src/store/outbox.ts).
   */
  outboxFence: (app: string, owner: Owner) => `${PREFIX}:outbox-fence:{${recordTag(app, owner)}}`,
  /**
   * A key that never holds a value, in the record's slot: a write that decided on this replica's
   * cached copy of the record watches it, and its guard script sets and deletes it when the record
   * changed meanwhile, so that the write's EXEC fails (src/store/records.ts `attemptAssuming`).
   */
  writeGuard: (app: string, owner: Owner) => `${PREFIX}:guard:{${recordTag(app, owner)}}`,
  /**
   * List of the record's last `[api] history_length` versions, newest first, each a JSON
   * `{etag, config, kind, changedBy, via, changedAt, requestId}`: pushed in the same MULTI as the
   * record (src/store/records.ts), so a write and its version are one event.
   */
  history: (app: string, owner: Owner) => `${PREFIX}:history:{${recordTag(app, owner)}}`,
  /**
   * Stream of every change and restart (fields app, owner, kind, etag, changedBy, via, requestId,
   * at), trimmed to about `[api] audit_max_length` entries. One key on one node: written by the
   * outbox's relay after the write's EXEC, never inside the write's MULTI (src/store/audit.ts).
   */
  audit: () => `${PREFIX}:audit`,
  /** Pub/sub channel: every write publishes `{app, owner, etag}` here; every API replica applies it to its cache. */
  invalidations: () => `${PREFIX}:invalidations`,

  /** Hash: port → the job holding it, for one pool of ports (e.g. `syncthing`). */
  portsByPort: (pool: string) => `${PREFIX}:{ports}:${pool}:by-port`,
  /** Hash: job → the port it holds, the same allocation seen from the other side. */
  portsByJob: (pool: string) => `${PREFIX}:{ports}:${pool}:by-job`,
  /** List of the ports of the pool's range that no job holds, each once: taken from the head, given back at the tail. */
  portsFree: (pool: string) => `${PREFIX}:{ports}:${pool}:free`,
  /** String `<min>:<max>:<excluded>`: the range the free list was built for (another range rebuilds it). */
  portsRange: (pool: string) => `${PREFIX}:{ports}:${pool}:range`,

  /**
   * Hash of one drive's metadata (src/store/drives.ts): `owner`, `locked`, `member:<user>` →
   * read|write, `sensitivity:<folder>` → SENSITIVE|CONFIDENTIAL, `updatedAt`. Kept outside every
   * drive: a file inside a drive never grants anything.
   */
  drive: (driveId: string) => `${PREFIX}:drive:${driveId}`,
  /** SCAN pattern of every drive's metadata. */
  drivePattern: () => `${PREFIX}:drive:*`,
  /**
   * Counter that every change of drive metadata through src/store/drives.ts increments: a worker's
   * resync keeps what it read of drives for as long as it reads the same value here. Among the
   * drives' keys, under a name no drive has (a drive id never starts with '.').
   */
  drivesVersion: () => `${PREFIX}:drive:.version`,

  /**
   * Hash of one job in the embedded job registry: state, status (while there is one), createdBy,
   * project (when there is one), spec (the digest of its specification in `jobSpecifications`),
   * createdAt, updatedAt (epoch ms). Jobs written before hold id, specification (JSON) and ISO
   * times instead (src/ucloud/embedded-registry.ts reads both, and rewrites them when it reads them).
   */
  job: (jobId: string) => `${PREFIX}:job:${jobId}`,
  /** Hash: digest → a job specification's JSON with `<createdBy>` for the owner's name, kept once for every job that has it. */
  jobSpecifications: () => `${PREFIX}:job-specs`,
  /** Counter the embedded registry draws job ids from. */
  jobSequence: () => `${PREFIX}:job-seq`,

  // The task queue (src/queue/queue.ts). Its Lua scripts touch several of these keys at once, so
  // they share the hash tag `{queue}`.
  /** List of task ids ready for a worker, oldest first. */
  queuePending: () => `${PREFIX}:{queue}:pending`,
  /**
   * Set of task ids that are pending, or are being processed and were added again meanwhile
   * (they run once more afterwards): at most one pending task per (kind, app, owner).
   */
  queueDirty: () => `${PREFIX}:{queue}:dirty`,
  /** Sorted set of the task ids being processed, scored by when their lease expires (ms). */
  queueActive: () => `${PREFIX}:{queue}:active`,
  /** Hash: `<app>:<owner>` → the task id running for it (one at a time per app and owner). */
  queueBusy: () => `${PREFIX}:{queue}:busy`,
  /** Hash: `<app>:<owner>` → a task id taken while another task of it ran; pending again once that one ends. */
  queueParked: () => `${PREFIX}:{queue}:parked`,
  /** Hash: task id → the lease token of the worker processing it. */
  queueLeases: () => `${PREFIX}:{queue}:leases`,
  /** Sorted set of failed task ids waiting out their backoff, scored by when to retry (ms). */
  queueDelayed: () => `${PREFIX}:{queue}:delayed`,
  /** Hash: task id → attempts that failed so far. */
  queueAttempts: () => `${PREFIX}:{queue}:attempts`,
  /** Hash: task id → the last error. */
  queueErrors: () => `${PREFIX}:{queue}:errors`,
  /** Hash: task id → JSON {id, attempts, error, failedAt} of a task that ran out of attempts. */
  queueDead: () => `${PREFIX}:{queue}:dead`,
  /** List of wake-up tokens that idle workers block on (BLPOP), one per task made ready. */
  queueWake: () => `${PREFIX}:{queue}:wake`,
  /**
   * Hash: task id → the id of the latest request that added it (several requests may coalesce
   * into one task). Written in the request's MULTI, read when the task is taken, removed when it
   * is done (or buried with its dead letter).
   */
  queueRequestIds: () => `${PREFIX}:{queue}:request-ids`,
  /**
   * Hash: `<app>:<owner>` → a version (the nonce of the latest write that put a task in its
   * outbox): the records whose outbox may hold a task. Written before the write's EXEC, removed
   * once the outbox is empty (src/store/outbox.ts); what the resync reads instead of SCANning
   * for outboxes. In the queue's slot: next to where the tasks go.
   */
  outboxIndex: () => `${PREFIX}:{queue}:outboxes`,
  /** String held (SET NX PX) by the worker running the periodic resync. */
  resyncLock: () => `${PREFIX}:{queue}:resync-lock`,

  /**
   * String (JSON: owner, folder, createdAt, attached) of one terminal shell session, named by its
   * random 32-character identifier; expires by itself (PX). Any API replica attaches it.
   */
  shellSession: (sessionId: string) => `${PREFIX}:shell:${sessionId}`,
  /** Sorted set of one user's shell session ids, scored by when they expire (ms): the per-user cap. */
  shellSessionsOf: (username: string) => `${PREFIX}:shells:{${username}}`,
} as const;

/** Every key pattern, for documentation and for operators (`redis-cli --scan --pattern`). */
export const keyPatterns = {
  record: `${PREFIX}:cfg:{<app>:<createdBy>[:<project>]}`,
  recordPattern: `${PREFIX}:cfg:*`,
  etagLog: `${PREFIX}:etags:{<app>:<createdBy>[:<project>]}`,
  jobClaim: `${PREFIX}:claim:{<app>:<createdBy>[:<project>]}`,
  activityLease: `${PREFIX}:lease:{<app>:<createdBy>[:<project>]}`,
  resetPending: `${PREFIX}:reset:{<app>:<createdBy>[:<project>]}`,
  resetPattern: `${PREFIX}:reset:*`,
  outbox: `${PREFIX}:outbox:{<app>:<createdBy>[:<project>]}`,
  outboxPattern: `${PREFIX}:outbox:*`,
  outboxFence: `${PREFIX}:outbox-fence:{<app>:<createdBy>[:<project>]}`,
  outboxIndex: `${PREFIX}:{queue}:outboxes`,
  writeGuard: `${PREFIX}:guard:{<app>:<createdBy>[:<project>]}`,
  history: `${PREFIX}:history:{<app>:<createdBy>[:<project>]}`,
  audit: `${PREFIX}:audit`,
  invalidations: `${PREFIX}:invalidations`,
  portsByPort: `${PREFIX}:{ports}:<pool>:by-port`,
  portsByJob: `${PREFIX}:{ports}:<pool>:by-job`,
  portsFree: `${PREFIX}:{ports}:<pool>:free`,
  portsRange: `${PREFIX}:{ports}:<pool>:range`,
  drive: `${PREFIX}:drive:<driveId>`,
  drivePattern: `${PREFIX}:drive:*`,
  drivesVersion: `${PREFIX}:drive:.version`,
  job: `${PREFIX}:job:<jobId>`,
  jobSpecifications: `${PREFIX}:job-specs`,
  jobSequence: `${PREFIX}:job-seq`,
  queuePending: `${PREFIX}:{queue}:pending`,
  queueDirty: `${PREFIX}:{queue}:dirty`,
  queueActive: `${PREFIX}:{queue}:active`,
  queueBusy: `${PREFIX}:{queue}:busy`,
  queueParked: `${PREFIX}:{queue}:parked`,
  queueLeases: `${PREFIX}:{queue}:leases`,
  queueDelayed: `${PREFIX}:{queue}:delayed`,
  queueAttempts: `${PREFIX}:{queue}:attempts`,
  queueErrors: `${PREFIX}:{queue}:errors`,
  queueDead: `${PREFIX}:{queue}:dead`,
  queueWake: `${PREFIX}:{queue}:wake`,
  queueRequestIds: `${PREFIX}:{queue}:request-ids`,
  resyncLock: `${PREFIX}:{queue}:resync-lock`,
  shellSession: `${PREFIX}:shell:<sessionId>`,
  shellSessionsOf: `${PREFIX}:shells:{<username>}`,
} as const;
