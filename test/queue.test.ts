// The durable task queue and its workers (spec §5, issue "The worker"): real Redis, real worker
// processes, real SIGKILL and SIGTERM, and a Redis restarted under a running worker.

import { describe, expect, test } from "bun:test";
import { resolveConfig } from "../src/settings/config.ts";
import { createContext } from "../src/service/context.ts";
import { splitOutboxMembers } from "../src/store/outbox.ts";
import { relayOutboxes } from "../src/worker/resync.ts";
import { keys } from "../src/store/keys.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { startProcess, type Child } from "./support/processes.ts";
import { CLUSTER_MODE, redisEnvironment } from "./support/redis-server.ts";
import { providerCall, startInstance, syncthingConfig } from "./support/service.ts";

const h = await startHarness({ redis: { persistent: true }, api: false });
const { redis } = h;
const context = h.context({ worker: { max_attempts: 3, backoff_base: "20ms" } }, {});

function worker(env: Record<string, string> = {}): Child {
  return startProcess(["test/support/worker-process.ts"], {
    IAPPS_REDIS_URL: redis.url,
    IAPPS_WORKER_LEASE: "1s",
    IAPPS_WORKER_CONCURRENCY: "8",
    IAPPS_WORKER_RESYNC_INTERVAL: "1h",
    ...env,
  });
}

const task = (i: number | string) => `reconcile:syncthing:user-${i}`;
const executions = async (id: string) => Number((await redis.admin.hget("test:executions", id)) ?? 0);
const queueIdle = async () => {
  const stats = await context.queue.stats();
  return stats.pending === 0 && stats.active === 0 && stats.retrying === 0 && stats.scheduled === 0;
};

describe("adding tasks (client-go workqueue rules)", () => {
  test("adding a task that is already pending does nothing", async () => {
    expect(await context.queue.add(task(1))).toBe(1);
    expect(await context.queue.add(task(1), task(1), task(2))).toBe(1);
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual([task(1), task(2)]);
  });

  test("a task added while it is processed runs once more afterwards, not at the same time", async () => {
    await context.queue.add(task(1));
    const [lease] = await context.queue.take(1, 10_000, "t");
    expect(await context.queue.add(task(1))).toBe(1);
    expect(await context.queue.add(task(1))).toBe(0);
    expect(await context.queue.take(1, 10_000, "u")).toEqual([]);
    expect(await context.queue.complete(lease!)).toBe(true);
    expect((await context.queue.take(1, 10_000, "v")).map((l) => l.id)).toEqual([task(1)]);
  });

  test("a restart and a reconcile of one owner never run at once: the second waits for the first", async () => {
    const restart = "restart:syncthing:user-1";
    await context.queue.add(task(1), restart, task(2));
    const taken = await context.queue.take(3, 10_000, "t");
    expect(taken.map((l) => l.id)).toEqual([task(1), task(2)]);
    expect(await redis.admin.hget(keys.queueParked(), "syncthing:user-1")).toBe(restart);
    expect(await context.queue.add(restart)).toBe(0);
    expect(await context.queue.complete(taken[0]!)).toBe(true);
    expect((await context.queue.take(3, 10_000, "u")).map((l) => l.id)).toEqual([restart]);
  });

  test("with workers running, tasks of one owner never overlap, and every task runs", async () => {
    for (let w = 0; w < 2; w++) worker({ TEST_TASK_MS: "50", IAPPS_WORKER_CONCURRENCY: "8" });
    for (let round = 0; round < 5; round++) {
      await context.queue.add(...Array.from({ length: 20 }, (_, i) => [task(i), `restart:syncthing:user-${i}`]).flat());
      // Rounds that arrive while the workers run, not a wait for anything.
      await new Promise((r) => setTimeout(r, 30));
    }
    await eventually(queueIdle, 60, "the queue drains");
    expect(await redis.admin.get("test:owner-overlaps")).toBeNull();
    const ran = await redis.admin.hgetall("test:executions");
    for (let i = 0; i < 20; i++) {
      expect(Number(ran[task(i)])).toBeGreaterThanOrEqual(1);
      expect(Number(ran[`restart:syncthing:user-${i}`])).toBeGreaterThanOrEqual(1);
    }
    expect(await redis.admin.hlen(keys.queueBusy())).toBe(0);
    expect(await redis.admin.hlen(keys.queueParked())).toBe(0);
  });

  test("a worker whose lease was handed out cannot complete or renew it", async () => {
    await context.queue.add(task(1));
    const [lease] = await context.queue.take(1, 1, "old");
    // Past the 1 ms lease.
    await new Promise((r) => setTimeout(r, 20));
    await context.queue.promote();
    const [next] = await context.queue.take(1, 10_000, "new");
    expect(next!.id).toBe(task(1));
    expect(await context.queue.renew(lease!, 10_000)).toBe(false);
    expect(await context.queue.complete(lease!)).toBe(false);
    expect(await context.queue.complete(next!)).toBe(true);
  });

  test("an API update's reconcile is on the queue when the update is answered, and its outbox is empty again", async () => {
    const api = startInstance(redis.url);
    try {
      const owner = { createdBy: "alice", project: null };
      expect((await providerCall(api, "syncthing", "update", { principal: owner, config: syncthingConfig(1) })).status).toBe(200);
      expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["reconcile:syncthing:alice"]);
      expect(await redis.admin.exists(keys.outbox("syncthing", owner))).toBe(0);
    } finally {
      await api.close();
    }
  });

  test("a task the writer could not move to the queue stays in the record's outbox, and the resync moves it", async () => {
    const api = startInstance(redis.url);
    try {
      // The write's EXEC lands, then the queue cannot be reached (as if the writer died there).
      api.context.queue.addFor = async () => {
        throw new Error("the queue cannot be reached");
      };
      // Nor within the write's MULTI.
      api.context.queue.addCommands = () => {
        throw new Error("the queue cannot be reached");
      };
      const owner = { createdBy: "alice", project: null };
      expect((await providerCall(api, "syncthing", "update", { principal: owner, config: syncthingConfig(1) })).status).toBe(200);
      expect(await redis.admin.llen(keys.queuePending())).toBe(0);
      const owed = await redis.admin.smembers(keys.outbox("syncthing", owner));
      expect(splitOutboxMembers(owed).tasks).toEqual(["reconcile:syncthing:alice"]);

      expect(await relayOutboxes(context.commands, context.queue)).toBe(1);
      expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["reconcile:syncthing:alice"]);
      expect(await redis.admin.exists(keys.outbox("syncthing", owner))).toBe(0);
    } finally {
      await api.close();
    }
  });
});

describe("at-least-once delivery", () => {
  test("a task whose worker is SIGKILLed mid-task completes on another worker", async () => {
    const first = worker({ TEST_TASK_MS: "60000", TEST_WORKER_NAME: "first" });
    await redis.admin.set("test:want:syncthing:user-1", "v1");
    await context.queue.add(task(1));
    await eventually(async () => (await redis.admin.lrange("test:started", 0, -1)).includes(task(1)), 20, "the first worker starts the task");
    first.kill("SIGKILL");
    await first.exited;
    // The killed process cannot take its "running" mark back; it is not running any more.
    await redis.admin.del(`test:running:${task(1)}`);
    worker({ TEST_TASK_MS: "0", TEST_WORKER_NAME: "second" });
    await eventually(async () => (await redis.admin.hget("test:finished-by", task(1))) === "second", 20, "the second worker completes it");
    expect(await redis.admin.get("test:have:syncthing:user-1")).toBe("v1");
    expect(await redis.admin.get("test:overlaps")).toBeNull();
  }, 45_000);

  // A single server's restart; a cluster's failovers are test/cluster.test.ts's.
  test.skipIf(CLUSTER_MODE)("Redis restarted under a running worker: the worker reconnects and no accepted task is lost", async () => {
    // A lease longer than the outage: a worker that cannot renew for longer than its lease has
    // lost it, and then another run of the same task is what at-least-once means.
    worker({ TEST_TASK_MS: "30", IAPPS_WORKER_LEASE: "5s" });
    const ids = Array.from({ length: 200 }, (_, i) => task(i));
    await context.queue.add(...ids.slice(0, 100));
    await eventually(async () => (await redis.admin.hlen("test:executions")) > 10, 20, "the worker is busy");
    await redis.stop();
    await redis.startServer();
    // Accepted before the restart (fsynced), and accepted after it: all of them must run.
    await eventually(async () => context.queue.add(...ids.slice(100)).then(() => true, () => false), 20, "Redis answers again");
    await eventually(async () => (await redis.admin.hlen("test:executions").catch(() => 0)) === ids.length, 40, "every task ran");
    expect(await redis.admin.get("test:overlaps")).toBeNull();
  }, 90_000);
});

describe("many workers", () => {
  test("10,000 tasks over 3 worker processes: every task's effect happens, and no key runs twice at once", async () => {
    for (let w = 0; w < 3; w++) worker({ TEST_TASK_MS: "0", IAPPS_WORKER_CONCURRENCY: "16" });
    const keysCount = 1000;
    // 10 rounds over 1,000 keys: each round changes every key's wanted value and adds its task,
    // while the workers are processing the previous rounds.
    for (let round = 1; round <= 10; round++) {
      // One command each (not one pipeline): on a cluster the keys live on different nodes.
      await Promise.all(Array.from({ length: keysCount }, (_, i) => redis.admin.set(`test:want:syncthing:user-${i}`, `r${round}`)));
      await context.queue.add(...Array.from({ length: keysCount }, (_, i) => task(i)));
    }
    await eventually(queueIdle, 120, "the queue drains");
    const have = await Promise.all(Array.from({ length: keysCount }, (_, i) => redis.admin.get(`test:have:syncthing:user-${i}`)));
    expect(have.filter((v) => v !== "r10")).toEqual([]);
    expect(await redis.admin.get("test:overlaps")).toBeNull();
    expect(await redis.admin.get("test:owner-overlaps")).toBeNull();
    const runs = Object.values(await redis.admin.hgetall("test:executions")).reduce((sum, n) => sum + Number(n), 0);
    expect(runs).toBeGreaterThanOrEqual(keysCount);
    expect(runs).toBeLessThanOrEqual(10 * keysCount);
  }, 150_000);

  test("1,000 enqueues of one key while it is being processed: at most 2 executions", async () => {
    worker({ TEST_TASK_MS: "1500" });
    await context.queue.add(task(1));
    await eventually(async () => (await redis.admin.lrange("test:started", 0, -1)).length === 1, 20, "the task starts");
    for (let i = 0; i < 1000; i++) await context.queue.add(task(1));
    await eventually(async () => (await queueIdle()) && (await executions(task(1))) >= 1, 30, "the queue drains");
    expect(await executions(task(1))).toBe(2);
  }, 45_000);
});

describe("failures", () => {
  test("a task that always fails becomes a dead letter with its error after max_attempts; replay puts it back", async () => {
    const failing = worker({ TEST_MODE: "fail", IAPPS_WORKER_MAX_ATTEMPTS: "4", IAPPS_WORKER_BACKOFF_BASE: "20ms" });
    await context.queue.add(task(1));
    const [letter] = await eventually(async () => {
      const dead = await context.queue.deadLetters();
      return dead.length > 0 && dead;
    }, 30, "the task is parked");
    expect(letter).toMatchObject({ id: task(1), attempts: 4, error: `${task(1)} always fails` });
    expect(await context.queue.stats()).toMatchObject({ pending: 0, active: 0, retrying: 0, scheduled: 0, dead: 1 });
    failing.kill();
    await failing.exited;
    expect(await context.queue.replay(task(1))).toBe(true);
    expect(await context.queue.replay(task(1))).toBe(false);
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual([task(1)]);
    expect(await context.queue.stats()).toMatchObject({ pending: 1, dead: 0 });
  }, 45_000);

  test("retries back off exponentially with jitter between the base and the cap", async () => {
    const queue = createContext(resolveConfig({ redis: { url: redis.url }, worker: { max_attempts: 10, backoff_base: "1s", backoff_max: "3s" } }, { source: "t", environment: redisEnvironment() }));
    try {
      await queue.queue.add(task(1));
      const now = Date.now();
      for (const [attempt, low, high] of [
        [1, 500, 1000],
        [2, 1000, 2000],
        [3, 1500, 3000],
        [4, 1500, 3000],
      ] as const) {
        await redis.admin.zrem(keys.queueDelayed(), task(1));
        await redis.admin.rpush(keys.queuePending(), task(1));
        const [lease] = await queue.queue.take(1, 10_000, `a${attempt}`);
        expect(await queue.queue.fail(lease!, "boom")).toBe("delayed");
        const due = Number(await redis.admin.zscore(keys.queueDelayed(), task(1)));
        expect(due - now).toBeGreaterThanOrEqual(low - 100);
        expect(due - now).toBeLessThanOrEqual(high + 1000);
      }
      expect(await redis.admin.hget(keys.queueAttempts(), task(1))).toBe("4");
      expect(await redis.admin.hget(keys.queueErrors(), task(1))).toBe("boom");
    } finally {
      await queue.close();
    }
  });
});

describe("stats tell a retry's wait from a check scheduled on purpose", () => {
  test("a failed task waiting out its backoff is retrying; a task added for later is scheduled", async () => {
    await context.queue.addAfter(task(1), 3_600_000);
    expect(await context.queue.stats()).toEqual({ pending: 0, active: 0, retrying: 0, scheduled: 1, dead: 0 });
    await context.queue.add(task(2));
    const [lease] = await context.queue.take(1, 10_000, "t");
    expect(await context.queue.fail(lease!, "boom")).toBe("delayed");
    expect(await context.queue.stats()).toEqual({ pending: 0, active: 0, retrying: 1, scheduled: 1, dead: 0 });
  });

  test("a run that succeeds after failing and asks to run again later is scheduled, not retrying", async () => {
    await context.queue.add(task(1));
    const [failed] = await context.queue.take(1, 10_000, "t");
    expect(await context.queue.fail(failed!, "boom")).toBe("delayed");
    await redis.admin.zrem(keys.queueDelayed(), task(1));
    await context.queue.add(task(1));
    const [lease] = await context.queue.take(1, 10_000, "u");
    // As the worker does with a handler's requeueAfterMs: the time is set before the run completes.
    await context.queue.addAfter(task(1), 3_600_000);
    expect(await context.queue.complete(lease!)).toBe(true);
    expect(await context.queue.stats()).toEqual({ pending: 0, active: 0, retrying: 0, scheduled: 1, dead: 0 });
  });

  test("queue stats on the command line shows both", async () => {
    await context.queue.addAfter(task(1), 3_600_000);
    const child = startProcess(["src/main.ts", "queue", "stats"], { IAPPS_REDIS_URL: redis.url });
    expect(await child.exited).toBe(0);
    expect(JSON.parse(child.stdout())).toEqual({ pending: 0, active: 0, retrying: 0, scheduled: 1, dead: 0 });
  });
});

describe("a lost lease", () => {
  test("a task whose lease another worker took is told to stop (its signal aborts)", async () => {
    const { startWorker } = await import("../src/worker/start.ts");
    const local = createContext(resolveConfig({ redis: { url: redis.url }, worker: { lease: "300ms", resync_interval: "1h" } }, { source: "t", environment: redisEnvironment() }), { cache: false });
    let aborted = null as string | null;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const handler = async (_app: string, _owner: unknown, signal?: AbortSignal) => {
      started();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        signal?.addEventListener("abort", () => {
          aborted = String(signal.reason);
          clearTimeout(timer);
          resolve();
        });
      });
    };
    const worker = startWorker(local, { reconcile: handler, restart: handler });
    try {
      await local.queue.add(task(1));
      await running;
      // Another worker's lease now (as after an expiry and a redelivery).
      await redis.admin.hset(keys.queueLeases(), task(1), "someone-else:1");
      await eventually(async () => aborted !== null, 5, "the handler is told to stop");
      expect(aborted).toContain("lease");
    } finally {
      await worker.stop(1000);
      await local.close();
    }
  });
});

describe("resync and shutdown", () => {
  test("the periodic resync enqueues a reconcile for every record", async () => {
    const api = startInstance(redis.url);
    try {
      for (let i = 0; i < 30; i++) {
        await providerCall(api, "syncthing", "update", { principal: { createdBy: `user-${i}`, project: null }, config: syncthingConfig(i) });
      }
    } finally {
      await api.close();
    }
    await redis.admin.del(keys.queuePending(), keys.queueDirty());
    worker({ IAPPS_WORKER_RESYNC_INTERVAL: "300ms" });
    await eventually(async () => (await redis.admin.hlen("test:executions")) >= 30, 20, "every record reconciled");
    const ran = Object.keys(await redis.admin.hgetall("test:executions"));
    expect(ran.sort()).toEqual(Array.from({ length: 30 }, (_, i) => task(i)).sort());
  }, 30_000);

  test("SIGTERM: the worker stops taking tasks, finishes those in flight, and exits 0", async () => {
    const child = worker({ TEST_TASK_MS: "1000", IAPPS_WORKER_CONCURRENCY: "2" });
    await context.queue.add(task(1), task(2), task(3), task(4));
    await eventually(async () => (await redis.admin.llen("test:started")) === 2, 20, "two tasks start");
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    expect(Object.keys(await redis.admin.hgetall("test:executions")).sort()).toEqual([task(1), task(2)]);
    expect(await context.queue.stats()).toMatchObject({ pending: 2, active: 0 });
  }, 30_000);
});

describe("a worker's own tasks and reruns (issue 13: fewer commands per task)", () => {
  test("claim takes a task at once when it is neither pending nor running and its owner is free; otherwise it is an add", async () => {
    const lease = await context.queue.claim(task(1), 10_000, "c:1");
    expect(lease).toMatchObject({ id: task(1), token: "c:1", clean: true });
    expect(await context.queue.stats()).toMatchObject({ pending: 0, active: 1 });
    // Running: added again, it runs once more afterwards.
    expect(await context.queue.claim(task(1), 10_000, "c:2")).toBeNull();
    expect(await context.queue.take(1, 10_000, "t")).toEqual([]);
    expect(await context.queue.complete(lease!)).toBe(true);
    expect((await context.queue.take(1, 10_000, "u")).map((l) => l.id)).toEqual([task(1)]);

    // Pending already: stays pending, once.
    await context.queue.add(task(2));
    expect(await context.queue.claim(task(2), 10_000, "c:3")).toBeNull();
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual([task(2)]);

    // Its owner busy with a restart: pending, and parked behind it once taken.
    const restart = "restart:syncthing:user-3";
    await context.queue.add(restart);
    const taken = await context.queue.take(5, 10_000, "v");
    expect(taken.map((l) => l.id)).toEqual([task(2), restart]);
    expect(await context.queue.claim(task(3), 10_000, "c:4")).toBeNull();
    expect(await context.queue.take(5, 10_000, "w")).toEqual([]);
    expect(await redis.admin.hget(keys.queueParked(), "syncthing:user-3")).toBe(task(3));
    expect(await context.queue.complete(taken[1]!)).toBe(true);
    expect((await context.queue.take(5, 10_000, "x")).map((l) => l.id)).toEqual([task(3)]);
  });

  test("a claimed task whose lease expires is handed out again", async () => {
    const lease = await context.queue.claim(task(1), 1, "c:1");
    expect(lease).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await context.queue.promote()).expired).toBe(1);
    expect((await context.queue.take(1, 10_000, "t")).map((l) => l.id)).toEqual([task(1)]);
    expect(await context.queue.complete(lease!)).toBe(false);
  });

  test("a task added while it ran is kept for its worker under a new token; the old one cannot end it", async () => {
    await context.queue.add(task(1));
    const [lease] = await context.queue.take(1, 10_000, "t");
    await context.queue.addFor("request-2", [task(1)]);
    const { held, rerun } = await context.queue.finish(lease!, { leaseMs: 10_000, token: "r:1" });
    expect(held).toBe(true);
    expect(rerun).toEqual({ id: task(1), token: "r:1", requestId: "request-2", clean: true });
    expect(await context.queue.stats()).toMatchObject({ pending: 0, active: 1 });
    // A retried complete of the first run (its reply lost) finds the lease gone...
    expect(await context.queue.complete(lease!)).toBe(false);
    // ...unless it asks with the same rerun token, as the worker's retries do: that lease is its own.
    expect(await context.queue.finish(lease!, { leaseMs: 10_000, token: "r:1" })).toEqual({ held: true, rerun });
    expect(await context.queue.stats()).toMatchObject({ pending: 0, active: 1 });
    expect(await context.queue.renew(rerun!, 10_000)).toBe(true);
    // Not added again: done with, its request id forgotten.
    expect(await context.queue.finish(rerun!, { leaseMs: 10_000, token: "r:2" })).toEqual({ held: true, rerun: null });
    expect(await queueIdle()).toBe(true);
    expect(await redis.admin.hlen(keys.queueRequestIds())).toBe(0);
    expect(await redis.admin.hlen(keys.queueBusy())).toBe(0);
  });

  test("a task parked behind a running one goes first: the running one is not kept for a rerun", async () => {
    const restart = "restart:syncthing:user-1";
    await context.queue.add(task(1));
    const [lease] = await context.queue.take(1, 10_000, "t");
    await context.queue.add(restart);
    expect(await context.queue.take(1, 10_000, "u")).toEqual([]);
    // Its lease says a task waits, and it still renews and completes.
    expect(await redis.admin.hget(keys.queueLeases(), task(1))).toBe(`${lease!.token} parked`);
    expect(await context.queue.renew(lease!, 10_000)).toBe(true);
    await context.queue.add(task(1));
    expect(await context.queue.finish(lease!, { leaseMs: 10_000, token: "r:1" })).toEqual({ held: true, rerun: null });
    expect((await context.queue.take(5, 10_000, "v")).map((l) => l.id)).toEqual([restart]);
    expect(await redis.admin.hget(keys.queueParked(), "syncthing:user-1")).toBe(task(1));
  });

  test("a take says when it left nothing pending", async () => {
    await context.queue.add(task(1), task(2));
    expect((await context.queue.takeSome(5, 10_000, "t")).drained).toBe(true);
    await context.queue.add(task(3), task(4), task(5));
    const some = await context.queue.takeSome(2, 10_000, "u");
    expect(some.leases.map((l) => l.id)).toEqual([task(3), task(4)]);
    expect(some.drained).toBe(false);
  });
});

describe("operator CLI", () => {
  test("queue stats, dead, replay and purge-dead", async () => {
    const cli = async (...args: string[]) => {
      const child = startProcess(["src/main.ts", "queue", ...args], { IAPPS_REDIS_URL: redis.url });
      const code = await child.exited;
      return { code, output: child.stdout() };
    };
    await context.queue.add(task(1));
    const [lease] = await context.queue.take(1, 10_000, "x");
    await redis.admin.hset(keys.queueAttempts(), task(1), "2");
    expect(await context.queue.fail(lease!, "broken")).toBe("dead");
    expect(JSON.parse((await cli("stats")).output)).toEqual({ pending: 0, active: 0, retrying: 0, scheduled: 0, dead: 1 });
    expect(JSON.parse((await cli("dead")).output)).toMatchObject([{ id: task(1), attempts: 3, error: "broken" }]);
    expect(await cli("replay", task(1))).toMatchObject({ code: 0 });
    expect(await cli("replay", task(1))).toMatchObject({ code: 2 });
    expect(JSON.parse((await cli("stats")).output)).toMatchObject({ pending: 1, dead: 0 });
    expect((await cli("purge-dead")).output).toContain("purged 0");
  }, 30_000);

  test("the worker role names what is missing instead of starting half-configured", async () => {
    const child = startProcess(["src/main.ts", "worker"], { IAPPS_REDIS_URL: redis.url, IAPPS_KUBERNETES_SIMULATOR_PORT: "0" });
    expect(await child.exited).toBe(2);
    expect(child.output()).toContain("simulator_port");
  });
});
