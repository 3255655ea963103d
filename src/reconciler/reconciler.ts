// The reconciler: one level-triggered, idempotent function per (app, owner) that reads the
// record, its job and its pod, and closes the difference (spec §5). Running it twice in a row
// changes nothing the second time. Restart is a pod deletion followed by a reconcile.
// Every reconcile counts its outcome in the metrics (iapps_reconcile_total), and every object it
// creates or deletes in the cluster is a log line (info): app, owner, kind, name, and why.
// `check` runs the very same decisions read-only ("would you change anything?"): what the
// periodic resync asks of every record before it puts a reconcile on the queue, so the check
// can never disagree with the reconcile; every change to the world is refused with WouldChange.
// `creatingNow` tells the worker's watch whether a pod it sees first is one a create of this
// reconciler is answered with (its ADDED event then brings no reconcile).
// Imports src/apps, src/store, src/ucloud/jobs.ts, src/kubernetes/gateway.ts, src/metrics and this folder.

import type { V1Pod, V1Volume } from "@kubernetes/client-node";
import type { AppSettings, IntegratedApp, PodContext } from "../domain/app.ts";
import type { AppRegistry } from "../apps/registry.ts";
import type { AppRuntime, PortAllocator } from "../domain/runtime.ts";
import type { Storage } from "../domain/storage.ts";
import { taskId } from "../queue/tasks.ts";
import { type KubernetesGateway, statusOf } from "../kubernetes/gateway.ts";
import { metrics } from "../metrics/metrics.ts";
import { recordTag } from "../store/keys.ts";
import type { Owner } from "../domain/owner.ts";
import type { RecordStore } from "../store/records.ts";
import { isFinal, type Job, type JobRegistry, type JobState } from "../ucloud/jobs.ts";
import { ANNOTATIONS, buildNetworkPolicy, buildPod, buildService, LABELS, ownedByPod, ownedService, ownerLabel, podName, policyName } from "./objects.ts";

/** What the reconciler does with records: read them, and the few changes it makes to them. */
export type ReconcilerRecords = Pick<RecordStore, "read" | "detach" | "prune" | "resetPending" | "resetDone">;
/** What the reconciler sees of the cluster (the gateway's caches) and changes in it. */
export type ClusterView = Pick<
  KubernetesGateway,
  "podsByIndex" | "cachedService" | "cachedNetworkPolicy" | "getPod" | "createPod" | "deletePod" | "createService" | "deleteService" | "createNetworkPolicy" | "deleteNetworkPolicy"
>;

export interface ReconcilerOptions {
  store: ReconcilerRecords;
  jobs: Pick<JobRegistry, "retrieve" | "updateState">;
  apps: AppRegistry;
  settings: (app: string) => AppSettings;
  gateway: ClusterView;
  /** Storage, ports and leases for the apps' runtime hooks. */
  runtime: AppRuntime;
  /** The storage root's volume, which pods mount user data from (objects.ts `filesystemVolume`). */
  filesystem: V1Volume;
  log: (level: "debug" | "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;
}

/**
 * What one reconcile did: `in-sync` (nothing to change), `created` (a pod), `replaced` (deleted
 * an outdated pod; its successor follows), `stopped` (no pod should run), `blocked` (a pod should
 * run but cannot start), `detached` (the job is gone), `waiting` (a pod is on its way out),
 * `skipped` (no record, no job, or a disabled app), `pruned` (part of the configuration had to go: a
 * new version was stored, and its own reconcile follows). Failures count as `aborted` (lease lost) or `error`.
 */
export type ReconcileOutcome = "in-sync" | "created" | "replaced" | "stopped" | "blocked" | "detached" | "waiting" | "skipped" | "pruned";

/** What `check` answers for a record whose reconcile would change something: what, in words. */
export class WouldChange extends Error {}

/** What one resync pass gives `check` beyond the reconciler's own options. */
export interface CheckOptions {
  /** Storage for the pass (drive metadata cached across the pass: src/store/drives.ts); else the runtime's. */
  storage?: Storage;
  /**
   * The tags (`recordTag`) of the records that owe a reset, as the pass's SCAN found them; without
   * it, each check reads its record's marker.
   */
  resetsPending?: ReadonlySet<string>;
}

/** The kinds of object the reconciler changes, and how a log line names them. */
const KINDS = { Pod: "a pod", Service: "a service", NetworkPolicy: "a network policy" } as const;
type Kind = keyof typeof KINDS;

/**
 * "Run me again after": when the record's wants change by themselves (a terminal's lease running
 * out), in how many ms to reconcile it again; null when nothing changes by itself. The caller
 * schedules it (as controller-runtime's `Result{RequeueAfter}`): the reconciler knows no queue.
 */
export interface ReconcileResult {
  requeueAfterMs: number | null;
}

export class Reconciler {
  /** The pods this reconciler is creating right now, by name: what the create answers. */
  private readonly creating = new Map<string, Promise<V1Pod>>();

  constructor(private readonly options: ReconcilerOptions) {}

  /**
   * Whether `pod` (a watch's first sight of it) is the very pod one of this reconciler's creates
   * in flight answers with (same uid and resourceVersion): the reconcile creating it acts on it
   * already, so its ADDED event, when the watch is quicker than the create's answer, brings
   * nothing to reconcile. False for anything else (another version, another pod, a failed create).
   */
  async creatingNow(pod: V1Pod): Promise<boolean> {
    const create = this.creating.get(pod.metadata?.name ?? "");
    if (create === undefined) return false;
    const created = await create.catch(() => null);
    return created !== null && created.metadata?.uid === pod.metadata?.uid && created.metadata?.resourceVersion === pod.metadata?.resourceVersion;
  }

  async reconcile(appName: string, owner: Owner, signal?: AbortSignal): Promise<ReconcileResult> {
    // Only enabled apps name a series: a task id naming anything else cannot add one.
    const app = this.options.apps.get(appName) ? appName : "unknown";
    let outcome: ReconcileOutcome | "aborted" | "error" = "error";
    try {
      const result = await this.converge(appName, owner, signal);
      outcome = result.outcome;
      return { requeueAfterMs: result.requeueAfterMs ?? null };
    } catch (e) {
      if (signal?.aborted) outcome = "aborted";
      throw e;
    } finally {
      metrics.reconciles.inc({ app, outcome });
    }
  }

  private async converge(appName: string, owner: Owner, signal?: AbortSignal): Promise<{ outcome: ReconcileOutcome; requeueAfterMs?: number }> {
    // Before every change to the world: a task whose lease was lost stops here.
    const stop = () => signal?.throwIfAborted();
    const { store, jobs, apps, gateway } = this.options;
    const app = apps.get(appName);
    if (!app) return { outcome: "skipped" }; // a disabled app's records are left as they are
    const record = await store.read(appName, owner);
    if (!record || record.jobId === "") return { outcome: "skipped" };
    const name = podName(record.jobId);
    const tag = recordTag(appName, owner);
    // One list finds the job's pod and any pod left from an earlier job of this record (a new job
    // registered before the old one's pod was gone): those go, with what they held.
    const pods = await gateway.podsByIndex(LABELS.owner, ownerLabel(tag));
    for (const orphan of pods.filter((p) => p.metadata?.name !== name)) {
      stop();
      const orphanJob = orphan.metadata?.labels?.[LABELS.jobId];
      if (await gateway.deletePod(orphan.metadata!.name!)) {
        this.changed("deleted", "Pod", orphan.metadata!.name!, appName, owner, { why: `it belongs to an earlier job (${orphanJob ?? "unknown"})` });
      }
      if (orphanJob) await app.release(orphanJob, this.options.runtime);
    }
    let pod = pods.find((p) => p.metadata?.name === name) ?? null;

    const job = record.state === "active" ? await jobs.retrieve(record.jobId) : null;
    if (!job || isFinal(job.state)) {
      if (record.state === "active") {
        stop();
        await store.detach(appName, owner, record.jobId);
        this.options.log("info", "detached a record whose job is gone or final", { app: appName, owner, jobId: record.jobId });
      }
      stop();
      if (pod && (await gateway.deletePod(name))) this.changed("deleted", "Pod", name, appName, owner, { why: "its job is gone or final" });
      await app.release(record.jobId, this.options.runtime);
      return { outcome: "detached" };
    }

    const base = {
      owner,
      jobId: record.jobId,
      etag: record.etag,
      config: record.config,
      settings: this.options.settings(appName),
      filesystem: this.options.filesystem,
    };
    const context: PodContext<unknown> = { ...base, facts: await app.observe({ ...base, pod }, this.options.runtime) };
    // Part of the configuration must go by itself (a folder marked restricted since): stored as a
    // new version, whose reconcile (enqueued by that write) replaces the pod.
    const pruned = app.prune?.(context) ?? null;
    if (pruned !== null) {
      stop();
      if (await store.prune(appName, owner, record.etag, pruned.config, pruned.warnings, taskId("reconcile", appName, owner))) {
        this.options.log("info", "removed what the configuration may no longer hold", { app: appName, owner, warnings: pruned.warnings });
        return { outcome: "pruned" };
      }
      return { outcome: "waiting" }; // the record changed meanwhile: its own reconcile follows
    }
    const shouldRun = app.shouldRun(context);
    // A lease running out changes what the app wants by itself: look again just after.
    const recheck = app.recheckAfter(context);
    const done = (outcome: ReconcileOutcome) => (recheck === null ? { outcome } : { outcome, requeueAfterMs: recheck + 50 });

    if (pod) {
      // A pod on its way out: its DELETED event brings us back.
      if (pod.metadata?.deletionTimestamp) return done("waiting");
      const phase = pod.status?.phase;
      const outdated = this.outdated(app, pod, context);
      if (outdated === null && shouldRun && phase !== "Succeeded" && phase !== "Failed") {
        stop();
        await this.ensureCompanions(app, context, pod);
        await this.setState(job, phase === "Running" ? "RUNNING" : "IN_QUEUE");
        return done("in-sync");
      }
      stop();
      if (await gateway.deletePod(name)) {
        this.changed("deleted", "Pod", name, appName, owner, { why: outdated ?? (shouldRun ? `phase ${phase}` : "should not run") });
      }
      await this.setState(job, "SUSPENDED");
      // Where deletion is immediate the new pod follows now; elsewhere its DELETED event brings us back.
      pod = await gateway.getPod(name);
      if (pod) return done("replaced");
    }

    // No pod of this job runs now: a reset's side effects can be done without a pod undoing them.
    const reset = await store.resetPending(appName, owner);
    if (reset !== null) {
      stop();
      await app.reset(owner, this.options.runtime);
      await store.resetDone(appName, owner, reset);
      this.options.log("info", "did a reset's side effects", { app: appName, owner });
    }

    if (!shouldRun) {
      stop();
      await app.release(record.jobId, this.options.runtime);
      await this.setState(job, "SUSPENDED");
      return done("stopped");
    }
    stop();
    const blocked = await app.prepareStart(context, this.options.runtime);
    if (blocked !== null) {
      // Reported where operators and users look, and left for the resync to try again: no retry storm.
      if (job.status !== blocked) this.options.log("warn", "a pod cannot start", { app: appName, owner, jobId: record.jobId, why: blocked });
      await this.setState(job, "SUSPENDED", blocked);
      return done("blocked");
    }
    let created: V1Pod;
    try {
      stop();
      const create = gateway.createPod(buildPod(app, context, tag));
      this.creating.set(name, create);
      try {
        created = await create;
      } finally {
        this.creating.delete(name);
      }
    } catch (e) {
      // Another worker (a restart racing a reconcile) created it first: its events bring us back.
      if (statusOf(e) === 409) return done("in-sync");
      throw e;
    }
    this.changed("created", "Pod", name, appName, owner, { etag: record.etag });
    stop();
    await this.ensureCompanions(app, context, created);
    await this.setState(job, "IN_QUEUE");
    return done("created");
  }

  /**
   * Whether a reconcile of (app, owner) would change anything now: null when it would not, else
   * what it would do first. The same decisions as `reconcile`, on the same reads (the record, its
   * job, the watch caches, what the app observes), with every change to the world, to the record,
   * the job, a port or a file refused; nothing is logged or counted. Anything else that fails
   * (Redis, the file system) throws: the caller enqueues a reconcile, which knows what to do.
   */
  async check(appName: string, owner: Owner, options: CheckOptions = {}): Promise<string | null> {
    const real = this.options;
    const refuse = (what: string) => async (): Promise<never> => {
      throw new WouldChange(what);
    };
    // A port is read once per check however often it is asked for (observe, then release).
    const held = new Map<string, Promise<number | null>>();
    const portOf = (pool: string, jobId: string) => {
      const key = `${pool}\n${jobId}`;
      const known = held.get(key) ?? real.runtime.ports.portOf(pool, jobId);
      held.set(key, known);
      return known;
    };
    const ports: PortAllocator = {
      portOf,
      allocate: refuse("claim a port"),
      release: async (pool, jobId) => {
        if ((await portOf(pool, jobId)) !== null) throw new WouldChange("give a port back");
      },
    };
    const storage = options.storage ?? real.runtime.storage;
    const resets = options.resetsPending;
    const dry = new Reconciler({
      ...real,
      log: () => {},
      store: {
        read: (app, who) => real.store.read(app, who),
        resetPending: async (app, who) => (resets === undefined ? real.store.resetPending(app, who) : resets.has(recordTag(app, who)) ? "pending" : null),
        detach: refuse("detach the record from its job"),
        prune: refuse("prune the configuration"),
        resetDone: refuse("finish a reset"),
      },
      jobs: { retrieve: (id) => real.jobs.retrieve(id), updateState: refuse("update the job's state") },
      gateway: {
        podsByIndex: (label, value) => real.gateway.podsByIndex(label, value),
        cachedService: (name) => real.gateway.cachedService(name),
        cachedNetworkPolicy: (name) => real.gateway.cachedNetworkPolicy(name),
        getPod: refuse("read a pod it deleted"),
        createPod: refuse("create a pod"),
        deletePod: refuse("delete a pod"),
        createService: refuse("create a service"),
        deleteService: refuse("delete a service"),
        createNetworkPolicy: refuse("create a network policy"),
        deleteNetworkPolicy: refuse("delete a network policy"),
      },
      runtime: {
        ports,
        leases: { remaining: (app, who) => real.runtime.leases.remaining(app, who), refresh: refuse("refresh a lease") },
        storage: {
          access: (who, path) => storage.access(who, path),
          accessAll: (who, paths) => storage.accessAll(who, paths),
          sensitivity: (path) => storage.sensitivity(path),
          serviceFolder: (who, name) => storage.serviceFolder(who, name),
          writeServiceFiles: refuse("write the service's files"),
          wipeServiceFolder: refuse("wipe the service's folder"),
        },
      },
    });
    try {
      await dry.converge(appName, owner);
      return null;
    } catch (e) {
      if (e instanceof WouldChange) return e.message;
      throw e;
    }
  }

  /** Deletes the rank-0 pod (grace period 0, background propagation); the reconcile recreates it. */
  async restart(appName: string, owner: Owner, signal?: AbortSignal): Promise<ReconcileResult> {
    const record = await this.options.store.read(appName, owner);
    if (record?.state !== "active" || record.jobId === "") return { requeueAfterMs: null };
    signal?.throwIfAborted();
    const name = podName(record.jobId);
    if (await this.options.gateway.deletePod(name)) this.changed("deleted", "Pod", name, appName, owner, { why: "restart" });
    return this.reconcile(appName, owner, signal);
  }

  /** Why a running pod no longer fits its record, or null when it does. */
  private outdated(app: IntegratedApp<unknown>, pod: V1Pod, context: PodContext<unknown>): string | null {
    const annotations = pod.metadata?.annotations ?? {};
    if (annotations[ANNOTATIONS.etag] !== context.etag) return "its ETag is outdated";
    if (annotations[ANNOTATIONS.version] !== app.version(context.settings)) return "its version is outdated";
    if (!app.podMatches(pod, context)) return "it no longer matches the configuration";
    return null;
  }

  /**
   * The pod's services and network policy exist, and belong to this pod (not an earlier one).
   * Each object is independent of the others: they are made at once, not one after another
   * (after a restart of role `all`, every pod's three companions are made anew).
   */
  private async ensureCompanions(app: IntegratedApp<unknown>, context: PodContext<unknown>, pod: V1Pod) {
    const { gateway } = this.options;
    const changed = (verb: "created" | "deleted", kind: Kind, name: string, why: string) => this.changed(verb, kind, name, app.name, context.owner, { why });
    const why = { deleted: "it belonged to an earlier pod", created: `for pod ${pod.metadata?.name}` };
    const services = [buildService(app, context, pod), ...app.extraServices(context).map((s) => ownedService(s, pod))].map(async (wanted) => {
      const name = wanted.metadata!.name!;
      const service = await gateway.cachedService(name);
      if (service && ownedByPod(service, pod)) return;
      if (service && (await gateway.deleteService(name))) changed("deleted", "Service", name, why.deleted);
      if (await createOrKeep(() => gateway.createService(wanted))) changed("created", "Service", name, why.created);
    });
    const policy = (async () => {
      const name = policyName(context.jobId);
      const policy = await gateway.cachedNetworkPolicy(name);
      if (policy && ownedByPod(policy, pod)) return;
      if (policy && (await gateway.deleteNetworkPolicy(name))) changed("deleted", "NetworkPolicy", name, why.deleted);
      if (await createOrKeep(() => gateway.createNetworkPolicy(buildNetworkPolicy(app, context, pod)))) changed("created", "NetworkPolicy", name, why.created);
    })();
    // Every one settled before an error is thrown: none left running after the reconcile ends.
    const failed = (await Promise.allSettled([...services, policy])).find((outcome) => outcome.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** A create or delete in the cluster, as a log line: `created a pod`, with the app, owner, kind, name and what else explains it. */
  private changed(verb: "created" | "deleted", kind: Kind, name: string, app: string, owner: Owner, more: Record<string, unknown> = {}) {
    this.options.log("info", `${verb} ${KINDS[kind]}`, { app, owner, kind, name, ...more });
  }

  private async setState(job: Job, state: JobState, status = "") {
    if (job.state === state && job.status === status) return;
    await this.options.jobs.updateState(job.id, state, status);
    job.state = state;
    job.status = status;
  }
}

/**
 * Whether a pod's new version differs from the old in anything a reconcile decides on: its
 * phase, its deletion, its labels and annotations (owner, job, ETag, version, the app's own).
 * Anything else (a condition, an IP) cannot change what a reconcile does.
 */
export function podChangeMatters(previous: V1Pod, next: V1Pod): boolean {
  if (previous.status?.phase !== next.status?.phase) return true;
  if ((previous.metadata?.deletionTimestamp === undefined) !== (next.metadata?.deletionTimestamp === undefined)) return true;
  return !sameStrings(previous.metadata?.labels, next.metadata?.labels) || !sameStrings(previous.metadata?.annotations, next.metadata?.annotations);
}

function sameStrings(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const left = Object.entries(a ?? {});
  if (left.length !== Object.keys(b ?? {}).length) return false;
  return left.every(([key, value]) => b?.[key] === value);
}

/** Creates an object; false when one of its name exists already (another worker made it). */
async function createOrKeep(create: () => Promise<unknown>): Promise<boolean> {
  try {
    await create();
    return true;
  } catch (e) {
    if (statusOf(e) !== 409) throw e;
    return false;
  }
}
