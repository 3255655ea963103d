// The job registry: where the dedicated job of each record is registered and its state kept.
// `embedded` keeps jobs in Redis (src/ucloud/embedded-registry.ts); `core` talks to UCloud/Core
// (src/ucloud/core-registry.ts). Imports src/domain/app.ts (for JobSpecification) only.

import type { JobSpecification } from "../domain/app.ts";

/** UCloud's JobState (orchestrators/jobs.go). */
export type JobState = "IN_QUEUE" | "RUNNING" | "SUCCESS" | "FAILURE" | "EXPIRED" | "SUSPENDED";

/** The states a job never leaves. */
export const FINAL_JOB_STATES: readonly JobState[] = ["SUCCESS", "FAILURE", "EXPIRED"];
const FINAL_STATES: ReadonlySet<JobState> = new Set(FINAL_JOB_STATES);

export function isFinal(state: JobState): boolean {
  return FINAL_STATES.has(state);
}

export interface Job {
  id: string;
  specification: JobSpecification;
  createdBy: string;
  project: string | null;
  state: JobState;
  status: string;
  createdAt: string;
  updatedAt: string;
}

/** How a job's liveness is read from Redis: the command, and what its reply means. */
export interface AliveRead {
  command(jobId: string): readonly (string | number)[];
  alive(reply: unknown): boolean;
  /** The same, as a script checks it: alive while the field `state` of `key` is present and not one of `deadStates`. */
  guard(jobId: string): { key: string; deadStates: readonly string[] };
}

export interface JobRegistry {
  /** Registers one job and answers its id. */
  register(specification: JobSpecification, createdBy: string, project: string | null): Promise<string>;
  /** The job, or null when the registry does not know it. */
  retrieve(jobId: string): Promise<Job | null>;
  /**
   * Whether the job is known and not in a final state: what a write needs of it, and no more
   * (the embedded registry reads one field of the job instead of the whole job).
   */
  alive(jobId: string): Promise<boolean>;
  /**
   * True when `alive` answers in about one Redis round trip (the embedded registry): a writer may
   * then ask it while its transaction's first reads are in flight. False when it may take an HTTP
   * call (UCloud/Core): a writer asks it before it borrows a transaction connection.
   */
  readonly aliveIsQuick: boolean;
  /**
   * `alive` as one Redis command and how its reply reads, for a registry kept in Redis (the
   * embedded one): a writer on a single server sends it in its transaction's first round trip
   * instead of asking `alive` apart. Absent for UCloud/Core's.
   */
  readonly aliveRead?: AliveRead;
  /** Records a new state (and a human-readable status line). */
  updateState(jobId: string, state: JobState, status?: string): Promise<void>;
  /** Sends what is still queued (state updates sent in batches). */
  close?(): Promise<void>;
}
