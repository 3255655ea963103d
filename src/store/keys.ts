// Every Redis key and channel the service uses is built here, and nowhere else.
// The README's redis-cli section is written from this file; test/keys.test.ts checks the two agree.
//
// Keys that one transaction touches together share a hash tag `{<app>:<owner>}`, so every
// multi-key transaction stays inside one hash slot and the service also runs on Redis Cluster.

export interface Owner {
  createdBy: string;
  project: string | null;
}

const PREFIX = "iapps";

/** `syncthing:alice` or `syncthing:alice:<project>`: the identity of one record. */
export function recordTag(app: string, owner: Owner): string {
  return owner.project === null ? `${app}:${owner.createdBy}` : `${app}:${owner.createdBy}:${owner.project}`;
}

export const keys = {
  /** Hash: config, etag, jobId, state, updatedAt. */
  record: (app: string, owner: Owner) => `${PREFIX}:cfg:{${recordTag(app, owner)}}`,
  /**
   * List of the record's latest ETags, newest first (capped). Written in the same MULTI as the
   * record, so a writer whose connection dropped during EXEC can learn whether the write landed.
   */
  etagLog: (app: string, owner: Owner) => `${PREFIX}:etags:{${recordTag(app, owner)}}`,
  /**
   * String holding a random token while one replica registers the first job of a record
   * (SET NX PX). Lives in the record's slot so the final write can WATCH it.
   */
  jobClaim: (app: string, owner: Owner) => `${PREFIX}:claim:{${recordTag(app, owner)}}`,

  /** Hash of one job in the embedded job registry: id, spec, createdBy, project, state, status, createdAt, updatedAt. */
  job: (jobId: string) => `${PREFIX}:job:${jobId}`,
  /** Counter the embedded registry draws job ids from. */
  jobSequence: () => `${PREFIX}:job-seq`,

  /** List of task ids waiting for a worker, oldest first (RPUSH in, LMOVE out). */
  queuePending: () => `${PREFIX}:queue:pending`,
  /** Set of the task ids in `queuePending`: at most one pending task per (kind, app, owner). */
  queueDirty: () => `${PREFIX}:queue:dirty`,
} as const;

/** Every key pattern, for documentation and for operators (`redis-cli --scan --pattern`). */
export const keyPatterns = {
  record: `${PREFIX}:cfg:{<app>:<createdBy>[:<project>]}`,
  etagLog: `${PREFIX}:etags:{<app>:<createdBy>[:<project>]}`,
  jobClaim: `${PREFIX}:claim:{<app>:<createdBy>[:<project>]}`,
  job: `${PREFIX}:job:<jobId>`,
  jobSequence: `${PREFIX}:job-seq`,
  queuePending: `${PREFIX}:queue:pending`,
  queueDirty: `${PREFIX}:queue:dirty`,
} as const;
