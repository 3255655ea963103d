// Starts a worker for a service context with the given task handlers.
// Imports ioredis, src/service/context.ts and src/worker/*.

import { Redis } from "ioredis";
import { log } from "../log.ts";
import type { ServiceContext } from "../service/context.ts";
import type { TaskHandlers } from "./handlers.ts";
import { Worker } from "./worker.ts";

export function startWorker(context: ServiceContext, handlers: TaskHandlers): Worker {
  const { config } = context;
  // Blocking waits get a connection of their own, so they never delay other commands.
  const blocking = new Redis(config.redis.url, {
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
