// Jobs kept in Redis, for running without a UCloud installation: `[ucloud] mode = "embedded"`.
// A job is the hash `iapps:job:<id>`; ids come from the counter `iapps:job-seq`.
// A state change is the script scripts/update-job-state-1.lua.
// Imports src/store/keys.ts, src/store/scripts.ts, the connection type of src/store/connections.ts,
// src/ucloud/jobs.ts and the job specification type of src/domain/app.ts.

import type { JobSpecification } from "../domain/app.ts";
import { keys } from "../store/keys.ts";
import type { CommandConnection } from "../store/connections.ts";
import { RedisScript } from "../store/scripts.ts";
import { isFinal, type Job, type JobRegistry, type JobState } from "./jobs.ts";

const updateJobState = new RedisScript(new URL("./scripts/update-job-state-1.lua", import.meta.url));

export class EmbeddedJobRegistry implements JobRegistry {
  readonly aliveIsQuick = true;

  constructor(private readonly redis: CommandConnection) {}

  async register(specification: JobSpecification, createdBy: string, project: string | null): Promise<string> {
    // Two round trips rather than one script: a script may only touch the keys it declares, and
    // the job's key depends on the id (Redis Cluster would refuse it). Registration is rare.
    const redis = await this.redis();
    const id = String(await redis.incr(keys.jobSequence()));
    const now = new Date().toISOString();
    await redis.hset(keys.job(id), {
      id,
      specification: JSON.stringify(specification),
      createdBy,
      project: project ?? "",
      state: "IN_QUEUE" satisfies JobState,
      status: "Registered",
      createdAt: now,
      updatedAt: now,
    });
    return id;
  }

  async retrieve(jobId: string): Promise<Job | null> {
    const redis = await this.redis();
    const hash = await redis.hgetall(keys.job(jobId));
    if (hash.id === undefined) return null;
    return {
      id: hash.id,
      specification: JSON.parse(hash.specification ?? "{}") as JobSpecification,
      createdBy: hash.createdBy ?? "",
      project: hash.project ? hash.project : null,
      state: (hash.state ?? "IN_QUEUE") as JobState,
      status: hash.status ?? "",
      createdAt: hash.createdAt ?? "",
      updatedAt: hash.updatedAt ?? "",
    };
  }

  async alive(jobId: string): Promise<boolean> {
    // One field, not the whole job (its specification is most of it).
    const redis = await this.redis();
    const state = (await redis.hget(keys.job(jobId), "state")) as JobState | null;
    return state !== null && !isFinal(state);
  }

  async updateState(jobId: string, state: JobState, status = ""): Promise<void> {
    // Only an existing job changes, and a final state is final (see the script).
    const redis = await this.redis();
    await updateJobState.run(redis, [keys.job(jobId)], [state, status, new Date().toISOString()]);
  }
}
