// Jobs kept in Redis, for running without a UCloud installation: `[ucloud] mode = "embedded"`.
// A job is the hash `iapps:job:<id>`; ids come from the counter `iapps:job-seq`.
// A state change is the script scripts/update-job-state-1.lua.
//
// Compact by design (issue 13: at most 1 KiB of Redis per record, with its job, on Redis's
// default settings): Redis keeps a hash as a listpack, a few bytes per field, only while every
// value is at most `hash-max-listpack-value` (64 bytes by default) long; one longer value makes
// it a hash table, ~50 bytes more per field. So a job holds no long value: its specification,
// the same for every job of an app but for the owner's name, is kept once in the hash
// `iapps:job-specs` (a digest → the specification's JSON with the owner's name as `<createdBy>`)
// and the job names it by its digest (`spec`); times are epoch milliseconds (an integer, 8 bytes
// in a listpack, not a 24-character ISO string). A status longer than 64 bytes makes the hash a
// hash table while it lasts (the script writes the job anew once it is gone).
//
// Jobs written before this encoding (`id`, `specification` as JSON, ISO times, `project` "")
// read the same: the decoder takes both, and no migration is needed. The first read of such a
// job also rewrites it in this encoding (scripts/compact-job-1.lua), so that an installation
// upgraded in place gets the memory back within a resync pass.
//
// Imports node:crypto, src/store/keys.ts, src/store/scripts.ts, the connection type of
// src/store/connections.ts, src/ucloud/jobs.ts and the job specification type of src/domain/app.ts.

import { createHash } from "node:crypto";
import type { JobSpecification } from "../domain/app.ts";
import { keys } from "../store/keys.ts";
import type { CommandConnection } from "../store/connections.ts";
import { RedisScript } from "../store/scripts.ts";
import { type AliveRead, FINAL_JOB_STATES, isFinal, type Job, type JobRegistry, type JobState } from "./jobs.ts";

const updateJobState = new RedisScript(new URL("./scripts/update-job-state-1.lua", import.meta.url));
/** Rewrites a job of the encoding before in this one (see `retrieve`). */
const compactJob = new RedisScript(new URL("./scripts/compact-job-1.lua", import.meta.url));

/** What stands for the owner's name in a kept specification. */
export const CREATED_BY_PLACEHOLDER = "<createdBy>";
/** Templates a registry remembers (they never change: a digest names one text). */
const MAX_CACHED_TEMPLATES = 1024;

/** A specification as kept in `iapps:job-specs`: its JSON with the owner's name replaced, and its digest. */
export interface SpecificationTemplate {
  digest: string;
  template: string;
}

/**
 * The template of a specification registered for `createdBy`, or null when it cannot be one
 * (the JSON already holds the placeholder in a way that would not read back exactly): such a
 * job keeps its specification inline, as before.
 */
export function specificationTemplate(specification: JobSpecification, createdBy: string): SpecificationTemplate | null {
  const json = JSON.stringify(specification);
  const template = createdBy === "" ? json : json.split(createdBy).join(CREATED_BY_PLACEHOLDER);
  if (fromTemplate(template, createdBy) !== json) return null;
  // 72 bits: a collision is not expected, and is caught anyway (register compares what is kept).
  return { digest: createHash("sha256").update(template).digest("base64url").slice(0, 12), template };
}

function fromTemplate(template: string, createdBy: string): string {
  return template.split(CREATED_BY_PLACEHOLDER).join(createdBy);
}

/** A job's hash fields, in this encoding. */
export function encodeJob(job: Omit<Job, "id" | "specification">, spec: { digest: string } | { json: string }): Record<string, string> {
  return {
    state: job.state,
    ...(job.status === "" ? {} : { status: job.status }),
    createdBy: job.createdBy,
    ...(job.project === null ? {} : { project: job.project }),
    ...("digest" in spec ? { spec: spec.digest } : { specification: spec.json }),
    createdAt: compactTime(job.createdAt),
    updatedAt: compactTime(job.updatedAt),
  };
}

/**
 * The job a hash holds, in this encoding or the one before; null for a missing job. `template`
 * answers a kept specification's template by digest (null when it is gone).
 */
export function decodeJob(id: string, hash: Record<string, string>, template: (digest: string) => string | null): Job | null {
  if (hash.createdBy === undefined && hash.id === undefined) return null;
  const createdBy = hash.createdBy ?? "";
  let json = hash.specification ?? "{}";
  if (hash.spec !== undefined) json = fromTemplate(template(hash.spec) ?? "{}", createdBy);
  return {
    id,
    specification: JSON.parse(json) as JobSpecification,
    createdBy,
    project: hash.project ? hash.project : null,
    state: (hash.state ?? "IN_QUEUE") as JobState,
    status: hash.status ?? "",
    createdAt: readableTime(hash.createdAt ?? ""),
    updatedAt: readableTime(hash.updatedAt ?? ""),
  };
}

/** An ISO 8601 time as epoch milliseconds, when that reads back to the same text (else the text). */
function compactTime(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) && ms >= 0 && new Date(ms).toISOString() === iso ? String(ms) : iso;
}

/** A kept time as ISO 8601: epoch milliseconds (this encoding) or the text itself (the one before). */
function readableTime(kept: string): string {
  return /^\d+$/.test(kept) ? new Date(Number(kept)).toISOString() : kept;
}

export class EmbeddedJobRegistry implements JobRegistry {
  readonly aliveIsQuick = true;
  /** Templates read or written here, by digest (a digest always names the same text). */
  private readonly templates = new Map<string, string>();

  constructor(private readonly redis: CommandConnection) {}

  async register(specification: JobSpecification, createdBy: string, project: string | null): Promise<string> {
    // Separate round trips rather than one script: a script may only touch the keys it declares,
    // and the job's key depends on the id (Redis Cluster would refuse it). Registration is rare.
    const redis = await this.redis();
    const template = specificationTemplate(specification, createdBy);
    const [sequence, kept] = await Promise.all([redis.incr(keys.jobSequence()), template !== null && this.keep(template)]);
    const id = String(sequence);
    const now = new Date().toISOString();
    const spec = kept && template !== null ? { digest: template.digest } : { json: JSON.stringify(specification) };
    await redis.hset(keys.job(id), encodeJob({ createdBy, project, state: "IN_QUEUE", status: "Registered", createdAt: now, updatedAt: now }, spec));
    return id;
  }

  /**
   * Makes sure `iapps:job-specs` keeps a template, on every registration (one command: a template
   * remembered here may have been deleted from Redis meanwhile); false when its digest names
   * another text there.
   */
  private async keep({ digest, template }: SpecificationTemplate): Promise<boolean> {
    const redis = await this.redis();
    const added = await redis.hsetnx(keys.jobSpecifications(), digest, template);
    if (added === 0 && this.templates.get(digest) !== template && (await redis.hget(keys.jobSpecifications(), digest)) !== template) return false;
    this.remember(digest, template);
    return true;
  }

  private remember(digest: string, template: string) {
    if (this.templates.size >= MAX_CACHED_TEMPLATES) this.templates.clear();
    this.templates.set(digest, template);
  }

  async retrieve(jobId: string): Promise<Job | null> {
    const redis = await this.redis();
    const hash = await redis.hgetall(keys.job(jobId));
    const digest = hash.spec;
    if (digest !== undefined && !this.templates.has(digest)) {
      const template = await redis.hget(keys.jobSpecifications(), digest);
      if (template !== null) this.remember(digest, template);
    }
    if (hash.specification !== undefined && digest === undefined) await this.compact(jobId, hash);
    return decodeJob(jobId, hash, (d) => this.templates.get(d) ?? null);
  }

  /**
   * Rewrites a job stored in the encoding before (its specification inline) in this one; a job
   * whose specification cannot be a template stays as it is. Best effort: the job reads the same
   * either way, so a failure here does not fail the read.
   */
  private async compact(jobId: string, hash: Record<string, string>): Promise<void> {
    try {
      const template = specificationTemplate(JSON.parse(hash.specification!) as JobSpecification, hash.createdBy ?? "");
      if (template === null || !(await this.keep(template))) return;
      const [createdAt, updatedAt] = [hash.createdAt ?? "", hash.updatedAt ?? ""];
      const redis = await this.redis();
      await compactJob.run(redis, [keys.job(jobId)], [hash.specification!, template.digest, createdAt, compactTime(createdAt), updatedAt, compactTime(updatedAt)]);
    } catch {
      // Read as it is; the next read tries again.
    }
  }

  async alive(jobId: string): Promise<boolean> {
    const redis = await this.redis();
    return this.aliveRead.alive(await redis.hget(keys.job(jobId), "state"));
  }

  /** One field, not the whole job (its specification is most of it). */
  readonly aliveRead: AliveRead = {
    command: (jobId) => ["HGET", keys.job(jobId), "state"],
    alive: (reply) => typeof reply === "string" && !isFinal(reply as JobState),
    guard: (jobId) => ({ key: keys.job(jobId), deadStates: FINAL_JOB_STATES }),
  };

  async updateState(jobId: string, state: JobState, status = ""): Promise<void> {
    // Only an existing job changes, and a final state is final (see the script).
    const redis = await this.redis();
    await updateJobState.run(redis, [keys.job(jobId)], [state, status, Date.now()]);
  }
}
