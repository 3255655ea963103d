// Throughput of the configuration API against two baselines, in one run:
//
//   retrieve   GET /api/iapps/syncthing/retrieve (USER token, owner has a stored record)
//      vs      a bare Hono route answering a constant small JSON body        goal: ratio >= 0.5
//   update     POST /ucloud/k8s/iapps/syncthing/update (SERVICE token), every request a new
//              owner (`principal.createdBy` never repeats), so no two requests contend
//      vs      a raw ioredis loop: WATCH k; GET k; MULTI; HSET k ...; EXEC, a new k each time,
//              at the same concurrency (one loop per connection)             goal: ratio >= 0.6
//
// plus, for information, updates of records that already exist (distinct owners, round robin):
// a first update also takes the job claim and registers the job, a later one does not.
//
// Why the comparison is fair: every target is a separate child process on the same runtime (the
// Bun binary running this script) against the same fresh redis-server (the raw loop writes to
// database 1, so its keys stay apart from the service's). The HTTP targets are
// loaded by the same autocannon in this process with the same connections and the same time; the
// bare route receives the same request headers as the service. The raw loop keeps as many
// transactions in flight as autocannon keeps requests. Each target's time is cut into slices run
// in turn (bare, retrieve, update, update-existing, raw, bare, ...), so background noise on a
// shared machine hits every target alike. What the raw loop does NOT pay is the HTTP round trip
// and the load generator's CPU (on 2 cores autocannon, target and Redis share them; the bare
// route shows autocannon's ceiling, several times the service's rates): that overhead is part of
// what the update / raw ratio measures.
//
// Usage: bun scripts/bench-api.ts [--duration S] [--connections N] [--warmup S] [--rounds R]
//        (or BENCH_DURATION, BENCH_CONNECTIONS, BENCH_WARMUP, BENCH_ROUNDS; defaults 10, 32, 2, 5:
//        per target 2 s of warm-up, then 10 s measured as 5 slices of 2 s; about 65 s in all)
// The service reads config.toml plus IAPPS_* overrides as usual (e.g. IAPPS_REDIS_POOL_SIZE);
// this script sets only the Redis URL, port, host, JWT secret, provider id and require_etag.
// Internal roles (the script starts itself): --role bare --port P
//                                            --role raw-tx --redis URL --connections N
// (raw-tx reads "<seconds>" lines on stdin and answers each with one JSON line).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Hono } from "hono";
import { sign } from "hono/jwt";
import { Redis } from "ioredis";

// autocannon ships no type declarations; these are the parts of it this script uses.
interface AutocannonResult {
  duration: number;
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  "2xx": number;
  statusCodeStats: Record<string, { count: number }>;
}
interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: AutocannonRequest) => AutocannonRequest;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  sampleInt: number;
  requests: AutocannonRequest[];
}) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

const SECRET = "bench-secret-0123456789abcdef0123";
const PROVIDER = "k8s";
const APP = "syncthing";
const EMPTY_CONFIG = { folders: [], devices: [] };

/** The runtime running this script, for every child (or node_modules/.bin/bun, should an install replace the binary meanwhile). */
function bun(): string {
  if (existsSync(process.execPath)) return process.execPath;
  const local = join(import.meta.dir, "..", "node_modules", ".bin", "bun");
  return existsSync(local) ? local : "bun";
}

// ---------------------------------------------------------------------------------------------
// Options

function option(name: string, envName: string, fallback: number): number {
  const argv = process.argv.slice(2);
  let raw: string | undefined = process.env[envName];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) raw = argv[i + 1];
    else if (argv[i]!.startsWith(`--${name}=`)) raw = argv[i]!.slice(name.length + 3);
  }
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} / ${envName}: expected a number, got '${raw}'`);
  return value;
}

function stringOption(name: string): string | undefined {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Child roles

/** The bare baseline: one Hono route, the body and ETag header of a retrieve, no auth, no Redis. */
function serveBare(port: number) {
  const app = new Hono();
  const body = { etag: "x", config: EMPTY_CONFIG };
  app.get(`/api/iapps/${APP}/retrieve`, (c) => c.json(body, 200, { ETag: '"x"' }));
  Bun.serve({ hostname: "127.0.0.1", port, fetch: app.fetch });
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
}

interface RawResult {
  committed: number;
  aborted: number;
  failed: number;
  firstError: string;
  seconds: number;
}

/** The raw transaction baseline: N connections; each "<seconds>" line on stdin runs N loops that long. */
async function serveRawTransactions(url: string, connections: number) {
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const redis = new Redis(url, { enableAutoPipelining: false, maxRetriesPerRequest: 0, lazyConnect: true });
      await redis.connect();
      return redis;
    }),
  );
  const fields = (seq: number) => ({
    config: JSON.stringify(EMPTY_CONFIG),
    etag: `raw-${seq}`,
    jobId: "1",
    state: "active",
    updatedAt: new Date().toISOString(),
  });
  let seq = 0;

  const run = async (seconds: number): Promise<RawResult> => {
    const result: RawResult = { committed: 0, aborted: 0, failed: 0, firstError: "", seconds: 0 };
    let stop = false;
    const loop = async (redis: Redis) => {
      while (!stop) {
        const key = `bench:raw:{${seq++}}`; // a new key each time: no two transactions contend
        try {
          await redis.watch(key);
          await redis.get(key);
          const replies = await redis.multi().hset(key, fields(seq)).exec();
          if (stop) break; // finished after the window: not counted (as autocannon does not)
          const error = replies?.find(([e]) => e)?.[0];
          if (replies === null) result.aborted++;
          else if (error) {
            result.failed++;
            result.firstError ||= String(error);
          } else result.committed++;
        } catch (e) {
          result.failed++;
          result.firstError ||= String(e);
          await redis.unwatch().catch(() => {});
        }
      }
    };
    const start = performance.now();
    const loops = clients.map(loop);
    await Bun.sleep(seconds * 1000);
    stop = true;
    result.seconds = (performance.now() - start) / 1000;
    await Promise.all(loops);
    return result;
  };

  for await (const line of createInterface({ input: process.stdin })) {
    const seconds = Number(line);
    if (!(seconds > 0)) break;
    process.stdout.write(`${JSON.stringify(await run(seconds))}\n`);
  }
  for (const redis of clients) redis.disconnect();
}

// ---------------------------------------------------------------------------------------------
// Processes: every one started here is tracked by PID and stopped by PID.

interface Child {
  name: string;
  process: ChildProcess;
  /** stdout and stderr, line by line. */
  output: string[];
  /** Set when the process could not be started (ENOENT, ...). */
  failed?: Error;
  /** Settles once the process has ended and its output is read: its exit code, or the start error. */
  closed: Promise<number | null>;
}

const children: Child[] = [];
let tempDir: string | null = null;

function start(name: string, command: string, args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } });
  const closed = new Promise<number | null>((resolve, reject) => {
    proc.once("close", (code) => resolve(code));
    proc.once("error", reject);
  });
  closed.catch(() => {}); // read by whoever waits for it
  const child: Child = { name, process: proc, output: [], closed };
  let partial = "";
  const collect = (data: Buffer) => {
    const lines = (partial + data.toString()).split("\n");
    partial = lines.pop() ?? "";
    child.output.push(...lines);
  };
  proc.stdout?.on("data", collect);
  proc.stderr?.on("data", collect);
  proc.stdin?.on("error", () => {}); // a child that died; noticed elsewhere
  proc.on("error", (e) => {
    child.failed = e;
    child.output.push(`${name}: ${e.message}`);
  });
  children.push(child);
  return child;
}

const running = (child: Child) => !child.failed && child.process.exitCode === null && child.process.signalCode === null;

async function stop(child: Child) {
  const index = children.indexOf(child);
  if (index >= 0) children.splice(index, 1);
  const pid = child.process.pid;
  if (pid === undefined || !running(child)) return;
  const exited = child.closed.catch(() => null);
  process.kill(pid, "SIGTERM");
  let timer: Timer | undefined;
  const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve("timeout"), 3000)));
  if ((await Promise.race([exited, timeout])) === "timeout" && running(child)) {
    process.kill(pid, "SIGKILL");
    await exited;
  }
  clearTimeout(timer);
}

async function stopAll() {
  // Newest first: the service before the Redis it uses.
  for (const child of [...children].reverse()) await stop(child).catch(() => {});
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
}

// Last resort when this process exits by another path: synchronous SIGKILL by PID.
process.on("exit", () => {
  for (const child of children) {
    if (child.process.pid !== undefined && running(child)) {
      try {
        process.kill(child.process.pid, "SIGKILL");
      } catch {}
    }
  }
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

async function waitFor(child: Child, what: string, ready: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve(ready()).catch(() => false)) return;
    if (!running(child)) throw new Error(`${child.name} exited while waiting for ${what}:\n${child.output.join("\n")}`);
    if (Date.now() > deadline) throw new Error(`${child.name}: no ${what} after ${timeoutMs} ms:\n${child.output.join("\n")}`);
    await Bun.sleep(20);
  }
}

async function startRedis(): Promise<{ child: Child; url: string }> {
  tempDir = mkdtempSync(join(tmpdir(), "iapps-bench-redis-"));
  const port = await freePort();
  const child = start("redis-server", "redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tempDir,
  ]);
  await waitFor(child, "readiness", () => child.output.some((line) => line.includes("Ready to accept connections")));
  return { child, url: `redis://127.0.0.1:${port}` };
}

async function startHttp(name: string, args: string[], env: Record<string, string>, port: number): Promise<Child> {
  const child = start(name, bun(), args, env);
  // Any HTTP answer (a 401 from the service) means it listens.
  await waitFor(child, "listening port", async () => (await fetch(`http://127.0.0.1:${port}/api/iapps/${APP}/retrieve`)).status > 0);
  return child;
}

// ---------------------------------------------------------------------------------------------
// Targets and their measurements

/** One slice of one target's load. */
interface Slice {
  ok: number; // 2xx responses, or committed transactions
  seconds: number;
  failures: number; // non-2xx + socket errors + timeouts, or aborted + failed transactions
  counts: Record<string, number>; // per status code, or committed/aborted/failed
  p50?: number;
  p99?: number;
  note?: string;
}

interface Target {
  name: string;
  unit: string;
  run(seconds: number): Promise<Slice>;
  slices: Slice[];
}

function httpTarget(name: string, url: string, connections: number, request: AutocannonRequest | (() => AutocannonRequest)): Target {
  const requests =
    typeof request === "function" ? [{ setupRequest: (base: AutocannonRequest) => ({ ...base, ...request() }) }] : [request];
  return {
    name,
    unit: "req/s",
    slices: [],
    async run(seconds) {
      // sampleInt: autocannon stops on a sample tick; a short interval keeps the slice close to its length.
      const result = await autocannon({ url, connections, duration: seconds, sampleInt: 100, requests });
      const counts: Record<string, number> = {};
      for (const [code, { count }] of Object.entries(result.statusCodeStats)) counts[code] = count;
      if (result.errors > 0) counts["socket errors"] = result.errors;
      if (result.timeouts > 0) counts.timeouts = result.timeouts;
      return {
        ok: result["2xx"],
        seconds: result.duration,
        failures: result.non2xx + result.errors + result.timeouts,
        counts,
        p50: result.latency.p50,
        p99: result.latency.p99,
      };
    },
  };
}

function rawTarget(child: Child): Target {
  return {
    name: "raw ioredis WATCH/GET/MULTI/HSET/EXEC",
    unit: "tx/s",
    slices: [],
    async run(seconds) {
      const answered = child.output.filter((line) => line.startsWith("{")).length;
      child.process.stdin!.write(`${seconds}\n`);
      let line: string | undefined;
      await waitFor(child, "result", () => (line = child.output.filter((l) => l.startsWith("{"))[answered]) !== undefined, seconds * 1000 + 15_000);
      const r = JSON.parse(line!) as RawResult;
      return {
        ok: r.committed,
        seconds: r.seconds,
        failures: r.aborted + r.failed,
        counts: { committed: r.committed, aborted: r.aborted, failed: r.failed },
        note: r.firstError || undefined,
      };
    },
  };
}

interface Summary {
  name: string;
  unit: string;
  rate: number;
  p50?: number; // median of the slices' medians
  p99?: number; // worst slice
  failures: number;
  detail: string;
}

function summarize(target: Target): Summary {
  const sum = (f: (s: Slice) => number) => target.slices.reduce((total, slice) => total + f(slice), 0);
  const counts: Record<string, number> = {};
  for (const slice of target.slices) for (const [key, n] of Object.entries(slice.counts)) counts[key] = (counts[key] ?? 0) + n;
  const p50s = target.slices.map((s) => s.p50).filter((p) => p !== undefined).sort((a, b) => a - b);
  const p99s = target.slices.map((s) => s.p99).filter((p) => p !== undefined);
  const notes = [...new Set(target.slices.map((s) => s.note).filter(Boolean))];
  return {
    name: target.name,
    unit: target.unit,
    rate: sum((s) => s.ok) / sum((s) => s.seconds),
    p50: p50s.length ? p50s[Math.floor(p50s.length / 2)] : undefined,
    p99: p99s.length ? Math.max(...p99s) : undefined,
    failures: sum((s) => s.failures),
    detail: `${Object.entries(counts).map(([key, n]) => `${key}: ${n}`).join(", ")} in ${sum((s) => s.seconds).toFixed(1)} s` +
      (notes.length ? ` (${notes.join("; ")})` : ""),
  };
}

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== "0");
  return keys;
}

// ---------------------------------------------------------------------------------------------

const began = performance.now();
const elapsed = () => `[${((performance.now() - began) / 1000).toFixed(1).padStart(5)} s]`;
const log = (message: string) => process.stdout.write(`${message}\n`);
const step = (message: string) => log(`${elapsed()} ${message}`);
const loud = (message: string) => process.stdout.write(`\n!!!!!!!! ${message}\n\n`);

async function main() {
  process.chdir(join(import.meta.dir, "..")); // config.toml and src/main.ts are found from here
  const duration = option("duration", "BENCH_DURATION", 10);
  const connections = Math.max(1, Math.round(option("connections", "BENCH_CONNECTIONS", 32)));
  const warmup = option("warmup", "BENCH_WARMUP", 2);
  const rounds = Math.max(1, Math.round(option("rounds", "BENCH_ROUNDS", 5)));
  log(`bench-api: ${connections} connections; per target ${warmup} s warm-up, then ${duration} s in ${rounds} interleaved slices; Bun ${Bun.version}`);
  log("every target is a separate child process (bun ...); the load comes from autocannon in this process");

  const problems: string[] = [];
  const redis = await startRedis();
  const inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  const hour = () => Math.floor(Date.now() / 1000) + 3600;
  const userToken = await sign({ sub: "bench-reader", role: "USER", exp: hour() }, SECRET, "HS256");
  const serviceToken = await sign({ sub: "_UCloud", role: "SERVICE", exp: hour() }, SECRET, "HS256");

  try {
    // (a) the bare Hono route
    const barePort = await freePort();
    await startHttp("bare hono", [import.meta.path, "--role", "bare", "--port", String(barePort)], {}, barePort);

    // (b) the service
    const port = await freePort();
    const env = {
      IAPPS_REDIS_URL: redis.url,
      IAPPS_SERVER_PORT: String(port),
      IAPPS_SERVER_HOST: "127.0.0.1",
      IAPPS_AUTH_JWT_SECRET: SECRET,
      IAPPS_UCLOUD_PROVIDER_ID: PROVIDER,
      IAPPS_API_REQUIRE_ETAG: "false",
    };
    const poolSize = Bun.spawnSync([bun(), "src/main.ts", "config", "redis.pool_size"], { env: { ...process.env, ...env } });
    log(`service: bun src/main.ts api, redis.pool_size = ${poolSize.stdout.toString().trim() || "?"}\n`);
    const service = await startHttp("service", ["src/main.ts", "api"], env, port);
    const base = `http://127.0.0.1:${port}`;

    // The reader's record, created through the API.
    const seed = await fetch(`${base}/api/iapps/${APP}/update`, {
      method: "POST",
      headers: { authorization: `Bearer ${userToken}`, "content-type": "application/json" },
      body: JSON.stringify({ config: EMPTY_CONFIG, expectedETag: null }),
    });
    if (seed.status !== 200) throw new Error(`seeding the reader's record: ${seed.status} ${await seed.text()}`);
    const check = await fetch(`${base}/api/iapps/${APP}/retrieve`, { headers: { authorization: `Bearer ${userToken}` } });
    const view = (await check.json()) as { etag?: string };
    if (check.status !== 200 || !view.etag || view.etag === "initial") {
      throw new Error(`the reader's record was not stored: ${check.status} ${JSON.stringify(view)}`);
    }

    // (c) the raw transaction loop, in database 1 of the same Redis
    const raw = start("raw-tx", bun(), [import.meta.path, "--role", "raw-tx", "--redis", `${redis.url}/1`, "--connections", String(connections)]);

    const retrieve: AutocannonRequest = {
      method: "GET",
      path: `/api/iapps/${APP}/retrieve`,
      headers: { authorization: `Bearer ${userToken}` },
    };
    const updateOf = (createdBy: string): AutocannonRequest => ({
      method: "POST",
      path: `/ucloud/${PROVIDER}/iapps/${APP}/update`,
      headers: { authorization: `Bearer ${serviceToken}`, "content-type": "application/json" },
      body: JSON.stringify({ principal: { createdBy, project: null }, config: EMPTY_CONFIG, expectedETag: null }),
    });
    let created = 0; // owners named so far: bench-0, bench-1, ... (each used once)
    let owners: string[] = []; // owners with a stored record, for the existing-record updates
    let next = 0;
    const refreshOwners = async () => {
      const pattern = new RegExp(`\\{${APP}:(bench-\\d+)\\}`);
      owners = (await scanKeys(inspect, "iapps:cfg:*")).map((key) => pattern.exec(key)?.[1]).filter((o) => o !== undefined);
    };

    const bare = httpTarget("bare Hono route (GET)", `http://127.0.0.1:${barePort}`, connections, retrieve);
    const targets = [
      bare,
      httpTarget("service retrieve (GET, stored record)", base, connections, retrieve),
      httpTarget("service update (distinct new owners)", base, connections, () => updateOf(`bench-${created++}`)),
      httpTarget("service update (distinct existing owners)", base, connections, () => updateOf(owners[next++ % owners.length]!)),
      rawTarget(raw),
    ];
    const [, retrieveTarget, updateNew, updateExisting, rawLoop] = targets as [Target, Target, Target, Target, Target];

    let serviceLines = service.output.length;
    const runSlice = async (target: Target, seconds: number, measured: boolean) => {
      if (target === updateExisting) await refreshOwners();
      const slice = await target.run(seconds);
      if (measured) target.slices.push(slice);
      const complaints = service.output
        .slice(serviceLines)
        .filter((line) => line.trim() !== "" && (!line.startsWith("{") || /"level":"(warn|error)"/.test(line)));
      serviceLines = service.output.length;
      if (complaints.length > 0) {
        problems.push(`${target.name}: the service logged ${complaints.length} warn/error line(s), e.g.\n    ${complaints.slice(0, 3).join("\n    ")}`);
      }
      if (slice.failures > 0) problems.push(`${target.name}: ${slice.failures} failures in one slice: ${JSON.stringify(slice.counts)}`);
    };

    if (warmup > 0) {
      step("warm-up");
      for (const target of targets) await runSlice(target, warmup, false);
    }
    for (let round = 0; round < rounds; round++) {
      step(`round ${round + 1}/${rounds}`);
      for (const target of targets) await runSlice(target, duration / rounds, true);
    }

    // Exactly one job per record: more jobs than records means first updates registered jobs they
    // did not keep. Requests still in flight when autocannon stopped finish on their own: wait until the counts settle.
    let records = -1;
    let jobs = -1;
    for (let i = 0, stable = 0; i < 20 && stable < 2; i++) {
      const now = [(await scanKeys(inspect, "iapps:cfg:*")).length, Number((await inspect.get("iapps:job-seq")) ?? 0)] as const;
      stable = now[0] === records && now[1] === jobs ? stable + 1 : 0;
      [records, jobs] = now;
      await Bun.sleep(200);
    }
    step(`done: ${records} records and ${jobs} jobs in Redis, ${created} new-owner update requests built`);
    if (jobs !== records) problems.push(`jobs registered (${jobs}) != records stored (${records}): some first updates registered a job they did not keep`);

    report(
      targets.map(summarize),
      [
        { name: "retrieve / bare", numerator: retrieveTarget, denominator: bare, goal: 0.5 },
        { name: "update (distinct new owners) / raw transaction loop", numerator: updateNew, denominator: rawLoop, goal: 0.6 },
        { name: "update (existing records) / raw transaction loop [info]", numerator: updateExisting, denominator: rawLoop, goal: 0.6 },
      ],
      problems,
    );
  } finally {
    inspect.disconnect();
    await stopAll();
  }
  log(`\ntotal ${elapsed()}`);
}

function report(rows: Summary[], ratios: { name: string; numerator: Target; denominator: Target; goal: number }[], problems: string[]) {
  const width = Math.max(...rows.map((row) => row.name.length));
  log("");
  log(`${"target".padEnd(width)}  ${"rate".padStart(9)}        ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)}  failures`);
  for (const row of rows) {
    const latency = row.p50 === undefined ? " ".repeat(15) : `${String(row.p50).padStart(7)} ${String(row.p99).padStart(7)}`;
    log(`${row.name.padEnd(width)}  ${row.rate.toFixed(0).padStart(9)} ${row.unit.padEnd(6)} ${latency}  ${row.failures}`);
  }
  log("(p50: median of the slices' medians; p99: the worst slice's)\n");
  const rate = (target: Target) => rows.find((row) => row.name === target.name)!.rate;
  for (const ratio of ratios) {
    const value = rate(ratio.numerator) / rate(ratio.denominator);
    log(`${ratio.name.padEnd(56)} ${value.toFixed(2)}  (goal >= ${ratio.goal}: ${value >= ratio.goal ? "ok" : "BELOW GOAL"})`);
  }
  log("");
  for (const row of rows) log(`${row.name}: ${row.detail}`);
  for (const row of rows) if (row.failures > 0) loud(`${row.name}: ${row.failures} FAILED REQUESTS (must be 0): ${row.detail}`);
  for (const problem of problems) loud(problem);
}

// ---------------------------------------------------------------------------------------------

const role = stringOption("role");
if (role === "bare") {
  serveBare(Number(stringOption("port")));
} else if (role === "raw-tx") {
  await serveRawTransactions(stringOption("redis")!, Number(stringOption("connections")));
  process.exit(0);
} else {
  let interrupted = false;
  const onSignal = (signal: string) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping every process this benchmark started\n`);
    void stopAll().finally(() => process.exit(130));
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  try {
    await main();
  } catch (e) {
    process.stderr.write(`bench-api failed: ${(e as Error).stack ?? e}\n`);
    await stopAll();
    process.exit(1);
  }
}
