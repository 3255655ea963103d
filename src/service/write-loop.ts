// The transaction loop behind every change to a record (spec §3.6, §4.2, §4.3): each pass watches
// the record and the job claim, decides (`decide`: a function of the request, what the pass reads
// and the loop's state), and either commits (WATCH/MULTI/EXEC, src/store) or names a step to take
// outside the transaction first: wait for the job claim, take it (and register the job at once),
// register a job, or ask the registry whether a job is alive. Only the holder of the claim
// registers a job, so concurrent first updates on any number of replicas register exactly one; a
// job registered for a change that did not complete is retired. Knows nothing of HTTP or
// Kubernetes.
// A change's commit carries its version (the record's history) and its audit entry (spec §11).
// Imports src/store/records.ts and src/store/redis-errors.ts (commits, claims, errors), src/queue/tasks.ts
// (task ids), src/base/request-id.ts, src/ucloud/jobs.ts, src/base/errors.ts, src/domain (types) and ./preconditions.ts,
// ./unavailable.ts.

import type { IntegratedApp, JobSpecification } from "../domain/app.ts";
import { unavailable } from "../base/errors.ts";
import { type TaskKind, taskId } from "../queue/tasks.ts";
import type { Owner } from "../domain/owner.ts";
import { type Commit, newEtag, type RecordStore, type Snapshot } from "../store/records.ts";
import type { AuditEntry, AuditKind, StoredRecord, Version, VersionKind, Via } from "../domain/record.ts";
import { currentRequestId } from "../base/request-id.ts";
import { AmbiguousCommitError } from "../store/redis-errors.ts";
import type { AliveRead, JobRegistry } from "../ucloud/jobs.ts";
import { checkPreconditions, type Preconditions } from "./preconditions.ts";
import { orUnavailable, rethrowUnavailable } from "./unavailable.ts";

export interface WriteLoopOptions {
  store: RecordStore;
  jobs: JobRegistry;
  providerId: string;
  /** How long to wait for another replica registering the same record's first job. */
  jobClaimWaitMs: number;
  log?: (level: "warn" | "error", message: string, fields?: Record<string, unknown>) => void;
}

/** What an operation wants to become of the record it read. */
export type Intent =
  | { kind: "nothing" }
  /**
   * `reset`: the app's reset side effects (Syncthing's state wipe) are owed once the old pod is
   * gone. `as`: the kind of version it makes in the record's history (`update` unless said, `reset`
   * for a reset).
   */
  | { kind: "write"; config: unknown; reset?: boolean; as?: VersionKind }
  | { kind: "restart" }
  /**
   * Keep the configuration and its ETag, and have the worker look at the record again (a
   * terminal's lease came back). A record whose job is gone gets a new job and ETag, as a restart.
   */
  | { kind: "touch" };

/** The record's ETag and job after a change (null: nothing stored). */
export interface Changed {
  etag: string | null;
  jobId: string | null;
}

/** A committed change, and whether it stored the job this call registered. */
interface Written extends Changed {
  usedJob?: boolean;
}

/** Steps the loop takes outside a transaction before its next pass. */
type Detour =
  | { step: "wait-for-claim" }
  | { step: "take-claim" }
  | { step: "register-job" }
  /** The record names a job the registry was not asked about yet. */
  | { step: "check-job"; jobId: string };

/** What one change asked for: the same on every pass. */
interface ChangeRequest {
  app: IntegratedApp<unknown>;
  owner: Owner;
  pre: Preconditions;
  intend: (record: StoredRecord | null) => Intent;
  /** The route family it came through (who made it is the owner's createdBy either way). */
  via: Via;
}

/** What one change holds and has learnt across its passes. */
interface LoopState {
  /** The job claim's token, while this change holds the claim. */
  claimToken: string | null;
  /** A job this change registered and no commit of its own stored yet: retired at the end unless the record took it. */
  registeredJobId: string | null;
  /** Whether each job the record named is alive, as the registry answered (or will: a quick registry's answer in flight). */
  jobsAlive: Map<string, boolean | Promise<boolean>>;
}

type Decision = { commit: Commit; value: Written } | { commit: null; value: Written | Detour };

const MAX_CONFLICT_RETRIES = 100;

export class WriteLoop {
  constructor(private readonly options: WriteLoopOptions) {}

  /**
   * Applies what `intend` wants of the record, once `pre` holds, in one transaction; registers
   * the record's job first when it has none alive. Errors thrown by `intend` (a 404) pass through.
   */
  async change(
    app: IntegratedApp<unknown>,
    owner: Owner,
    pre: Preconditions,
    intend: (record: StoredRecord | null) => Intent,
    via: Via = "provider",
  ): Promise<Changed> {
    const { store } = this.options;
    const request: ChangeRequest = { app, owner, pre, intend, via };
    const state: LoopState = { claimToken: null, registeredJobId: null, jobsAlive: new Map() };
    const claimDeadline = Date.now() + this.options.jobClaimWaitMs;
    // Whether the record's job is alive is asked of the registry with the transaction's reads:
    // an embedded registry's one field in Redis in the transaction's first round trip (on a
    // single server; else while that round trip is in flight), UCloud/Core's (HTTP) before the
    // transaction borrows a connection at all.
    // From this replica's cache without a turn of the event loop when it holds the record.
    const cached = store.cached(app.name, owner);
    const seen = cached !== undefined ? cached : await orUnavailable(store.read(app.name, owner));
    const { jobs } = this.options;
    let probe: { jobId: string; read: AliveRead } | null = null;
    if (seen?.state === "active" && seen.jobId !== "") {
      if (jobs.aliveRead !== undefined && store.readsAlongside) {
        probe = { jobId: seen.jobId, read: jobs.aliveRead };
      } else {
        const alive = this.jobAlive(seen.jobId);
        if (jobs.aliveIsQuick) {
          alive.catch(() => {}); // awaited by the first pass that needs it
          state.jobsAlive.set(seen.jobId, alive);
        } else {
          state.jobsAlive.set(seen.jobId, await orUnavailable(alive));
        }
      }
    }
    // A promise only when a registry's answer is still in flight.
    const decideOn = (snapshot: Snapshot): Decision | Promise<Decision> => {
      if (probe !== null && snapshot.alongside !== undefined) state.jobsAlive.set(probe.jobId, probe.read.alive(snapshot.alongside));
      const jobId = snapshot.record?.jobId;
      const asked = jobId === undefined ? undefined : state.jobsAlive.get(jobId);
      if (!(asked instanceof Promise)) return decide(request, snapshot, state);
      return orUnavailable(asked).then((alive) => {
        state.jobsAlive.set(jobId!, alive);
        return decide(request, snapshot, state);
      });
    };
    // A record this replica's cache holds, whose job is alive: decided on the cached copy and written
    // in one round trip, the read under WATCH done by a guard on the server (RecordStore.attemptAssuming).
    // A record that changed meanwhile, or any decision but a commit, takes the passes below.
    if (cached !== undefined && cached !== null && cached.state === "active" && cached.jobId !== "") {
      const guard = probe !== null ? probe.read.guard(cached.jobId) : null;
      if (guard !== null || state.jobsAlive.get(cached.jobId) === true) {
        const assumed: LoopState = { ...state, jobsAlive: new Map([[cached.jobId, true]]) };
        const fast = await store
          .attemptAssuming<Written>(app.name, owner, cached, guard, (snapshot) => {
            const decision = decide(request, snapshot, assumed);
            return decision.commit === null ? null : decision;
          })
          .catch(rethrowUnavailable);
        if (fast?.committed) return { etag: fast.value.etag, jobId: fast.value.jobId };
      }
    }
    try {
      for (let pass = 0; ; pass++) {
        const outcome = await store
          .attempt<Written | Detour>(app.name, owner, decideOn, probe !== null && !state.jobsAlive.has(probe.jobId) ? probe.read.command(probe.jobId) : undefined)
          .catch((e: unknown) => {
            // The record may now point at the job we registered: never retire it then.
            if (e instanceof AmbiguousCommitError) state.registeredJobId = null;
            return rethrowUnavailable(e);
          });
        if (!outcome.committed) {
          if (pass >= MAX_CONFLICT_RETRIES) throw unavailable("The configuration is being changed by many writers at once; try again.");
          await sleep(Math.random() * Math.min(2 ** pass, 50));
          continue;
        }
        const value = outcome.value;
        if ("step" in value) {
          await this.takeDetour(request, value, state, claimDeadline);
          continue;
        }
        // The record may use the job we registered without this call storing it (another replica
        // adopted it from the registry): it is not ours to retire then.
        if (value.jobId !== null && value.jobId === state.registeredJobId) state.registeredJobId = null;
        if (value.usedJob) {
          // The commit stored the job and deleted the claim in the same EXEC.
          state.registeredJobId = null;
          state.claimToken = null;
        }
        return { etag: value.etag, jobId: value.jobId };
      }
    } finally {
      if (state.claimToken !== null || state.registeredJobId !== null) await this.cleanUp(request, state);
    }
  }

  /** Takes one step outside the transaction, learning into `state` what the next pass needs. */
  private async takeDetour({ app, owner }: ChangeRequest, detour: Detour, state: LoopState, claimDeadline: number): Promise<void> {
    const { store, jobClaimWaitMs } = this.options;
    switch (detour.step) {
      case "wait-for-claim":
      case "take-claim": {
        if (Date.now() > claimDeadline) {
          throw unavailable("Another request is still registering this application's job; try again in a moment.");
        }
        if (detour.step === "wait-for-claim") {
          await sleep(10 + Math.random() * 10);
          return;
        }
        const token = newEtag();
        if (!(await orUnavailable(store.claimJob(app.name, owner, token, jobClaimWaitMs)))) return;
        state.claimToken = token;
        // The next pass would ask for the job (unless another writer gave the record one
        // meanwhile: then the job is retired at the end), so register it now: a pass fewer.
        state.registeredJobId = await orUnavailable(this.whileHoldingClaim(app, owner, token, () => this.registerJob(app, owner)));
        return;
      }
      case "check-job":
        state.jobsAlive.set(detour.jobId, await orUnavailable(this.jobAlive(detour.jobId)));
        return;
      case "register-job":
        state.registeredJobId = await orUnavailable(this.whileHoldingClaim(app, owner, state.claimToken!, () => this.registerJob(app, owner)));
        return;
    }
  }

  private async jobAlive(jobId: string): Promise<boolean> {
    if (jobId === "") return false;
    return this.options.jobs.alive(jobId);
  }

  private async registerJob(app: IntegratedApp<unknown>, owner: Owner): Promise<string> {
    const base: JobSpecification = {
      product: { id: app.name, category: app.name, provider: this.options.providerId },
      application: { name: app.name, version: "latest" },
      name: app.name,
      replicas: 1,
      parameters: {},
      resources: [],
    };
    // Integrated jobs are always registered in the owner's personal workspace (as UCloud does).
    return this.options.jobs.register(app.mutateJobSpec(owner, base), owner.createdBy, null);
  }

  /**
   * Runs `register` while keeping the job claim alive: a registration with UCloud/Core may take
   * several calls, each up to `[ucloud] core_timeout`, and a claim that expired meanwhile would let
   * another replica register a second job.
   */
  private async whileHoldingClaim<T>(app: IntegratedApp<unknown>, owner: Owner, token: string, register: () => Promise<T>): Promise<T> {
    const ttl = this.options.jobClaimWaitMs;
    const timer = setInterval(() => {
      this.options.store.renewJobClaim(app.name, owner, token, ttl).catch(() => {});
    }, Math.max(Math.floor(ttl / 3), 10));
    try {
      return await register();
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Retires a job this change registered but never stored, unless the record uses it after all,
   * then gives back the claim: retiring first, while the claim still keeps other replicas from
   * adopting the job, means a retired job is never one a record has just taken.
   */
  private async cleanUp({ app, owner }: ChangeRequest, { claimToken, registeredJobId }: LoopState): Promise<void> {
    try {
      if (registeredJobId !== null && (await this.options.store.readFresh(app.name, owner))?.jobId !== registeredJobId) {
        await this.options.jobs.updateState(registeredJobId, "FAILURE", "Registered for a configuration change that did not complete");
        this.options.log?.("warn", "retired a job registered for a change that did not complete", { app: app.name, owner, jobId: registeredJobId });
      }
      if (claimToken !== null) await this.options.store.releaseJobClaim(app.name, owner, claimToken);
    } catch (e) {
      this.options.log?.("error", "could not clean up after an incomplete change", { app: app.name, owner, error: String(e) });
    }
  }
}

/**
 * One pass's decision on the record and claim it watches: the commit (with the change's answer),
 * or the step to take outside the transaction first. Throws the 409 or 412 of the preconditions
 * and whatever `intend` throws.
 */
function decide({ app, owner, pre, intend, via }: ChangeRequest, { record, claim }: Snapshot, state: Readonly<LoopState>): Decision {
  checkPreconditions(record, pre);
  const intent = intend(record);
  if (intent.kind === "nothing") return { commit: null, value: { etag: null, jobId: null } };

  // The record, when its job is alive.
  let live: StoredRecord | null = null;
  if (record !== null && record.state === "active" && record.jobId !== "") {
    const known = state.jobsAlive.get(record.jobId);
    // The record names another job than the one checked before the transaction.
    if (known === undefined || known instanceof Promise) return { commit: null, value: { step: "check-job", jobId: record.jobId } };
    if (known) live = record;
  }
  const reconcile = taskId("reconcile" satisfies TaskKind, app.name, owner);
  // Who made the change, for its version and its audit entry (spec §11).
  const at = new Date().toISOString();
  const author = { changedBy: owner.createdBy, via, requestId: currentRequestId() ?? "" };
  const audited = (kind: AuditKind, etag: string): AuditEntry => ({ app: app.name, owner: ownerName(owner), kind, etag, ...author, at });
  if (live && intent.kind === "restart") {
    return { commit: { enqueue: taskId("restart", app.name, owner), audit: audited("restart", live.etag) }, value: { etag: live.etag, jobId: live.jobId } };
  }
  if (live && intent.kind === "touch") {
    return { commit: { enqueue: reconcile }, value: { etag: live.etag, jobId: live.jobId } };
  }
  const config = intent.kind === "restart" || intent.kind === "touch" ? record!.config : intent.config;
  const etag = newEtag();
  const updatedAt = at;
  const resetMarker = intent.kind === "write" && intent.reset ? etag : undefined;
  // A write makes a version; a restart that needs a new job changes no configuration and makes none.
  const versionKind: VersionKind | null = intent.kind !== "write" ? null : (intent.as ?? (intent.reset ? "reset" : "update"));
  const version: Version | undefined = versionKind === null ? undefined : { etag, config, kind: versionKind, ...author, changedAt: at };
  const auditKind: AuditKind | null = versionKind ?? (intent.kind === "restart" ? "restart" : null);
  const audit = auditKind === null ? undefined : audited(auditKind, etag);
  if (live) {
    return {
      commit: { record: { config, etag, jobId: live.jobId, state: "active", updatedAt }, enqueue: reconcile, resetMarker, version, audit },
      value: { etag, jobId: live.jobId },
    };
  }

  // No record, a detached one, or one whose job is gone: a new job, registered by one writer only.
  const { claimToken, registeredJobId } = state;
  if (claim !== null && claim !== claimToken) return { commit: null, value: { step: "wait-for-claim" } };
  if (claimToken === null) return { commit: null, value: { step: "take-claim" } };
  if (registeredJobId === null) return { commit: null, value: { step: "register-job" } };
  return {
    commit: {
      record: { config, etag, jobId: registeredJobId, state: "active", updatedAt },
      releaseClaim: true,
      enqueue: reconcile,
      resetMarker,
      version,
      audit,
    },
    value: { etag, jobId: registeredJobId, usedJob: true },
  }
}

/** An owner as the audit stream names it: `<createdBy>` or `<createdBy>:<project>`. */
export function ownerName(owner: Owner): string {
  return owner.project === null ? owner.createdBy : `${owner.createdBy}:${owner.project}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
