// A provider's size (issue 13): what N owners cost when nothing changes. Creates N Syncthing
// owners through the API (one folder and one device each, so each gets a pod), waits until every
// pod runs, then measures idle resync passes: Kubernetes calls, Redis commands and CPU per record
// per pass, Redis memory per record, the time of one pass; and the time until every pod is back
// after a restart of role `all` (the simulator starts empty, the worker starts anew).
//
// Real processes, as deployed: redis-server, `kube-sim`, `api` and `worker` (each `bun
// src/main.ts <role>`), on free ports, in a temporary folder. `--no-pods` gives the owners no
// device (no pod runs): the memory and Redis figures at sizes the simulator would not hold.
//
// The worker's CPU per record per pass is given whole, and less what the idle worker spends (its
// queue's clock, the benchmark's scrapes), measured for 10 s before any owner exists; the
// simulator's resident memory per owner once every pod runs.
//
// Usage: npm run bench:scale -- --owners N [--passes P] [--interval S] [--no-pods] [--no-restart] [--profile DIR]

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { sign } from "hono/jwt";
import { Redis } from "ioredis";
import { freePort, spawnRedisServer } from "../test/support/redis-server.ts";
import { option } from "./options.ts";

const OWNERS = option("owners", "BENCH_OWNERS", 1000);
const PASSES = option("passes", "BENCH_PASSES", 2);
const INTERVAL_S = option("interval", "BENCH_INTERVAL", 30);
const NO_PODS = process.argv.includes("--no-pods");
/** `--no-restart`: skip the restart of role all (at 100,000 pods it takes longer than the rest). */
const NO_RESTART = process.argv.includes("--no-restart");
/** How long the idle worker's own CPU (its clock, the scrapes) is measured before any owner exists. */
const IDLE_S = 10;
/** `--profile DIR`: the workers write CPU profiles to DIR/passes (the idle passes) and DIR/restart (the restart), on SIGTERM. */
const PROFILE = process.argv.includes("--profile") ? resolve(process.argv[process.argv.indexOf("--profile") + 1]!) : undefined;
const CONCURRENCY = 64;
const ROOT = resolve(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const SECRET = "bench-scale-secret-0123456789abcdef";
const NAMESPACE = "bench-scale";
const DEVICE = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";
const say = (line: string) => process.stdout.write(`${line}\n`);

const dir = mkdtempSync(join(tmpdir(), "iapps-bench-scale-"));
const storage = join(dir, "storage");
const [redisPort, simulatorPort, apiPort, metricsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
const redisServer = await spawnRedisServer(["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]);
const redis = new Redis(`redis://127.0.0.1:${redisPort}`);
const env = {
  ...process.env,
  IAPPS_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error",
  IAPPS_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
  IAPPS_STORAGE_ROOT: storage,
  IAPPS_AUTH_JWT_SECRET: SECRET,
  IAPPS_SERVER_HOST: "127.0.0.1",
  IAPPS_SERVER_PORT: String(apiPort),
  IAPPS_KUBERNETES_NAMESPACE: NAMESPACE,
  IAPPS_KUBERNETES_SIMULATOR_PORT: String(simulatorPort),
  IAPPS_KUBERNETES_SIMULATOR_START_DELAY: "0ms",
  IAPPS_WORKER_RESYNC_INTERVAL: `${INTERVAL_S}s`,
  IAPPS_WORKER_METRICS_PORT: String(metricsPort),
  // A port per owner (none are taken with --no-pods), within 65535.
  IAPPS_APPS_SYNCTHING_PORT_MIN: String(Math.max(1025, Math.min(20000, 65535 - OWNERS - 100))),
  IAPPS_APPS_SYNCTHING_PORT_MAX: String(Math.min(65535, Math.max(1025, Math.min(20000, 65535 - OWNERS - 100)) + OWNERS + 100)),
  IAPPS_API_CACHE_MAX_ENTRIES: "0",
};
const children = new Set<ChildProcess>();
function role(name: string, profileTo?: string): ChildProcess {
  const args = profileTo ? ["--cpu-prof", `--cpu-prof-dir=${profileTo}`, "src/main.ts", name] : ["src/main.ts", name];
  const child = spawn(BUN, args, { cwd: ROOT, env, stdio: ["ignore", "ignore", "inherit"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}
async function stop(child: ChildProcess) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}
async function until<T>(what: string, seconds: number, check: () => Promise<T | false | null>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) {
      const [pending, active, delayed] = await Promise.all([redis.llen("iapps:{queue}:pending"), redis.zcard("iapps:{queue}:active"), redis.zcard("iapps:{queue}:delayed")]);
      throw new Error(`${what}: not within ${seconds} s (queue: ${pending} pending, ${active} active, ${delayed} delayed)`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
/**
 * How often the passes' end is looked for in the worker's metrics: every scrape costs the worker
 * CPU (its queue's gauges read from Redis), which a scrape every 250 ms made a sixth of what
 * the passes measured at 10,000 owners.
 */
const SCRAPE_MS = 2000;

/** A process's resident memory, in bytes (VmRSS). */
function residentBytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}
/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
async function redisCommands(): Promise<number> {
  return Number(/total_commands_processed:(\d+)/.exec(await redis.info("stats"))![1]);
}
/** Calls by command as Redis counts them (INFO commandstats: scripts' own commands included). */
async function commandStats(): Promise<Map<string, number>> {
  const stats = new Map<string, number>();
  for (const [, name, calls] of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats.set(name!, Number(calls));
  return stats;
}
/** The commands that grew most between two commandstats, per record. */
function topCommands(before: Map<string, number>, after: Map<string, number>, records: number, top = 12): string {
  return [...after]
    .map(([name, calls]) => [name, calls - (before.get(name) ?? 0)] as const)
    .filter(([, calls]) => calls > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, calls]) => `${name} ${(calls / records).toFixed(1)}`)
    .join(", ");
}
async function workerMetric(name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{${labels}`) || line.startsWith(`${name} `)) total += Number(line.split(" ").at(-1));
  return total;
}
/**
 * Pods Running: all of them less those that are not, each a list by metadata only (a list of
 * 100,000 whole pods every 250 ms would be the busiest thing the simulator did).
 */
async function runningPods(): Promise<number> {
  const count = async (fieldSelector: string) => {
    const url = `http://127.0.0.1:${simulatorPort}/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=ucloud.dk/iapp-name${fieldSelector}`;
    const answer = await fetch(url, { headers: { accept: "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1" } });
    return ((await answer.json()) as { items: unknown[] }).items.length;
  };
  const [all, notRunning] = await Promise.all([count(""), count("&fieldSelector=status.phase!%3DRunning")]);
  return all - notRunning;
}
async function queueIdle(): Promise<boolean> {
  const [pending, active] = await Promise.all([redis.llen("iapps:{queue}:pending"), redis.zcard("iapps:{queue}:active")]);
  return pending === 0 && active === 0;
}

try {
  let simulator = role("kube-sim");
  const api = role("api");
  await until("the API", 30, async () => (await fetch(`http://127.0.0.1:${apiPort}/readyz`)).ok);
  await until("the simulator", 30, async () => (await fetch(`http://127.0.0.1:${simulatorPort}/version`)).ok);
  let worker = role("worker", PROFILE && join(PROFILE, "passes"));
  await until("the worker", 30, async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok);
  const simulatorEmpty = residentBytes(simulator.pid!);
  // The worker's CPU with nothing to do (its queue's clock, the scrapes): taken out of the passes' below.
  const idleFrom = { cpu: cpuSeconds(worker.pid!), at: performance.now() };
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const idleRate = (cpuSeconds(worker.pid!) - idleFrom.cpu) / ((performance.now() - idleFrom.at) / 1000);

  // N owners, each with a folder in its home drive and (unless --no-pods) a device.
  for (let i = 0; i < OWNERS; i++) mkdirSync(join(storage, `home-owner${i}`, "A"), { recursive: true });
  const token = await sign({ sub: "_UCloud", role: "SERVICE", exp: Math.floor(Date.now() / 1000) + 24 * 3600 }, SECRET, "HS256");
  const commandsBefore = await redisCommands();
  const statsBefore = await commandStats();
  const created = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < OWNERS; i = next++) {
        const response = await fetch(`http://127.0.0.1:${apiPort}/ucloud/k8s/iapps/syncthing/update`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({
            principal: { createdBy: `owner${i}`, project: null },
            config: { folders: [{ ucloudPath: `/home-owner${i}/A`, id: "a" }], devices: NO_PODS ? [] : [{ deviceId: DEVICE, label: "x" }] },
            expectedETag: null,
          }),
        });
        if (response.status !== 200) throw new Error(`update of owner${i} answered ${response.status}: ${await response.text()}`);
      }
    }),
  );
  const createSeconds = (performance.now() - created) / 1000;
  if (!NO_PODS) await until("every pod Running", 60 + OWNERS / 50, async () => (await runningPods()) >= OWNERS, OWNERS > 20_000 ? 2000 : 250);
  await until("the queue drains", 60 + OWNERS / 50, queueIdle);
  const allRunning = (performance.now() - created) / 1000;
  const createCommands = (await redisCommands()) - commandsBefore;
  say(`created ${OWNERS} owners in ${createSeconds.toFixed(1)} s (${(OWNERS / createSeconds).toFixed(0)}/s); all ${NO_PODS ? "reconciled" : "pods Running"} after ${allRunning.toFixed(1)} s`);
  say(`Redis commands per created record (write, reconcile, port, pod's events): ${(createCommands / OWNERS).toFixed(1)}`);
  say(`  by command (server side): ${topCommands(statsBefore, await commandStats(), OWNERS)}`);
  const reconciles = await Promise.all(["created", "in-sync", "waiting", "replaced", "blocked", "stopped"].map(async (o) => `${o} ${((await workerMetric("iapps_reconcile_total", `app="syncthing",outcome="${o}"`)) / OWNERS).toFixed(2)}`));
  say(`  reconciles per created record, by outcome: ${reconciles.join(", ")}`);
  if (!NO_PODS) {
    // Each owner's pod, its two services and its network policy, as the simulator holds them.
    const held = residentBytes(simulator.pid!);
    say(`simulator memory (RSS): ${(simulatorEmpty / 2 ** 20).toFixed(0)} MiB empty, ${(held / 2 ** 20).toFixed(0)} MiB with every pod: ${((held - simulatorEmpty) / OWNERS / 1024).toFixed(1)} KiB per owner (pod, 2 services, policy)`);
  }

  // Idle passes: from one resync round to the P-th after it.
  const gauge = () => workerMetric("iapps_resync_last_completed_timestamp_seconds");
  // The first round after the owners were made reads each drive's metadata once: measure from the one after it.
  const warm = await until("a resync round", INTERVAL_S * 2 + 30, async () => (await gauge()) > 0 && (await gauge()), SCRAPE_MS);
  const start = await until(
    "a second resync round",
    INTERVAL_S * 3 + 30,
    async () => {
      const now = await gauge();
      return now > warm && now;
    },
    SCRAPE_MS,
  );
  const passStats = await commandStats();
  const passesFrom = performance.now();
  const before = {
    kube: await workerMetric("iapps_kubernetes_requests_total"),
    redis: await redisCommands(),
    workerCpu: cpuSeconds(worker.pid!),
    simulatorCpu: cpuSeconds(simulator.pid!),
  };
  // A pass is paced over half the interval; its busy time is what it would take unpaced.
  const passTimes: string[] = [];
  let rounds = start;
  for (let p = 0; p < PASSES; p++) {
    rounds = await until(
      `resync pass ${p + 1}`,
      INTERVAL_S * 3 + 30,
      async () => {
        const now = await gauge();
        return now > rounds && now;
      },
      SCRAPE_MS,
    );
    const [seconds, busy] = [await workerMetric("iapps_resync_last_duration_seconds"), await workerMetric("iapps_resync_last_busy_seconds")];
    await until("the pass's tasks done", INTERVAL_S * 3, queueIdle);
    passTimes.push(`${seconds.toFixed(1)} s (busy ${busy.toFixed(1)} s)`);
  }
  const enqueued = await workerMetric("iapps_resync_records_total", 'verdict="enqueued"');
  const passBreakdown = topCommands(passStats, await commandStats(), OWNERS * PASSES, 8);
  const after = {
    kube: await workerMetric("iapps_kubernetes_requests_total"),
    redis: await redisCommands(),
    workerCpu: cpuSeconds(worker.pid!),
    simulatorCpu: cpuSeconds(simulator.pid!),
  };
  const per = (delta: number) => delta / (OWNERS * PASSES);
  const idleCpu = idleRate * ((performance.now() - passesFrom) / 1000);
  // Memory: every key the service keeps, by kind (the part of the key name before its tag).
  const bytes = new Map<string, number>();
  let cursor = "0";
  do {
    const [nextCursor, batch] = await redis.scan(cursor, "MATCH", "iapps:*", "COUNT", 1000);
    cursor = nextCursor;
    const usages = await Promise.all(batch.map((key) => redis.memory("USAGE", key, "SAMPLES", "0")));
    batch.forEach((key, i) => {
      // A record's tag (`{syncthing:owner1}`) and a job's id are one kind; `{queue}`, `{ports}` stay.
      const kind = key.replace(/\{[^}]*:[^}]*\}.*$/, "{<app>:<owner>}").replace(/:\d+$/, ":<id>");
      bytes.set(kind, (bytes.get(kind) ?? 0) + Number(usages[i] ?? 0));
    });
  } while (cursor !== "0");
  const totalBytes = [...bytes.values()].reduce((a, b) => a + b, 0);

  say(`\nidle, ${PASSES} resync passes over ${OWNERS} records (interval ${INTERVAL_S} s):`);
  say(`| measure | per record per pass |`);
  say(`|---|---|`);
  say(`| Kubernetes calls (worker) | ${per(after.kube - before.kube).toFixed(3)} |`);
  say(`| Redis commands (all processes) | ${per(after.redis - before.redis).toFixed(2)} |`);
  say(`| worker CPU | ${((per(after.workerCpu - before.workerCpu)) * 1e6).toFixed(1)} µs |`);
  say(`| worker CPU of the passes (less the idle worker's, ${(idleRate * 100).toFixed(1)} % of a core) | ${((per(after.workerCpu - before.workerCpu - idleCpu)) * 1e6).toFixed(1)} µs |`);
  say(`| simulator CPU | ${((per(after.simulatorCpu - before.simulatorCpu)) * 1e6).toFixed(1)} µs |`);
  say(`  Redis by command (server side): ${passBreakdown}`);
  say(`one pass (paced over half the interval; busy: not waiting for its pace): ${passTimes.join(", ")}; records enqueued by passes since the worker started: ${enqueued}`);
  say(`\nRedis memory per record: ${(totalBytes / OWNERS).toFixed(0)} bytes (MEMORY USAGE of every iapps: key / owners)`);
  for (const [kind, total] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 12)) say(`  ${kind.padEnd(36)} ${(total / OWNERS).toFixed(1)} bytes`);

  // Restart of role all: the simulator starts empty, and so does the worker.
  if (PROFILE) {
    // SIGTERM, so that it writes its profile.
    const exited = new Promise((r) => worker.once("exit", r));
    worker.kill("SIGTERM");
    await exited;
  }
  if (!NO_PODS && !NO_RESTART) {
    await stop(worker);
    await stop(simulator);
    const restarted = performance.now();
    simulator = role("kube-sim");
    await until("the simulator again", 30, async () => (await fetch(`http://127.0.0.1:${simulatorPort}/version`)).ok);
    worker = role("worker", PROFILE && join(PROFILE, "restart"));
    // Where the time goes: pods Running, and the queue, every second.
    const timeline: string[] = [];
    const sampler = setInterval(() => {
      void Promise.all([runningPods(), redis.llen("iapps:{queue}:pending"), redis.zcard("iapps:{queue}:active")]).then(
        ([pods, pending, active]) => timeline.push(`${((performance.now() - restarted) / 1000).toFixed(0)} s: ${pods} running, ${pending} pending, ${active} active`),
        () => {},
      );
    }, 1000);
    await until("every pod back", 120 + OWNERS / 20, async () => (await runningPods()) >= OWNERS).finally(() => clearInterval(sampler));
    const cpu = `worker ${cpuSeconds(worker.pid!).toFixed(1)} s, simulator ${cpuSeconds(simulator.pid!).toFixed(1)} s`;
    say(`\nafter a restart of role all (simulator and worker): every pod Running again in ${((performance.now() - restarted) / 1000).toFixed(1)} s (CPU by then: ${cpu})`);
    say(`  ${timeline.join("; ")}`);
    if (PROFILE) {
      const exited = new Promise((r) => worker.once("exit", r));
      worker.kill("SIGTERM");
      await exited;
      say(`  the worker's CPU profile is in ${PROFILE}`);
    }
  }
  await stop(api);
} finally {
  for (const child of [...children]) await stop(child);
  redis.disconnect();
  redisServer.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
