// Starts a worker for a service context: with given task handlers (tests), or with the
// reconciler, its watch caches and its read-only check for the resync (roles worker and all).
// Imports src/service/context.ts, the connection factory of src/store/connections.ts (for the
// blocking connection), src/store/drives.ts and src/storage/local.ts (the resync's storage, drive
// metadata cached), src/kubernetes, src/reconciler, src/base/log.ts and src/worker/*.

import type { V1Pod } from "@kubernetes/client-node";
import { KubernetesGateway } from "../kubernetes/gateway.ts";
import { log } from "../base/log.ts";
import { ANNOTATIONS, filesystemVolume, LABELS, podName } from "../reconciler/objects.ts";
import { podChangeMatters, Reconciler } from "../reconciler/reconciler.ts";
import { LocalStorage } from "../storage/local.ts";
import { DriveMetadataCache } from "../store/drives.ts";
import type { ServiceContext } from "../service/context.ts";
import { createClient } from "../store/connections.ts";
import type { TaskHandlers } from "./handlers.ts";
import { type PassCheck, reconcileTaskOf } from "./resync.ts";
import { Worker } from "./worker.ts";

export function startWorker(context: ServiceContext, handlers: TaskHandlers, check?: PassCheck): Worker {
  const { config } = context;
  // Blocking waits get a connection of their own, so they never delay other commands.
  const blocking = createClient(context.redisSettings, {
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    connectTimeout: config.redis.command_timeout,
    // BLPOP waits up to 1 s; a connection silent for longer than that plus the timeout is dead.
    commandTimeout: 1000 + config.redis.command_timeout,
    retryStrategy: (attempt) => Math.min(50 * attempt, 1000),
    connectionName: "iapps-worker-wait",
  });
  blocking.on("error", () => {});
  const worker = new Worker({
    queue: context.queue,
    redis: context.commands,
    blocking,
    handlers,
    concurrency: config.worker.concurrency,
    leaseMs: config.worker.lease,
    resyncIntervalMs: config.worker.resync_interval,
    auditMaxLength: config.api.audit_max_length,
    check,
    log,
  });
  worker.start();
  return worker;
}

export interface ReconcilingWorker {
  worker: Worker;
  gateway: KubernetesGateway;
  /** Stops the pod watch and the worker (finishing tasks in flight, bounded). */
  stop(): Promise<boolean>;
}

/** The reconciler of a service context, acting through `gateway` (its caches, once started). */
export function reconcilerFor(context: ServiceContext, gateway: KubernetesGateway, logTo: typeof log = log): Reconciler {
  return new Reconciler({
    store: context.store,
    jobs: context.jobs,
    apps: context.apps,
    settings: context.appSettings,
    gateway,
    runtime: context.runtime,
    filesystem: filesystemVolume(context.config.storage),
    log: logTo,
  });
}

/**
 * The resync's check: the reconciler's own decisions, read-only (`Reconciler.check`), against
 * watch caches listed again for what a watch missed (once `ready`, their first lists), and drive
 * metadata read once while no operator changes any (src/store/drives.ts).
 */
export function resyncCheck(context: ServiceContext, gateway: KubernetesGateway, reconciler: Reconciler, ready: Promise<void>): PassCheck {
  const drives = new DriveMetadataCache(context.commands, context.drives);
  const storage = new LocalStorage(context.config.storage.root, drives);
  return {
    async begin({ resetsPending }) {
      await ready;
      // An API server that does not answer now leaves the caches as their watches keep them:
      // the pass still checks every record against them.
      await gateway.relistCaches().catch((error) => log("warn", "resync: could not list the cluster again; checking against the watch caches", { error: String(error) }));
      await drives.refresh();
      return (app, owner) => reconciler.check(app, owner, { storage, resetsPending });
    },
  };
}

/**
 * A worker whose handlers are the reconciler, reading the cluster from watch caches (pods,
 * services and network policies of integrated apps): every change a cache sees enqueues a
 * reconcile of the record it belongs to, so a pod that stops or vanishes is dealt with in
 * milliseconds, not at the next resync. Several workers watching enqueue the same task, which
 * the queue keeps once. Tasks are taken once the caches have their first lists.
 */
export function startReconcilingWorker(context: ServiceContext, simulatorUrl?: string): ReconcilingWorker {
  const { config } = context;
  const gateway = KubernetesGateway.fromSettings({ ...config.kubernetes, simulatorUrl });
  const reconciler = reconcilerFor(context, gateway);
  let watchTrouble = false;
  // Once the worker runs, it takes an event's reconcile at once when it has room (Worker.offer).
  let worker: Worker | null = null;
  let stopping = false;
  const enqueueFor = (tag: string | undefined) => {
    const task = tag === undefined ? null : reconcileTaskOf(tag);
    if (task !== null) (worker ? worker.offer(task) : context.queue.add(task)).catch(() => {});
  };
  const caches = gateway.startCaches({
    selectLabel: LABELS.app,
    indexLabel: LABELS.owner,
    onChange: async (kind, object, deleted, previous) => {
      watchTrouble = false;
      if (kind === "pod") {
        // A change the reconciler decides nothing on (a status detail) brings no reconcile.
        if (!deleted && previous !== null && !podChangeMatters(previous as V1Pod, object as V1Pod)) return;
        // Nor does the first sight of a pod a reconcile of this worker is creating, when the watch
        // is quicker than the create's answer (else the reconcile's cache write drops the event).
        if (!deleted && previous === null && (await reconciler.creatingNow(object as V1Pod))) return;
        return enqueueFor(object.metadata?.annotations?.[ANNOTATIONS.owner]);
      }
      // A service or policy gone from under its pod: the pod's record puts it back.
      const jobId = object.metadata?.labels?.[LABELS.jobId];
      if (deleted && jobId) enqueueFor((await gateway.cachedPod(podName(jobId)))?.metadata?.annotations?.[ANNOTATIONS.owner]);
    },
    onError: (kind, error) => {
      // The watches' own end, as the worker stops, is no trouble.
      if (stopping) return;
      if (!watchTrouble) log("warn", `the ${kind} watch failed; retrying (the resync still converges meanwhile)`, { error: String(error) });
      watchTrouble = true;
    },
  });
  const check = resyncCheck(context, gateway, reconciler, caches);
  // The first reconcile waits for the caches: an empty cache would read as "no pod".
  worker = startWorker(context, {
    reconcile: async (app, owner, signal) => {
      await caches;
      return reconciler.reconcile(app, owner, signal);
    },
    restart: async (app, owner, signal) => {
      await caches;
      return reconciler.restart(app, owner, signal);
    },
  }, check);
  return {
    worker: worker!,
    gateway,
    async stop() {
      stopping = true;
      const stopped = await worker.stop(config.worker.shutdown_timeout);
      await gateway.stopCaches();
      return stopped;
    },
  };
}
