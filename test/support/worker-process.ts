// A worker process with test handlers, for the queue tests: `bun test/support/worker-process.ts`
// with IAPPS_* variables for its configuration and TEST_* variables for its behaviour.
//
//   TEST_MODE=record  every task: mark itself running (counting overlaps), copy the owner's
//                     `test:want:<tag>` to `test:have:<tag>` after TEST_TASK_MS, count executions
//   TEST_MODE=fail    every task throws
//   TEST_WORKER_NAME  recorded in `test:finished-by` for each task it completed
//
// SIGTERM or SIGINT stops it as a worker stops: no new tasks, those in flight finished (bounded).

import { resolveConfig } from "../../src/settings/config.ts";
import { createContext } from "../../src/service/context.ts";
import { createClient } from "../../src/store/connections.ts";
import type { Owner } from "../../src/domain/owner.ts";
import { type TaskKind, taskId } from "../../src/queue/tasks.ts";
import { startWorker } from "../../src/worker/start.ts";
import { recordTag } from "../../src/store/keys.ts";
import { onStopSignal } from "../../src/runtimes/signals.ts";
import { log } from "../../src/base/log.ts";

const config = resolveConfig({ auth: { jwt_secret: "unused" } }, { source: "worker-process", environment: process.env });
const context = createContext(config, { cache: false });
const redis = createClient(context.redisSettings, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
redis.on("error", () => {});
const mode = process.env.TEST_MODE ?? "record";
const taskMs = Number(process.env.TEST_TASK_MS ?? "0");
const name = process.env.TEST_WORKER_NAME ?? String(process.pid);

let runs = 0;

/** Marks `key` as running with `token`; finding another run's mark there is an overlap. */
async function mark(key: string, token: string, overlaps: string) {
  if ((await redis.set(key, token, "NX")) === "OK") return;
  if ((await redis.get(key)) !== token) await redis.incr(overlaps);
}

async function unmark(key: string, token: string) {
  await redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, 1, key, token);
}

async function run(kind: TaskKind, app: string, owner: Owner) {
  const id = taskId(kind, app, owner);
  if (mode === "fail") throw new Error(`${id} always fails`);
  const tag = recordTag(app, owner);
  // Marks that say "running", each with a token of this run. Not counters: across a Redis crash
  // this client re-sends commands whose replies were lost, and a re-sent INCR would count twice.
  const token = `${name}:${++runs}`;
  await mark(`test:running:${id}`, token, "test:overlaps");
  // Spec §5: never two workers on one (app, owner), whatever the task kinds.
  await mark(`test:running-owner:${tag}`, token, "test:owner-overlaps");
  await redis.rpush("test:started", id);
  try {
    const want = await redis.get(`test:want:${tag}`);
    if (taskMs > 0) await new Promise((r) => setTimeout(r, taskMs));
    if (want !== null) await redis.set(`test:have:${tag}`, want);
    await redis.hincrby("test:executions", id, 1);
    await redis.hset("test:finished-by", id, name);
  } finally {
    await unmark(`test:running:${id}`, token);
    await unmark(`test:running-owner:${tag}`, token);
  }
}

const worker = startWorker(context, {
  reconcile: (app, owner) => run("reconcile", app, owner),
  restart: (app, owner) => run("restart", app, owner),
});
// SIGTERM or SIGINT: stop taking tasks, finish those in flight (bounded), close, exit 0.
onStopSignal(async (signal) => {
  log("info", "worker stopping: finishing the tasks in flight", { signal });
  await worker.stop(config.worker.shutdown_timeout);
  await context.close();
  process.exit(0);
});
