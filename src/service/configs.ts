// The four configuration operations (retrieve, update, reset, restart) and the rules of spec §3
// and §4: ETag checks, validation before storing, exactly one job per record, new jobs for
// detached records; and the terminal's open and activity (spec §2, §8), through the same
// transaction loop. Knows nothing of HTTP or Kubernetes.
// Imports src/apps, src/store, src/domain/storage.ts (types), src/queue/tasks.ts,
// src/ucloud/jobs.ts and src/base/errors.ts.

import * as v from "valibot";
import type { IntegratedApp, JobSpecification } from "../domain/app.ts";
import type { AppRegistry } from "../apps/registry.ts";
import type { AppRuntime } from "../domain/runtime.ts";
import { drivePathOf, type TerminalConfig } from "../apps/terminal.ts";
import {
  AppError,
  configurationTooLarge,
  etagMismatch,
  invalidConfiguration,
  invalidRequest,
  notFound,
  preconditionFailed,
  preconditionRequired,
  unavailable,
  unknownApplication,
} from "../base/errors.ts";
import { type TaskKind, taskId } from "../queue/tasks.ts";
import type { Owner } from "../domain/owner.ts";
import { type Commit, newEtag, type RecordStore, type Snapshot } from "../store/records.ts";
import type { StoredRecord } from "../domain/record.ts";
import { AmbiguousCommitError, isRedisUnavailable, PoolExhaustedError } from "../store/redis-errors.ts";
import type { FolderAccess } from "../domain/storage.ts";
import { isFinal, type JobRegistry } from "../ucloud/jobs.ts";

/** The ETag of a configuration that was never stored. */
export const INITIAL_ETAG = "initial";

/** `If-Match` as parsed by the HTTP layer: `*`, or a list of strong ETags. */
export type IfMatch = "*" | string[];

export interface Preconditions {
  /** From the body: a mismatch answers 409. */
  expectedETag: string | null;
  /** From the `If-Match` header: a mismatch answers 412. */
  ifMatch: IfMatch | null;
}

export const NO_PRECONDITIONS: Preconditions = { expectedETag: null, ifMatch: null };

export interface ConfigServiceOptions {
  apps: AppRegistry;
  store: RecordStore;
  jobs: JobRegistry;
  providerId: string;
  requireEtag: boolean;
  /** How long to wait for another replica registering the same record's first job. */
  jobClaimWaitMs: number;
  /** Storage, ports and leases: for the terminal's open and activity (required by them). */
  runtime?: AppRuntime;
  /** `[apps.terminal] inactivity`: how long an open or activity keeps the terminal alive. Default 15 minutes. */
  terminalInactivityMs?: number;
  log?: (level: "warn" | "error", message: string, fields?: Record<string, unknown>) => void;
}

export interface View {
  etag: string;
  config: unknown;
  /** What the service itself removed from the configuration, and why (a folder marked restricted); absent when nothing. */
  warnings?: string[];
}

/** What an operation wants to become of the record it read. */
type Intent =
  | { kind: "nothing" }
  /** `reset`: the app's reset side effects (Syncthing's state wipe) are owed once the old pod is gone. */
  | { kind: "write"; config: unknown; reset?: boolean }
  | { kind: "restart" }
  /**
   * Keep the configuration and its ETag, and have the worker look at the record again (a
   * terminal's lease came back). A record whose job is gone gets a new job and ETag, as a restart.
   */
  | { kind: "touch" };

/**
 * A committed change: the record's ETag and job afterwards (null: nothing stored), and whether it
 * stored the job this call registered.
 */
interface Written {
  etag: string | null;
  jobId: string | null;
  usedJob?: boolean;
}

/** What a terminal open answers (spec §2). */
export interface TerminalOpened {
  jobId: string;
  etag: string;
  /** Why folders were not added, or were taken out of the terminal, in words a user can act on. */
  warnings: string[];
}

const TERMINAL = "terminal";
const DEFAULT_TERMINAL_INACTIVITY_MS = 15 * 60_000;

/** Steps the transaction loop takes outside a transaction before trying again. */
type Detour = "wait-for-claim" | "take-claim" | "register-job" | "check-job";

const MAX_CONFLICT_RETRIES = 100;

export class ConfigService {
  constructor(private readonly options: ConfigServiceOptions) {}

  /** An app with configuration routes (the terminal has none: it is internal). */
  configurableApp(name: string): IntegratedApp<unknown> {
    const app = this.options.apps.get(name);
    if (!app || app.internal) throw unknownApplication(name);
    return app;
  }

  async retrieve(appName: string, owner: Owner): Promise<View> {
    const app = this.configurableApp(appName);
    const record = await guard(this.options.store.read(app.name, owner));
    if (!record) return { etag: INITIAL_ETAG, config: app.defaultConfig(owner) };
    return record.warnings === undefined ? { etag: record.etag, config: record.config } : { etag: record.etag, config: record.config, warnings: record.warnings };
  }

  /** Validates `rawConfig` and stores it with a new ETag. Answers the new ETag. */
  async update(appName: string, owner: Owner, rawConfig: unknown, pre: Preconditions): Promise<{ etag: string }> {
    const app = this.configurableApp(appName);
    if (this.options.requireEtag && pre.expectedETag === null && pre.ifMatch === null) throw preconditionRequired();
    const config = validateConfig(app, rawConfig);
    await this.admit(app, owner, config);
    const result = await this.change(app, owner, pre, () => ({ kind: "write", config }));
    return { etag: result.etag! };
  }

  /** Stores the default configuration with a new ETag; with no record, does nothing. */
  async reset(appName: string, owner: Owner, pre: Preconditions): Promise<{ etag: string | null }> {
    const app = this.configurableApp(appName);
    // The side effects (Syncthing wipes its state folder) are the worker's, once the old pod is
    // gone: a pod still running could write its state again right after a wipe done here.
    const result = await this.change(app, owner, pre, (record) =>
      record === null ? { kind: "nothing" } : { kind: "write", config: app.defaultConfig(owner), reset: true },
    );
    return { etag: result.etag };
  }

  /** Asks the worker to recreate the job's pod; a record whose job is gone gets a new job. */
  async restart(appName: string, owner: Owner, pre: Preconditions): Promise<{ etag: string }> {
    const app = this.configurableApp(appName);
    const result = await this.change(app, owner, pre, (record) => {
      if (record === null) throw notFound(`There is no ${app.name} configuration to restart. Save a configuration first.`);
      return { kind: "restart" };
    });
    return { etag: result.etag! };
  }

  /**
   * Opens the owner's terminal on `folder` (spec §2, §8): adds the folder's drive `/<driveId>` to
   * the terminal's folder list (deduplicated, order kept), refreshes the inactivity lease, and
   * answers the job, the ETag and why folders were left out.
   *
   * - A drive the owner cannot use (storage access "none") is not added; the open still succeeds
   *   and says why in `warnings`. A folder already in the list that became unusable (drive locked,
   *   membership gone) is taken out the same way: it would keep the terminal from running at all.
   * - An idle terminal (its lease ran out, so it has no pod) starts afresh with the drive opened
   *   now, as UCloud does: otherwise the list only grows, and every drive ever opened stays mounted.
   * - A changed list is a write: new ETag, reconcile (the pod is replaced with the new mounts).
   *   An unchanged list keeps the ETag, because the ETag is the pod's identity and a new one would
   *   replace a running terminal under the user's open shells; it still enqueues a reconcile, so
   *   a pod that went with an expired lease comes back. A record whose job is gone gets a new job
   *   and a new ETag, as a restart does. The first open registers the terminal's job.
   * - The lease is refreshed before the record's transaction, so the reconcile that transaction
   *   enqueues finds it alive.
   */
  async openTerminal(owner: Owner, folder: string): Promise<TerminalOpened> {
    const app = this.terminalApp();
    const { storage, leases } = this.runtime();
    const drive = drivePathOf(folder);
    if (drive === null) throw invalidRequest(`folder: expected a UCloud path naming a drive, such as "/home-${owner.createdBy}"`);

    const [seen, leaseMs] = await guard(Promise.all([this.options.store.read(app.name, owner), leases.remaining(app.name, owner)]));
    const idle = leaseMs === 0;
    const listed = seen === null || idle ? [] : (seen.config as TerminalConfig).folders;
    const toCheck = [...new Set([...listed, drive])];
    const access = new Map<string, FolderAccess>();
    const checked = await Promise.all(toCheck.map((path) => storage.access(owner, path)));
    for (const [index, path] of toCheck.entries()) access.set(path, checked[index]!);

    await guard(leases.refresh(app.name, owner, this.terminalInactivityMs));

    let warnings: string[] = [];
    const result = await this.change(app, owner, NO_PRECONDITIONS, (record) => {
      const stored = record === null ? [] : (record.config as TerminalConfig).folders;
      // Start afresh only from the list that was judged idle: a concurrent open may have just added to it.
      const base = idle && record?.etag === seen?.etag ? [] : stored;
      const folders: string[] = [];
      warnings = [];
      for (const path of [...base, drive]) {
        if (folders.includes(path)) continue;
        const found = access.get(path);
        if (found?.access === "none") {
          const why = found.why ?? "it cannot be used";
          warnings.push(path === drive ? `${path} was not added to the terminal: ${why}.` : `${path} was taken out of the terminal: ${why}.`);
          continue;
        }
        folders.push(path);
      }
      if (record !== null && sameList(folders, stored)) return { kind: "touch" };
      return { kind: "write", config: validateConfig(app, { folders }) };
    });
    return { jobId: result.jobId!, etag: result.etag!, warnings };
  }

  /**
   * A key press in the owner's terminal: refreshes its inactivity lease. When the lease had run
   * out (the pod is gone or going), the worker is asked to look again at once rather than at the
   * next resync. No record: 404.
   */
  async terminalActivity(owner: Owner): Promise<void> {
    const app = this.terminalApp();
    const { leases } = this.runtime();
    const noTerminal = () => notFound("There is no terminal to keep alive: open one first.");
    if ((await guard(this.options.store.read(app.name, owner))) === null) throw noTerminal();
    const left = await guard(leases.remaining(app.name, owner));
    await guard(leases.refresh(app.name, owner, this.terminalInactivityMs));
    if (left === 0) {
      await this.change(app, owner, NO_PRECONDITIONS, (record) => {
        if (record === null) throw noTerminal();
        return { kind: "touch" };
      });
    }
  }

  private terminalApp(): IntegratedApp<unknown> {
    const app = this.options.apps.get(TERMINAL);
    if (!app) throw unknownApplication(TERMINAL);
    return app;
  }

  private runtime(): AppRuntime {
    const { runtime } = this.options;
    if (!runtime) throw new Error("ConfigService: the terminal and admission rules need the `runtime` option");
    return runtime;
  }

  /** The app's rules that look beyond the configuration (Syncthing's restricted folders). */
  private async admit(app: IntegratedApp<unknown>, owner: Owner, config: unknown): Promise<void> {
    if (!app.admit) return;
    const problem = await guard(app.admit(owner, config, this.runtime()));
    if (problem) throw invalidConfiguration(`config.${problem.path}: ${problem.reason}`);
  }

  private get terminalInactivityMs(): number {
    return this.options.terminalInactivityMs ?? DEFAULT_TERMINAL_INACTIVITY_MS;
  }

  /**
   * The transaction loop behind every write. Each pass watches the record, decides, and either
   * commits or names a detour (wait for, take, or act on the job claim) to take before the next
   * pass. Only the holder of the claim registers a job, so concurrent first updates on any number
   * of replicas register exactly one.
   */
  private async change(
    app: IntegratedApp<unknown>,
    owner: Owner,
    pre: Preconditions,
    intend: (record: StoredRecord | null) => Intent,
  ): Promise<{ etag: string | null; jobId: string | null }> {
    const { store } = this.options;
    let claimToken: string | null = null;
    let unusedJobId: string | null = null;
    const claimDeadline = Date.now() + this.options.jobClaimWaitMs;
    // Whether the record's job is alive is asked of the registry (Redis, or UCloud/Core over
    // HTTP) before the transaction, not while it holds a connection watching the record.
    const jobs = new Map<string, boolean>();
    const toCheck: { jobId: string | null } = { jobId: null };
    const seen = await guard(store.read(app.name, owner));
    if (seen?.state === "active" && seen.jobId !== "") jobs.set(seen.jobId, await guard(this.jobAlive(seen.jobId)));
    try {
      for (let pass = 0; ; pass++) {
        const outcome = await guard(
          store.attempt<Written | Detour>(app.name, owner, (snapshot) =>
            this.decide(app, owner, pre, intend, snapshot, claimToken, unusedJobId, jobs, toCheck),
          ).catch((e: unknown) => {
            // The record may now point at the job we registered: never retire it then.
            if (e instanceof AmbiguousCommitError) unusedJobId = null;
            throw e;
          }),
        );
        if (!outcome.committed) {
          if (pass >= MAX_CONFLICT_RETRIES) throw unavailable("The configuration is being changed by many writers at once; try again.");
          await sleep(Math.random() * Math.min(2 ** pass, 50));
          continue;
        }
        const value = outcome.value;
        if (value === "wait-for-claim" || value === "take-claim") {
          if (Date.now() > claimDeadline) {
            throw unavailable("Another request is still registering this application's job; try again in a moment.");
          }
          if (value === "take-claim") {
            const token = newEtag();
            if (await guard(store.claimJob(app.name, owner, token, this.options.jobClaimWaitMs))) claimToken = token;
          } else {
            await sleep(10 + Math.random() * 10);
          }
          continue;
        }
        if (value === "check-job") {
          jobs.set(toCheck.jobId!, await guard(this.jobAlive(toCheck.jobId!)));
          continue;
        }
        if (value === "register-job") {
          unusedJobId = await guard(this.whileHoldingClaim(app, owner, claimToken!, () => this.registerJob(app, owner)));
          continue;
        }
        // The record may use the job we registered without this call storing it (another replica
        // adopted it from the registry): it is not ours to retire then.
        if (value.jobId !== null && value.jobId === unusedJobId) unusedJobId = null;
        if (value.usedJob) {
          // The commit stored the job and deleted the claim in the same EXEC.
          unusedJobId = null;
          claimToken = null;
        }
        return { etag: value.etag, jobId: value.jobId };
      }
    } finally {
      await this.cleanUp(app, owner, claimToken, unusedJobId);
    }
  }

  private async decide(
    app: IntegratedApp<unknown>,
    owner: Owner,
    pre: Preconditions,
    intend: (record: StoredRecord | null) => Intent,
    { record, claim }: Snapshot,
    claimToken: string | null,
    registeredJobId: string | null,
    jobs: Map<string, boolean>,
    toCheck: { jobId: string | null },
  ): Promise<{ commit: Commit; value: Written } | { commit: null; value: Written | Detour }> {
    checkPreconditions(record, pre);
    const intent = intend(record);
    if (intent.kind === "nothing") return { commit: null, value: { etag: null, jobId: null } };

    // The record, when its job is alive.
    let live: StoredRecord | null = null;
    if (record !== null && record.state === "active" && record.jobId !== "") {
      const known = jobs.get(record.jobId);
      if (known === undefined) {
        // The record names another job than the one checked before the transaction.
        toCheck.jobId = record.jobId;
        return { commit: null, value: "check-job" };
      }
      if (known) live = record;
    }
    const reconcile = taskId("reconcile" satisfies TaskKind, app.name, owner);
    if (live && intent.kind === "restart") {
      return { commit: { enqueue: taskId("restart", app.name, owner) }, value: { etag: live.etag, jobId: live.jobId } };
    }
    if (live && intent.kind === "touch") {
      return { commit: { enqueue: reconcile }, value: { etag: live.etag, jobId: live.jobId } };
    }
    const config = intent.kind === "restart" || intent.kind === "touch" ? record!.config : intent.config;
    const etag = newEtag();
    const updatedAt = new Date().toISOString();
    const resetMarker = intent.kind === "write" && intent.reset ? etag : undefined;
    if (live) {
      return {
        commit: { record: { config, etag, jobId: live.jobId, state: "active", updatedAt }, enqueue: reconcile, resetMarker },
        value: { etag, jobId: live.jobId },
      };
    }

    // No record, a detached one, or one whose job is gone: a new job, registered by one writer only.
    if (claim !== null && claim !== claimToken) return { commit: null, value: "wait-for-claim" };
    if (claimToken === null) return { commit: null, value: "take-claim" };
    if (registeredJobId === null) return { commit: null, value: "register-job" };
    return {
      commit: {
        record: { config, etag, jobId: registeredJobId, state: "active", updatedAt },
        releaseClaim: true,
        enqueue: reconcile,
        resetMarker,
      },
      value: { etag, jobId: registeredJobId, usedJob: true },
    };
  }

  private async jobAlive(jobId: string): Promise<boolean> {
    if (jobId === "") return false;
    const job = await this.options.jobs.retrieve(jobId);
    return job !== null && !isFinal(job.state);
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
   * Retires a job this call registered but never stored, unless the record uses it after all,
   * then gives back the claim: retiring first, while the claim still keeps other replicas from
   * adopting the job, means a retired job is never one a record has just taken.
   */
  private async cleanUp(app: IntegratedApp<unknown>, owner: Owner, claimToken: string | null, unusedJobId: string | null) {
    try {
      if (unusedJobId !== null && (await this.options.store.readFresh(app.name, owner))?.jobId !== unusedJobId) {
        await this.options.jobs.updateState(unusedJobId, "FAILURE", "Registered for a configuration change that did not complete");
        this.options.log?.("warn", "retired a job registered for a change that did not complete", { app: app.name, owner, jobId: unusedJobId });
      }
      if (claimToken !== null) await this.options.store.releaseJobClaim(app.name, owner, claimToken);
    } catch (e) {
      this.options.log?.("error", "could not clean up after an incomplete change", { app: app.name, owner, error: String(e) });
    }
  }
}

/** Validates a configuration against the app's schema and rules; names the field at fault. */
/**
 * The most a stored configuration may take, as UTF-8 JSON: every replica's cache, every retrieve
 * and every reconcile carries it whole. 1,000 Syncthing folders and devices of ordinary length
 * take about a third of it; the request body limit alone (an operator may raise it) is no bound.
 */
export const MAX_CONFIG_BYTES = 512 * 1024;

const utf8 = new TextEncoder();

/** The configuration as it will be stored, or the 400 (or 413, over MAX_CONFIG_BYTES) saying why not. */
export function validateConfig(app: IntegratedApp<unknown>, raw: unknown): unknown {
  const result = v.safeParse(app.configSchema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const path = v.getDotPath(issue);
    throw invalidConfiguration(`${formatPath(path)}: ${describe(issue)}`);
  }
  const problem = app.validate(result.output);
  if (problem) throw invalidConfiguration(`config.${problem.path}: ${problem.reason}`);
  // Measured as stored: unknown fields are gone, ids and defaults filled in.
  const bytes = utf8.encode(JSON.stringify(result.output)).length;
  if (bytes > MAX_CONFIG_BYTES) throw configurationTooLarge(bytes, MAX_CONFIG_BYTES);
  return result.output;
}

function formatPath(dotPath: string | null): string {
  if (!dotPath) return "config";
  return `config.${dotPath.replace(/\.(\d+)(?=\.|$)/g, "[$1]")}`;
}

function describe(issue: v.BaseIssue<unknown>): string {
  if (issue.expected && issue.received && /^Invalid (type|key)/.test(issue.message)) {
    return `expected ${issue.expected}, got ${issue.received}`;
  }
  return issue.message;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, index) => item === b[index]);
}

function checkPreconditions(record: StoredRecord | null, pre: Preconditions) {
  const current = record?.etag ?? INITIAL_ETAG;
  if (pre.expectedETag !== null && pre.expectedETag !== current) throw etagMismatch();
  if (pre.ifMatch !== null) {
    const matches = pre.ifMatch === "*" ? record !== null : pre.ifMatch.includes(current);
    if (!matches) throw preconditionFailed();
  }
}

/** Turns "Redis is unreachable" into a 503 at the edge of every operation. */
async function guard<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof AppError) throw e;
    if (e instanceof PoolExhaustedError) {
      throw unavailable("This replica has too many changes in flight right now; try again in a moment.", e);
    }
    if (isRedisUnavailable(e)) throw unavailable("The configuration store cannot be reached right now; try again in a moment.", e);
    throw e;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
