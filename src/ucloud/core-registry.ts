// Jobs registered with, read from and reported to UCloud/Core: `[ucloud] mode = "core"`.
// Wire shapes follow UCloud's own definitions (provider-integration/shared/pkg/orchestrators/
// jobs.go and resource.go in SDU-eScience/UCloud): absent optional fields are written as null,
// timestamps are epoch milliseconds.
// Imports src/domain/app.ts (types), src/ucloud/core-client.ts and src/ucloud/jobs.ts.

import type { JobSpecification } from "../domain/app.ts";
import { CoreUnavailableError, type CoreClient } from "./core-client.ts";
import { isFinal, type Job, type JobRegistry, type JobState } from "./jobs.ts";

/** UCloud's Job as Core answers it (the fields this service reads; Core sends more). */
export interface CoreJob {
  id: string;
  createdAt: number;
  owner: { createdBy: string; project?: string | null };
  updates?: { state?: JobState | null; status?: string | null; timestamp?: number }[];
  specification: JobSpecification;
  status: { state: JobState };
}

interface Page<T> {
  items: T[];
  next?: string | null;
  itemsPerPage: number;
}

/** Bools of JobFlags that UCloud's own client always sends (query keys are Go field names). */
const JOB_FLAGS = {
  includeOthers: "false",
  includeUpdates: "true",
  includeSupport: "false",
  includeProduct: "false",
  includeParameters: "true",
  includeApplication: "false",
};

/** Updates sent in one `jobs/control/update` call (UCloud's IM flushes at 100). */
const MAX_BATCH = 100;
/** Pages of `jobs/control/browse` read when looking for a job to adopt. */
const MAX_BROWSE_PAGES = 20;

export interface CoreJobRegistryOptions {
  /** How long updates wait to be sent together. Default 5 ms. */
  batchWindowMs?: number;
  log?: (level: "info" | "warn", message: string, fields?: Record<string, unknown>) => void;
}

interface PendingUpdate {
  id: string;
  state: JobState;
  status: string;
  settle: { resolve: () => void; reject: (e: unknown) => void }[];
}

export class CoreJobRegistry implements JobRegistry {
  /** `alive` is an HTTP call to Core: never made while a transaction connection waits. */
  readonly aliveIsQuick = false;
  private pending = new Map<string, PendingUpdate>();
  private flushTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly core: CoreClient,
    private readonly options: CoreJobRegistryOptions = {},
  ) {}

  /**
   * Registers the job, unless Core already holds a live one for this product and owner: that one
   * is adopted. Such a job is left by a register whose answer was lost (Core acted, the caller saw
   * a timeout), so looking first keeps a retry, on any replica, from registering a second job. The
   * job claim (src/store/job-claims.ts) keeps two writers from registering at the same moment.
   */
  async register(specification: JobSpecification, createdBy: string, project: string | null): Promise<string> {
    const adopted = await this.findLive(specification, createdBy, project);
    if (adopted !== null) return adopted;
    try {
      const answer = await this.core.call<{ responses?: { id?: unknown }[] }>("POST", "/api/jobs/control/register", {
        body: {
          items: [
            {
              spec: wireSpecification(specification),
              providerGeneratedId: null,
              createdBy,
              project,
              projectAllRead: false,
              projectAllWrite: false,
            },
          ],
        },
      });
      const id = answer?.responses?.[0]?.id;
      if (typeof id !== "string" || id === "") throw new CoreUnavailableError("its answer to jobs/control/register has no job id", true);
      return id;
    } catch (e) {
      if (!(e instanceof CoreUnavailableError) || !e.ambiguous) throw e;
      // Core may have registered it before the answer was lost: look once more before giving up.
      const found = await this.findLive(specification, createdBy, project).catch(() => null);
      if (found !== null) return found;
      throw e;
    }
  }

  async retrieve(jobId: string): Promise<Job | null> {
    // Core answers 404 for a job it does not know; its newest code answers 403 for a job that is
    // not this provider's or does not exist. Either way Core holds no job of ours by that id.
    const job = await this.core
      .call<CoreJob>("GET", "/api/jobs/control/retrieve", { query: { id: jobId, ...JOB_FLAGS } }, true)
      .catch((e: unknown) => {
        if (e instanceof CoreUnavailableError && e.coreStatus === 403) return null;
        throw e;
      });
    if (job === null) return null;
    if (typeof job?.id !== "string" || typeof job.owner?.createdBy !== "string" || typeof job.specification?.product?.id !== "string") {
      throw new CoreUnavailableError("its answer to jobs/control/retrieve is not a Job", false);
    }
    return fromCore(job);
  }

  async alive(jobId: string): Promise<boolean> {
    const job = await this.retrieve(jobId);
    return job !== null && !isFinal(job.state);
  }

  /**
   * Queued and sent with the other updates of the next few milliseconds (several of one job in
   * that time: the last one); resolves once Core has it. Whether the state changed is the
   * caller's to know (the reconciler compares with the job it just retrieved): a memory of what
   * this process sent would be wrong as soon as another worker reports the same job.
   */
  updateState(jobId: string, state: JobState, status = ""): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = this.pending.get(jobId);
      if (entry) {
        entry.state = state;
        entry.status = status;
        entry.settle.push({ resolve, reject });
      } else {
        this.pending.set(jobId, { id: jobId, state, status, settle: [{ resolve, reject }] });
      }
      if (this.pending.size >= MAX_BATCH) void this.flush();
      else this.flushTimer ??= setTimeout(() => void this.flush(), this.options.batchWindowMs ?? 5);
    });
  }

  close(): Promise<void> {
    return this.flush();
  }

  /** Sends what is queued now. */
  async flush(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    if (batch.length === 0) return;
    try {
      await this.sendUpdates(batch);
      for (const entry of batch) for (const { resolve } of entry.settle) resolve();
    } catch (e) {
      if (batch.length > 1 && isUnknownJob(e)) {
        // Core stops a batch at the first job it does not know (earlier ones are applied): send
        // them one by one, so one job gone does not hold back the others.
        await Promise.all(batch.map((entry) => this.sendAlone(entry)));
        return;
      }
      for (const entry of batch) for (const { reject } of entry.settle) reject(e);
    }
  }

  private async sendAlone(entry: PendingUpdate) {
    try {
      await this.sendUpdates([entry]);
      for (const { resolve } of entry.settle) resolve();
    } catch (e) {
      // A job Core no longer knows needs no state: the next reconcile detaches its record.
      if (isUnknownJob(e)) for (const { resolve } of entry.settle) resolve();
      else for (const { reject } of entry.settle) reject(e);
    }
  }

  private async sendUpdates(batch: PendingUpdate[]) {
    await this.core.call("POST", "/api/jobs/control/update", {
      body: {
        items: batch.map(({ id, state, status }) => ({
          id,
          update: {
            state,
            outputFolder: null,
            status,
            expectedState: null,
            expectedDifferentState: null,
            newTimeAllocation: null,
            allowRestart: null,
            newMounts: null,
            // Core stamps updates with its own clock.
            timestamp: Date.now(),
          },
        })),
      },
    });
  }

  /** The newest job Core holds for this product and owner that is not in a final state, or null. */
  private async findLive(specification: JobSpecification, createdBy: string, project: string | null): Promise<string | null> {
    const { product } = specification;
    let next: string | null = null;
    for (let page = 0; page < MAX_BROWSE_PAGES; page++) {
      const query: Record<string, string> = {
        itemsPerPage: "250",
        ...JOB_FLAGS,
        filterCreatedBy: createdBy,
        filterProvider: product.provider,
        filterProductId: product.id,
        filterProductCategory: product.category,
      };
      if (next !== null) query.next = next;
      const answer = await this.core.call<Page<CoreJob>>("GET", "/api/jobs/control/browse", { query });
      for (const job of answer?.items ?? []) {
        if (isFinal(stateOf(job)) || job.owner?.createdBy !== createdBy || (job.owner.project ?? null) !== project) continue;
        const { id, category, provider } = job.specification?.product ?? {};
        if (id !== product.id || category !== product.category || provider !== product.provider) continue;
        this.options.log?.("warn", "adopted a job UCloud/Core already held for this owner", { jobId: job.id, product: product.id, createdBy });
        return job.id;
      }
      next = answer?.next ?? null;
      if (next === null || (answer?.items ?? []).length === 0) return null;
    }
    return null;
  }
}

/** JobSpecification as UCloud writes it: every field present, absent options as null. */
function wireSpecification(spec: JobSpecification) {
  return {
    product: spec.product,
    application: spec.application,
    name: spec.name,
    replicas: spec.replicas,
    allowDuplicateJob: false,
    parameters: spec.parameters,
    resources: spec.resources,
    timeAllocation: null,
    ...(spec.labels ? { labels: spec.labels } : {}),
  };
}

function stateOf(job: CoreJob): JobState {
  return job.status?.state ?? "IN_QUEUE";
}

function fromCore(job: CoreJob): Job {
  const updates = job.updates ?? [];
  const lastStatus = [...updates].reverse().find((u) => typeof u.status === "string")?.status ?? "";
  const lastAt = updates.at(-1)?.timestamp ?? job.createdAt;
  return {
    id: job.id,
    specification: job.specification,
    createdBy: job.owner.createdBy,
    project: job.owner.project ?? null,
    state: stateOf(job),
    status: lastStatus,
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(lastAt).toISOString(),
  };
}

function isUnknownJob(e: unknown): boolean {
  return e instanceof CoreUnavailableError && e.coreStatus === 404;
}
