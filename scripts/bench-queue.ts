// Our durable task queue (src/queue/queue.ts + src/worker/worker.ts) against BullMQ, in one run,
// on one redis-server this script starts (`--save "" --appendonly no`, FLUSHALL between phases):
//
//   throughput   N no-op tasks with distinct ids (`reconcile:syncthing:user-<i>`). All N are
//                enqueued first, in batches (ours: `queue.add(...batch)`; BullMQ: `Queue.addBulk`
//                with `jobId` = the same id and `removeOnComplete: true`), with no consumer
//                running. Then one consumer with concurrency C drains them (ours: `startWorker`
//                with no-op handlers; BullMQ: `Worker` with a no-op processor).
//                THE HEADLINE RATE IS THE DRAIN: from starting the consumer (its first take) to
//                the last completion acknowledged by Redis (ours: `queue.complete` resolved;
//                BullMQ: the worker's 'completed' event, emitted once moveToFinished returned).
//                Enqueue rate and end-to-end (enqueue + drain) rate are printed too.
//                Goal: drain ours / BullMQ >= 1.5.
//   latency      enqueue-to-start: tasks added one at a time (ours: `queue.add(id)`; BullMQ:
//                `Queue.add` with the same jobId) at a steady rate (default 500/s for 4 s) while
//                the consumer is idle-waiting (ours: BLPOP on the wake list; BullMQ: BZPOPMIN on
//                its marker). The clock is read just before the add call and first thing in the
//                handler; both run in this process, so one clock serves both, and it is
//                `performance.now()` (monotonic, sub-millisecond) rather than `Date.now()`.
//
// Why the comparison is fair: both consumers run IN THIS PROCESS (Bun, same runtime, same
// ioredis version: BullMQ is given connection options and builds its own ioredis clients),
// against the same fresh redis-server, with the same concurrency and the same ids, one system at
// a time. Throughput rounds alternate which system goes first (after an unreported warm-up of
// both), and the median round is reported. Ours runs with the service's defaults (lease 30 s,
// maintenance every 100 ms) except resync_interval (1 h: there are no records to resync);
// BullMQ runs with its defaults (lockDuration 30 s, stalled check every 30 s, events stream on).
// Per-task Redis work comes from INFO commandstats deltas and INFO cpu (the Redis server's CPU
// time); the benchmark process's own CPU time from process.cpuUsage().
//
// Usage: node_modules/.bin/bun scripts/bench-queue.ts [--tasks N] [--concurrency C] [--batch B]
//          [--rounds R] [--rate PER_S] [--seconds S] [--warmup N]
//        (or BENCH_TASKS, BENCH_CONCURRENCY, BENCH_BATCH, BENCH_ROUNDS, BENCH_RATE,
//         BENCH_SECONDS, BENCH_WARMUP; defaults 20000, 16, 1000, 5, 500, 4, 5000). A default run takes ~45 s.
// Logs of our worker are quiet below warn (IAPPS_LOG_LEVEL=warn unless set).

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue as BullQueue, Worker as BullWorker } from "bullmq";
import { Redis } from "ioredis";
import { option } from "./options.ts";

// src/base/log.ts reads the level when it is loaded: set it before importing the service.
process.env.IAPPS_LOG_LEVEL ??= "warn";
const { resolveConfig } = await import("../src/settings/config.ts");
const { createContext } = await import("../src/service/context.ts");
const { startWorker } = await import("../src/worker/start.ts");
const { taskId } = await import("../src/queue/tasks.ts");
const { keys } = await import("../src/store/keys.ts");
type Lease = import("../src/queue/queue.ts").Lease;
type Owner = import("../src/domain/owner.ts").Owner;

// ---------------------------------------------------------------------------------------------
// Options

const settings = {
  tasks: Math.max(1, Math.round(option("tasks", "BENCH_TASKS", 20_000))),
  concurrency: Math.max(1, Math.round(option("concurrency", "BENCH_CONCURRENCY", 16))),
  batch: Math.max(1, Math.round(option("batch", "BENCH_BATCH", 1000))),
  rounds: Math.max(1, Math.round(option("rounds", "BENCH_ROUNDS", 5))),
  rate: Math.max(1, option("rate", "BENCH_RATE", 500)),
  seconds: option("seconds", "BENCH_SECONDS", 4),
  warmup: Math.round(option("warmup", "BENCH_WARMUP", 5000)),
};

const APP = "syncthing";
const id = (i: number) => `reconcile:${APP}:user-${i}`;
const DRAIN_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// redis-server: started here, stopped by its PID.

let server: ChildProcess | null = null;
let serverDir: string | null = null;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

async function startRedis(): Promise<{ url: string; port: number }> {
  serverDir = mkdtempSync(join(tmpdir(), "iapps-bench-queue-"));
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", serverDir],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  server = child;
  let output = "";
  let failed: Error | null = null;
  child.on("error", (e) => (failed = e));
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (failed) throw new Error(`cannot start redis-server: ${(failed as Error).message}`);
    if (child.exitCode !== null) throw new Error(`redis-server exited at start:\n${output}`);
    if (output.includes("Ready to accept connections")) return { url: `redis://127.0.0.1:${port}`, port };
    if (Date.now() > deadline) throw new Error(`redis-server did not start in 10 s:\n${output}`);
    await Bun.sleep(20);
  }
}

async function stopRedis() {
  const child = server;
  server = null;
  if (child && child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(child.pid, "SIGTERM");
    const timeout = Bun.sleep(3000).then(() => "timeout");
    if ((await Promise.race([exited, timeout])) === "timeout") {
      process.kill(child.pid, "SIGKILL");
      await exited;
    }
  }
  if (serverDir) rmSync(serverDir, { recursive: true, force: true });
  serverDir = null;
}

// Last resort when the process exits by another path: synchronous SIGKILL by PID.
process.on("exit", () => {
  if (server?.pid !== undefined && server.exitCode === null && server.signalCode === null) {
    try {
      process.kill(server.pid, "SIGKILL");
    } catch {}
  }
  if (serverDir) rmSync(serverDir, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stdout.write(`\n${signal}: stopping redis-server\n`);
    void stopRedis().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// What Redis did: INFO commandstats and INFO cpu, as deltas between two snapshots.

interface Snapshot {
  at: number;
  redisCpuS: number;
  benchCpuUs: number;
  commands: Map<string, { calls: number; usec: number }>;
}

async function snapshot(admin: Redis): Promise<Snapshot> {
  const [stats, cpu] = await Promise.all([admin.info("commandstats"), admin.info("cpu")]);
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const line of stats.split("\n")) {
    const match = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (match) commands.set(match[1]!, { calls: Number(match[2]), usec: Number(match[3]) });
  }
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(cpu)?.[1] ?? 0);
  const usage = process.cpuUsage();
  return {
    at: performance.now(),
    redisCpuS: field("used_cpu_user") + field("used_cpu_sys"),
    benchCpuUs: usage.user + usage.system,
    commands,
  };
}

interface Usage {
  seconds: number;
  redisCpuS: number;
  benchCpuS: number;
  commands: Map<string, { calls: number; usec: number }>;
}

function usageBetween(a: Snapshot, b: Snapshot): Usage {
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const [name, after] of b.commands) {
    const before = a.commands.get(name) ?? { calls: 0, usec: 0 };
    // INFO itself (our snapshots) is not part of what is measured.
    if (after.calls > before.calls && name !== "info") {
      commands.set(name, { calls: after.calls - before.calls, usec: after.usec - before.usec });
    }
  }
  return {
    seconds: (b.at - a.at) / 1000,
    redisCpuS: b.redisCpuS - a.redisCpuS,
    benchCpuS: (b.benchCpuUs - a.benchCpuUs) / 1e6,
    commands,
  };
}

// ---------------------------------------------------------------------------------------------
// One throughput round of each system.

interface Round {
  system: "ours" | "bullmq";
  enqueue: Usage;
  drain: Usage;
  processed: number;
  duplicates: number;
  /** Ours only: calls of queue.take (empty ones too) and the tasks they returned. */
  takes?: { calls: number; empty: number; tasks: number };
  /** Ours only: wake-up tokens left on the wake list once the last task completed. */
  wakeTokensLeft?: number;
  problems: string[];
}

function config(url: string) {
  return resolveConfig(
    { redis: { url }, worker: { concurrency: settings.concurrency, resync_interval: "1h" } },
    { source: "bench", environment: {} },
  );
}

/** Resolves once `target` completions were counted; rejects after DRAIN_TIMEOUT_MS. */
function completionLatch(target: number) {
  let done = 0;
  let resolve!: () => void;
  const finished = new Promise<void>((r) => (resolve = r));
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`only ${done} of ${target} tasks completed within ${DRAIN_TIMEOUT_MS / 1000} s`)), DRAIN_TIMEOUT_MS);
  });
  return {
    count() {
      if (++done === target) resolve();
    },
    get done() {
      return done;
    },
    wait: () => Promise.race([finished, timeout]).finally(() => clearTimeout(timer)),
  };
}

async function throughputOurs(url: string, admin: Redis, tasks: number): Promise<Round> {
  const context = createContext(config(url));
  const problems: string[] = [];
  await (await context.commands()).ping();
  const queue = context.queue;
  const latch = completionLatch(tasks);
  const seen = new Map<string, number>();
  // Instrument the queue instance (this process only): count completions and take batches.
  const takes = { calls: 0, empty: 0, tasks: 0 };
  const take = queue.take.bind(queue);
  queue.take = async (count: number, leaseMs: number, tokenPrefix: string) => {
    const leases = await take(count, leaseMs, tokenPrefix);
    takes.calls++;
    if (leases.length === 0) takes.empty++;
    takes.tasks += leases.length;
    return leases;
  };
  const complete = queue.complete.bind(queue);
  queue.complete = async (lease: Lease) => {
    const held = await complete(lease);
    if (held) latch.count();
    else problems.push(`complete(${lease.id}) answered false`);
    return held;
  };
  const handler = async (app: string, owner: Owner) => {
    const key = taskId("reconcile", app, owner);
    seen.set(key, (seen.get(key) ?? 0) + 1);
  };

  const ids = Array.from({ length: tasks }, (_, i) => id(i));
  const s0 = await snapshot(admin);
  let added = 0;
  for (let i = 0; i < ids.length; i += settings.batch) added += await queue.add(...ids.slice(i, i + settings.batch));
  const s1 = await snapshot(admin);
  if (added !== tasks) problems.push(`queue.add reported ${added} new tasks of ${tasks}`);

  const s2 = await snapshot(admin);
  const worker = startWorker(context, { reconcile: handler, restart: handler });
  await latch.wait();
  const s3 = await snapshot(admin);
  const wakeTokensLeft = await admin.llen(keys.queueWake());

  await worker.stop(5000);
  const stats = await queue.stats();
  if (stats.pending + stats.active + stats.retrying + stats.scheduled + stats.dead !== 0) problems.push(`queue not empty after the drain: ${JSON.stringify(stats)}`);
  await context.close();
  await admin.flushall();
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  if (seen.size !== tasks) problems.push(`ours: ${seen.size} distinct tasks ran, expected ${tasks}`);
  return { system: "ours", enqueue: usageBetween(s0, s1), drain: usageBetween(s2, s3), processed: seen.size, duplicates, takes, wakeTokensLeft, problems };
}

function bullConnection(port: number) {
  return { host: "127.0.0.1", port };
}

async function throughputBull(port: number, admin: Redis, tasks: number): Promise<Round> {
  const problems: string[] = [];
  const queue = new BullQueue("bench", { connection: bullConnection(port) });
  const seen = new Map<string, number>();
  const latch = completionLatch(tasks);
  const worker = new BullWorker(
    "bench",
    async (job) => {
      seen.set(job.id!, (seen.get(job.id!) ?? 0) + 1);
    },
    { connection: bullConnection(port), concurrency: settings.concurrency, autorun: false },
  );
  worker.on("completed", () => latch.count());
  worker.on("failed", (_job, e) => problems.push(`bullmq job failed: ${e.message}`));
  worker.on("error", (e) => problems.push(`bullmq worker error: ${e.message}`));
  await queue.waitUntilReady();
  await worker.waitUntilReady();

  const jobs = Array.from({ length: tasks }, (_, i) => ({ name: "reconcile", data: {}, opts: { jobId: id(i), removeOnComplete: true } }));
  const s0 = await snapshot(admin);
  for (let i = 0; i < jobs.length; i += settings.batch) await queue.addBulk(jobs.slice(i, i + settings.batch));
  const s1 = await snapshot(admin);

  const s2 = await snapshot(admin);
  const running = worker.run();
  await latch.wait();
  const s3 = await snapshot(admin);

  await worker.close();
  await running;
  const counts = await queue.getJobCounts("wait", "active", "delayed", "failed", "completed");
  if (Object.values(counts).some((n) => n !== 0)) problems.push(`bullmq queue not empty after the drain: ${JSON.stringify(counts)}`);
  await queue.close();
  await admin.flushall();
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  if (seen.size !== tasks) problems.push(`bullmq: ${seen.size} distinct jobs ran, expected ${tasks}`);
  return { system: "bullmq", enqueue: usageBetween(s0, s1), drain: usageBetween(s2, s3), processed: seen.size, duplicates, problems };
}

// ---------------------------------------------------------------------------------------------
// Latency: tasks added one at a time at a steady rate while the consumer idles.

interface Latency {
  system: "ours" | "bullmq";
  samples: number[];
  sent: number;
  problems: string[];
}

/** Adds `count` tasks at `rate` per second, one add at a time, recording when each was sent. */
async function pace(count: number, add: (id: string) => Promise<unknown>, sentAt: Map<string, number>) {
  const interval = 1000 / settings.rate;
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0.05) await Bun.sleep(wait);
    const key = id(i);
    sentAt.set(key, performance.now());
    await add(key);
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  while (!condition() && performance.now() < deadline) await Bun.sleep(10);
}

async function latencyOurs(url: string, admin: Redis, count: number): Promise<Latency> {
  const context = createContext(config(url));
  await (await context.commands()).ping();
  const sentAt = new Map<string, number>();
  const samples: number[] = [];
  const handler = async (app: string, owner: Owner) => {
    const now = performance.now();
    const sent = sentAt.get(taskId("reconcile", app, owner));
    if (sent !== undefined) samples.push(now - sent);
  };
  const worker = startWorker(context, { reconcile: handler, restart: handler });
  await Bun.sleep(500); // idle: blocked in BLPOP on the wake list
  await pace(count, (key) => context.queue.add(key), sentAt);
  await waitUntil(() => samples.length >= count, 5000);
  await waitUntil(() => false, 200); // let the last completions land before stopping
  await worker.stop(5000);
  await context.close();
  await admin.flushall();
  return { system: "ours", samples, sent: count, problems: samples.length === count ? [] : [`ours: ${samples.length} of ${count} latency tasks started`] };
}

async function latencyBull(port: number, admin: Redis, count: number): Promise<Latency> {
  const queue = new BullQueue("bench-latency", { connection: bullConnection(port) });
  const sentAt = new Map<string, number>();
  const samples: number[] = [];
  const problems: string[] = [];
  const worker = new BullWorker(
    "bench-latency",
    async (job) => {
      const now = performance.now();
      const sent = sentAt.get(job.id!);
      if (sent !== undefined) samples.push(now - sent);
    },
    { connection: bullConnection(port), concurrency: settings.concurrency },
  );
  worker.on("error", (e) => problems.push(`bullmq worker error: ${e.message}`));
  await queue.waitUntilReady();
  await worker.waitUntilReady();
  await Bun.sleep(500); // idle: blocked in BZPOPMIN on the marker
  await pace(count, (key) => queue.add("reconcile", {}, { jobId: key, removeOnComplete: true }), sentAt);
  await waitUntil(() => samples.length >= count, 5000);
  await waitUntil(() => false, 200);
  await worker.close();
  await queue.close();
  await admin.flushall();
  if (samples.length !== count) problems.push(`bullmq: ${samples.length} of ${count} latency tasks started`);
  return { system: "bullmq", samples, sent: count, problems };
}

// ---------------------------------------------------------------------------------------------
// Output

const began = performance.now();
const out = (line = "") => process.stdout.write(`${line}\n`);
const step = (message: string) => out(`[${((performance.now() - began) / 1000).toFixed(1).padStart(5)} s] ${message}`);

function table(header: string[], rows: string[][]) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  out(line(header));
  out(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) out(line(row));
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;

function medianRound(rounds: Round[]): Round {
  const sorted = [...rounds].sort((a, b) => a.drain.seconds - b.drain.seconds);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function commandLines(usage: Usage, tasks: number): string {
  return [...usage.commands.entries()]
    .filter(([, c]) => c.calls >= tasks * 0.01)
    .sort((a, b) => b[1].usec - a[1].usec)
    .map(([name, c]) => `${name} ${fmt(c.calls / tasks, 2)} (${fmt(c.usec / tasks, 1)} µs)`)
    .join(", ");
}

// ---------------------------------------------------------------------------------------------

async function main() {
  out(
    `bench-queue: ${fmt(settings.tasks)} tasks, concurrency ${settings.concurrency}, batches of ${settings.batch}, ` +
      `${settings.rounds} throughput round(s); latency ${settings.rate}/s for ${settings.seconds} s; Bun ${Bun.version}`,
  );
  out("both consumers run in this process, one at a time, on one redis-server (FLUSHALL between phases)\n");
  const { url, port } = await startRedis();
  const admin = new Redis(url, { maxRetriesPerRequest: 1 });
  const problems: string[] = [];
  let failed = false;
  try {
    const version = /redis_version:(\S+)/.exec(await admin.info("server"))?.[1];
    step(`redis-server ${version} on port ${port}`);

    if (settings.warmup > 0) {
      step(`warm-up (not reported): ${fmt(settings.warmup)} tasks through each ...`);
      for (const round of [await throughputOurs(url, admin, settings.warmup), await throughputBull(port, admin, settings.warmup)]) problems.push(...round.problems);
    }

    const ours: Round[] = [];
    const bull: Round[] = [];
    for (let r = 0; r < settings.rounds; r++) {
      const oursFirst = r % 2 === 0;
      for (const system of oursFirst ? (["ours", "bullmq"] as const) : (["bullmq", "ours"] as const)) {
        step(`round ${r + 1}/${settings.rounds}: ${system} ...`);
        const round = system === "ours" ? await throughputOurs(url, admin, settings.tasks) : await throughputBull(port, admin, settings.tasks);
        problems.push(...round.problems);
        if (round.duplicates > 0) problems.push(`${system}: ${round.duplicates} tasks ran more than once`);
        (system === "ours" ? ours : bull).push(round);
        const rate = settings.tasks / round.drain.seconds;
        step(`  ${system}: enqueue ${fmt(round.enqueue.seconds, 2)} s, drain ${fmt(round.drain.seconds, 2)} s (${fmt(rate)} tasks/s)`);
      }
    }

    const count = Math.max(1, Math.round(settings.rate * settings.seconds));
    step(`latency: ${fmt(count)} tasks one at a time at ${settings.rate}/s, ours ...`);
    const latOurs = await latencyOurs(url, admin, count);
    step(`latency: bullmq ...`);
    const latBull = await latencyBull(port, admin, count);
    problems.push(...latOurs.problems, ...latBull.problems);

    // ----- tables
    const n = settings.tasks;
    const mo = medianRound(ours);
    const mb = medianRound(bull);
    out(`\nThroughput (${fmt(n)} no-op tasks, concurrency ${settings.concurrency}; median of ${settings.rounds} round(s) by drain time)`);
    const row = (name: string, r: Round): string[] => [
      name,
      fmt(n / r.enqueue.seconds),
      fmt(n / r.drain.seconds),
      fmt(n / (r.enqueue.seconds + r.drain.seconds)),
      fmt((r.drain.redisCpuS * 1e6) / n, 1),
      fmt((r.drain.benchCpuS * 1e6) / n, 1),
      `${fmt((100 * r.drain.redisCpuS) / r.drain.seconds)}% / ${fmt((100 * r.drain.benchCpuS) / r.drain.seconds)}%`,
    ];
    table(
      ["", "enqueue/s", "DRAIN tasks/s", "end-to-end/s", "redis CPU µs/task", "bench CPU µs/task", "drain CPU redis/bench"],
      [row("ours", mo), row("bullmq", mb)],
    );
    const ratio = mb.drain.seconds / mo.drain.seconds;
    const e2e = (mb.enqueue.seconds + mb.drain.seconds) / (mo.enqueue.seconds + mo.drain.seconds);
    const enq = mb.enqueue.seconds / mo.enqueue.seconds;
    out(`ratio ours/BullMQ: drain ${fmt(ratio, 2)} (goal >= 1.5: ${ratio >= 1.5 ? "met" : "NOT met"}), enqueue ${fmt(enq, 2)}, end-to-end ${fmt(e2e, 2)}`);
    out(`every round, drain tasks/s: ours ${ours.map((r) => fmt(n / r.drain.seconds)).join(", ")}; bullmq ${bull.map((r) => fmt(n / r.drain.seconds)).join(", ")}`);

    out(`\nLatency, enqueue to handler start (${fmt(count)} tasks one at a time at ${settings.rate}/s, consumer idle-waiting), ms`);
    const latRow = (l: Latency): string[] => {
      const s = [...l.samples].sort((a, b) => a - b);
      const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
      return [l.system, fmt(s.length), fmt(percentile(s, 50), 2), fmt(percentile(s, 90), 2), fmt(percentile(s, 99), 2), fmt(s[s.length - 1] ?? NaN, 2), fmt(mean, 2)];
    };
    table(["", "samples", "p50", "p90", "p99", "max", "mean"], [latRow(latOurs), latRow(latBull)]);

    out(`\nRedis commands per task (calls, server µs) in the median round, commands inside scripts included`);
    out(`  ours   enqueue: ${commandLines(mo.enqueue, n)}`);
    out(`  ours   drain:   ${commandLines(mo.drain, n)}`);
    if (mo.takes) {
      out(
        `  ours   drain: queue.take called ${fmt(mo.takes.calls)} times (${fmt(mo.takes.empty)} empty), ` +
          `${fmt(mo.takes.tasks / Math.max(1, mo.takes.calls - mo.takes.empty), 2)} tasks per non-empty take; ` +
          `${fmt((mo.takes.calls + n) / n, 2)} take+complete EVALSHAs per task; ` +
          `${mo.wakeTokensLeft ?? "?"} wake tokens left on the wake list after the drain`,
      );
    }
    out(`  bullmq enqueue: ${commandLines(mb.enqueue, n)}`);
    out(`  bullmq drain:   ${commandLines(mb.drain, n)}`);
  } catch (e) {
    failed = true;
    out(`\nbench-queue failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    admin.disconnect();
    await stopRedis();
  }
  if (problems.length > 0) {
    out(`\nPROBLEMS (${problems.length}):`);
    for (const p of [...new Set(problems)].slice(0, 20)) out(`  - ${p}`);
  }
  step("done");
  process.exit(failed || problems.length > 0 ? 1 : 0);
}

await main();
