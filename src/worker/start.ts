// Starts a worker for a service context: with given task handlers (tests), or with the
// reconciler and a pod watch (roles worker and all).
// Imports src/service/context.ts, the connection factory of src/store/connections.ts (for the
// blocking connection), src/kubernetes, src/reconciler, src/base/log.ts and src/worker/*.

import { KubernetesGateway } from "../kubernetes/gateway.ts";
import { log } from "../base/log.ts";
import { ANNOTATIONS, filesystemVolume, LABELS } from "../reconciler/objects.ts";
import { Reconciler } from "../reconciler/reconciler.ts";
import type { ServiceContext } from "../service/context.ts";
import { createClient } from "../store/connections.ts";
import type { TaskHandlers } from "./handlers.ts";
import { Worker } from "./worker.ts";

export function startWorker(context: ServiceContext, handlers: TaskHandlers): Worker {
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
    log,
  });
  worker.start();
  return worker;
}

/** SIGTERM or SIGINT: stop taking tasks, finish those in flight (bounded), close, exit 0. */
export function exitOnSignal(worker: Worker, context: ServiceContext): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("info", "worker stopping: finishing the tasks in flight", { signal });
    await worker.stop(context.config.worker.shutdown_timeout);
    await context.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

export interface ReconcilingWorker {
  worker: Worker;
  gateway: KubernetesGateway;
  /** Stops the pod watch and the worker (finishing tasks in flight, bounded). */
  stop(): Promise<boolean>;
}

/**
 * A worker whose handlers are the reconciler, plus a watch of the app pods whose every event
 * enqueues a reconcile of the pod's record: a pod that stops or vanishes is dealt with in
 * milliseconds, not at the next resync. Several workers watching enqueue the same task, which
 * the queue keeps once.
 */
export function startReconcilingWorker(context: ServiceContext, simulatorUrl?: string): ReconcilingWorker {
  const { config } = context;
  const gateway = KubernetesGateway.fromSettings({ ...config.kubernetes, simulatorUrl });
  const reconciler = new Reconciler({
    store: context.store,
    jobs: context.jobs,
    apps: context.apps,
    settings: context.appSettings,
    gateway,
    runtime: context.runtime,
    filesystem: filesystemVolume(config.storage),
    log,
  });
  const worker = startWorker(context, reconciler);
  let watchTrouble = false;
  const stopWatch = gateway.watchPods(
    LABELS.app,
    (_type, pod) => {
      watchTrouble = false;
      const tag = pod.metadata?.annotations?.[ANNOTATIONS.owner];
      if (tag) context.queue.add(`reconcile:${tag}`).catch(() => {});
    },
    (error) => {
      if (!watchTrouble) log("warn", "the pod watch failed; retrying (the resync still converges meanwhile)", { error: String(error) });
      watchTrouble = true;
    },
  );
  return {
    worker,
    gateway,
    async stop() {
      stopWatch();
      return worker.stop(config.worker.shutdown_timeout);
    },
  };
}
