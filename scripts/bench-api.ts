// Throughput of the configuration API against references measured in the same run, the time an
// update takes to reach the other replicas, and the replica cache's memory per record. Every
// figure that matters is a ratio of two targets measured side by side (absolute rates on a shared
// machine are noise). `npm run bench:api` runs it (scripts/bench-api.sh installs wrk first).
//
// (1) Throughput: one `wrk -t1 -c<connections>` per slice, the targets' slices interleaved
//     (bare, warm, /healthz, 404, cache off, bare+HGETALL, update new, update existing, raw,
//     bare, ...), every target a separate child process on the runtime running this script:
//
//   retrieve, warm cache   GET /api/iapps/syncthing/retrieve (USER token, the owner has a stored
//                          record) on one replica with the cache on; the record is in its cache
//                          before the first slice (checked: a retrieve makes no HGETALL), and every
//                          slice counts the HGETALLs Redis saw meanwhile
//      vs      a bare Hono route answering the same JSON body and ETag header     goal >= 0.85
//   /healthz and an unknown route (404), same service, same headers
//      vs      the same bare Hono route                                            [info]
//   retrieve, cache off    the same GET on a second service with IAPPS_API_CACHE_MAX_ENTRIES=0
//      vs      a bare Hono route doing one HGETALL of the record's key with one ioredis client
//              (the options of the service's command connection), same JSON        goal >= 0.9
//   update     POST /ucloud/k8s/iapps/syncthing/update (SERVICE token, no precondition) of
//              existing records: 1,000 owners seeded before, round robin (wrk's Lua request()
//              names them), so a request rarely meets another on the same record
//      vs      a raw ioredis loop: WATCH k; GET k; MULTI; HSET k ...; EXEC, a new k each time, one
//              loop per connection, as many as wrk keeps requests in flight       goal >= 0.6
//   plus, for information, first updates (a new owner every request): a first update also takes
//   the job claim and registers the job, a later one does not.
//
//   wrk is a C load generator several times faster than the service, so the bare route's rate is
//   the server's, not the load generator's (autocannon, in this process, was slower than the
//   service). What the raw loop does NOT pay is HTTP and wrk's CPU: that is part of the update
//   ratio.
//
// (2) Coherence: three fresh replicas (cache on; the throughput targets stopped), --prop-owners
//     owners seeded and warm in every replica's cache, then open-loop updates at --prop-rate per
//     second (a load the machine carries; scheduled by the clock, never waiting for answers) for
//     --prop-seconds, round robin over owners and replicas. For every --prop-sample-th write, as
//     soon as it is answered, this process reads the OTHER two replicas back to back (provider
//     retrieve) until each serves the write's ETag or a later one: the time from the write's
//     answer to that read's answer is when the invalidation had reached that replica, at most one
//     read late (the table shows how many were served on the first read, and what one read takes).
//     "A later one": a write to the same owner committed after it (the order comes from the
//     record's ETag log in Redis, read afterwards). The writer is also read once at once: it must
//     serve its own write.
//
// (3) Memory: scripts/bench-cache-memory.ts, alone in its own process, fills a real service
//     context's cache through RecordStore.read with --memory-records realistic records (database 2
//     of the same Redis) and reports (RSS after - RSS before) / N and the heapUsed delta / N after
//     Bun.gc(true).
//
// Usage: bun scripts/bench-api.ts [--duration S] [--connections N] [--warmup S] [--rounds R]
//          [--only throughput,coherence,memory] [--targets retrieve,update]
//          [--prop-seconds S] [--prop-rate R] [--prop-owners N] [--prop-sample K] [--memory-records N]
//        (or BENCH_DURATION, BENCH_CONNECTIONS, BENCH_WARMUP, BENCH_ROUNDS, BENCH_ONLY, BENCH_TARGETS,
//        BENCH_PROP_SECONDS, BENCH_PROP_RATE, BENCH_PROP_OWNERS, BENCH_PROP_SAMPLE,
//        BENCH_MEMORY_RECORDS; defaults 5, 32, 1, 5, all, 5, 200, 200, 1, 100000:
//        per target 1 s of warm-up, then 5 s measured as 5 slices of 1 s (wrk counts whole
//        seconds), 9 targets: about 60 s; coherence about 12 s, memory about 15 s; under 2 minutes.
//        --prop-seconds 0 or --memory-records 0 skip that part. --targets narrows the throughput
//        part to the retrieve targets (bare, warm, /healthz, 404, cache off, bare+HGETALL) or the
//        update targets (update new, update existing, raw): quicker when working on one path.)
// The services read config.toml plus IAPPS_* overrides as usual (e.g. IAPPS_REDIS_POOL_SIZE);
// this script sets only the Redis URL, port, host, JWT secret, provider id and require_etag, and
// cache_max_entries where it matters (0 for the cache-off service; 100000 should a cache-on service
// resolve to 0).
// Internal roles (the script starts itself): --role bare --port P --etag E
//                                            --role bare-hgetall --port P --redis URL --key K
//                                            --role raw-tx --redis URL --connections N
// (raw-tx reads "<seconds>" lines on stdin and answers each with one JSON line).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Hono } from "hono";
import { sign } from "hono/jwt";
import { Redis } from "ioredis";
import { freePort } from "../test/support/redis-server.ts";
import { keys } from "../src/store/keys.ts";
import { option } from "./options.ts";

const SECRET = "bench-secret-0123456789abcdef0123";
const PROVIDER = "k8s";
const APP = "syncthing";
const EMPTY_CONFIG = { folders: [], devices: [] };
/** A path no route has: what an unknown route costs. */
const UNKNOWN_ROUTE = "/no/such/route";
const DEVICE = "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2";
/** What the coherence writes store: two folders and one device, as a user would. */
const propConfig = (owner: string, n: number) => ({
  folders: [
    { ucloudPath: `/home-${owner}/Syncthing`, id: "" },
    { ucloudPath: `/home-${owner}/Documents/folder-${n % 10}`, id: `docs-${n % 10}` },
  ],
  devices: [{ deviceId: DEVICE, label: "laptop" }],
});

/** The runtime running this script, for every child (or node_modules/.bin/bun, should an install replace the binary meanwhile). */
function bun(): string {
  if (existsSync(process.execPath)) return process.execPath;
  const local = join(import.meta.dir, "..", "node_modules", ".bin", "bun");
  return existsSync(local) ? local : "bun";
}

// ---------------------------------------------------------------------------------------------
// Options

function stringOption(name: string, envName?: string): string | undefined {
  const argv = process.argv.slice(2);
  let raw = envName === undefined ? undefined : process.env[envName];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) raw = argv[i + 1];
    else if (argv[i]!.startsWith(`--${name}=`)) raw = argv[i]!.slice(name.length + 3);
  }
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Child roles

/** The bare baseline: one Hono route, the body and ETag header of a retrieve (of the record with `etag`), no auth, no Redis. */
function serveBare(port: number, etag: string) {
  const app = new Hono();
  const body = { etag, config: EMPTY_CONFIG };
  app.get(`/api/iapps/${APP}/retrieve`, (c) => c.json(body, 200, { ETag: `"${etag}"` }));
  Bun.serve({ hostname: "127.0.0.1", port, fetch: app.fetch });
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
}

/**
 * The cache-off baseline: one Hono route doing one HGETALL of `key` on one ioredis client (the
 * options of the service's command connection: no offline queue, no replay, no auto-pipelining,
 * a command timeout), answering the same JSON body and ETag header as a retrieve. No auth.
 */
async function serveBareHgetall(port: number, url: string, key: string) {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: false,
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 1000,
  });
  redis.on("error", () => {});
  await redis.connect();
  const app = new Hono();
  app.get(`/api/iapps/${APP}/retrieve`, async (c) => {
    const hash = await redis.hgetall(key);
    if (hash.etag === undefined || hash.config === undefined) return c.json({ etag: "initial", config: EMPTY_CONFIG }, 200, { ETag: '"initial"' });
    return c.json({ etag: hash.etag, config: JSON.parse(hash.config) as unknown }, 200, { ETag: `"${hash.etag}"` });
  });
  Bun.serve({ hostname: "127.0.0.1", port, fetch: app.fetch });
  const exit = () => {
    redis.disconnect();
    process.exit(0);
  };
  process.on("SIGTERM", exit);
  process.on("SIGINT", exit);
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
  /** HGETALL calls Redis counted during the slice (targets that read records). */
  redisReads?: number;
  /** Every command Redis ran during the slice (scripts' own included; INFO left out). */
  redisCommands?: number;
  /** CPU seconds the target's process used during the slice (Linux /proc). */
  cpu?: number;
}

interface Target {
  name: string;
  unit: string;
  run(seconds: number): Promise<Slice>;
  slices: Slice[];
  /** Count Redis HGETALLs during each slice (INFO commandstats). */
  countReads?: boolean;
  /** Count every command Redis runs during each slice: a figure per request that load does not blur. */
  countCommands?: boolean;
  /** The process that does the target's work: its CPU time per request is reported beside the rate. */
  pid?: number;
}

/** What a slice of wrk measured: its done() prints this as one JSON line (latencies in µs). */
interface WrkResult {
  requests: number;
  micros: number;
  connect: number;
  read: number;
  write: number;
  /** Answers with a status of 400 or more. */
  status: number;
  timeout: number;
  p50: number;
  p99: number;
}

const REPORT_LUA = `
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"micros":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%.0f,"p99":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;

/**
 * A provider update per request, each for the owner <prefix>-<n>: n counts up (a new owner every
 * time), or goes round <existing> owners when that argument is given. One wrk thread: one counter.
 */
const updateLua = (config: unknown) => `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local prefix, existing, n = "bench", 0, 0
function init(args)
  prefix = args[1]
  existing = tonumber(args[2] or "0")
end
function request()
  n = n + 1
  local owner = prefix .. "-" .. (existing > 0 and (n % existing) or n)
  return wrk.format(nil, nil, nil, '{"principal":{"createdBy":"' .. owner .. '","project":null},"config":${JSON.stringify(config)},"expectedETag":null}')
end
${REPORT_LUA}`;

/** Writes a Lua script for wrk into the run's temporary folder. */
function luaScript(name: string, text: string): string {
  const path = join(tempDir!, name);
  writeFileSync(path, text);
  return path;
}

/**
 * An HTTP target loaded by `wrk -t1 -c<connections>`: every answer is expected to have the status
 * `expect` (200, or 404 for the unknown route); any other, and any socket error, is a failure.
 */
function httpTarget(
  name: string,
  url: string,
  o: { connections: number; token: string; expect: 200 | 404; script: string; args?: () => string[] },
): Target {
  return {
    name,
    unit: "req/s",
    slices: [],
    async run(seconds) {
      const wrk = Bun.spawn(
        ["wrk", "-t1", `-c${o.connections}`, `-d${seconds}s`, "--timeout", "5s", "-s", o.script, "-H", `Authorization: Bearer ${o.token}`, url, "--", ...(o.args?.() ?? [])],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [out, err, code] = await Promise.all([new Response(wrk.stdout).text(), new Response(wrk.stderr).text(), wrk.exited]);
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (code !== 0 || line === undefined) throw new Error(`${name}: wrk exited ${code}:\n${out}${err}`);
      const r = JSON.parse(line) as WrkResult;
      const socket = r.connect + r.read + r.write + r.timeout;
      const expected = o.expect === 200 ? r.requests - r.status : r.status;
      const counts: Record<string, number> = { [String(o.expect)]: expected };
      if (r.requests - expected > 0) counts[o.expect === 200 ? ">= 400" : "< 400"] = r.requests - expected;
      if (socket > 0) counts["socket errors"] = socket;
      return { ok: expected, seconds: r.micros / 1e6, failures: r.requests - expected + socket, counts, p50: r.p50 / 1000, p99: r.p99 / 1000 };
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
      await waitFor(
        child,
        "result",
        () => {
          line = child.output.filter((l) => l.startsWith("{"))[answered];
          return line !== undefined;
        },
        seconds * 1000 + 15_000,
      );
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
  /** CPU seconds of the target's process per request (or transaction); NaN where unknown. */
  cpuPerOk: number;
  detail: string;
}

function summarize(target: Target): Summary {
  const sum = (f: (s: Slice) => number) => target.slices.reduce((total, slice) => total + f(slice), 0);
  const counts: Record<string, number> = {};
  for (const slice of target.slices) for (const [key, n] of Object.entries(slice.counts)) counts[key] = (counts[key] ?? 0) + n;
  const p50s = target.slices.map((s) => s.p50).filter((p) => p !== undefined).sort((a, b) => a - b);
  const p99s = target.slices.map((s) => s.p99).filter((p) => p !== undefined);
  const notes = [...new Set(target.slices.map((s) => s.note).filter(Boolean))];
  if (target.countReads) notes.push(`HGETALLs Redis counted meanwhile: ${sum((s) => s.redisReads ?? 0)}`);
  if (target.countCommands) notes.push(`Redis commands per ${target.unit === "tx/s" ? "transaction" : "request"}: ${(sum((s) => s.redisCommands ?? 0) / sum((s) => s.ok)).toFixed(1)}`);
  notes.push(`per slice ${target.slices.map((s) => (s.ok / s.seconds).toFixed(0)).join(" ")}`);
  return {
    name: target.name,
    unit: target.unit,
    rate: sum((s) => s.ok) / sum((s) => s.seconds),
    p50: p50s.length ? p50s[Math.floor(p50s.length / 2)] : undefined,
    p99: p99s.length ? Math.max(...p99s) : undefined,
    failures: sum((s) => s.failures),
    cpuPerOk: sum((s) => s.cpu ?? NaN) / sum((s) => s.ok),
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

/** Runs `each` for every item, `width` at a time. */
async function inParallel<T>(items: T[], width: number, each: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await each(items[next++]!);
    }),
  );
}

/** Every command Redis has executed so far but INFO (all databases, all clients, scripts' own commands included). */
async function commandCalls(redis: Redis): Promise<number> {
  const info = await redis.info("commandstats");
  let calls = 0;
  for (const [, name, n] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (name !== "info") calls += Number(n);
  return calls;
}

/** HGETALL calls Redis has executed so far (all databases, all clients). */
async function hgetallCalls(redis: Redis): Promise<number> {
  const info = await redis.info("commandstats");
  return Number(/cmdstat_hgetall:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

/**
 * Runs `read` until one whole run of it makes Redis execute no HGETALL: then the records it reads
 * are served from the cache. Answers how many runs that took.
 */
async function untilWarm(what: string, inspect: Redis, read: () => Promise<void>, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const before = await hgetallCalls(inspect);
    await read();
    const reads = (await hgetallCalls(inspect)) - before;
    if (reads === 0) return attempt;
    if (Date.now() > deadline) throw new Error(`${what}: still ${reads} HGETALL(s) per pass after ${timeoutMs} ms: the cache does not warm up`);
    await Bun.sleep(20);
  }
}

/** New warn/error (or non-JSON) lines of a service since `from`. */
function complaintsOf(child: Child, from: number): string[] {
  return child.output.slice(from).filter((line) => line.trim() !== "" && (!line.startsWith("{") || /"level":"(warn|error)"/.test(line)));
}

const quantile = (sorted: number[], q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : NaN);
const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(2) : "-");

/** CPU seconds a process has used so far (Linux /proc; NaN elsewhere). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}
/** Busy and total CPU seconds of the whole machine so far (all cores). */
function machineSeconds(): { busy: number; total: number } {
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = cpu[3]! + cpu[4]!; // idle + iowait
    return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
  } catch {
    return { busy: NaN, total: NaN };
  }
}
/** CPU (in cores) used by the machine, and by everything outside `pids` and this process, between two snapshots. */
function cpuSnapshot(pids: (number | undefined)[]) {
  const machine = machineSeconds();
  const self = process.cpuUsage();
  const ours = pids.reduce<number>((n, pid) => n + cpuSeconds(pid), (self.user + self.system) / 1e6);
  const at = performance.now();
  return () => {
    const seconds = (performance.now() - at) / 1000;
    const m = machineSeconds();
    const now = process.cpuUsage();
    const oursNow = pids.reduce<number>((n, pid) => n + cpuSeconds(pid), (now.user + now.system) / 1e6);
    const busy = (m.busy - machine.busy) / seconds;
    return { busy, outside: busy - (oursNow - ours) / seconds };
  };
}
const cores = (value: number) => (Number.isFinite(value) ? value.toFixed(2) : "?");

const CLOCK_TICKS = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout?.toString().trim()) || 100;

// ---------------------------------------------------------------------------------------------

const began = performance.now();
const elapsed = () => `[${((performance.now() - began) / 1000).toFixed(1).padStart(5)} s]`;
const log = (message: string) => process.stdout.write(`${message}\n`);
const step = (message: string) => log(`${elapsed()} ${message}`);
const loud = (message: string) => process.stdout.write(`\n!!!!!!!! ${message}\n\n`);

/** What every phase shares. */
interface Bench {
  redisUrl: string;
  redisPid: number | undefined;
  inspect: Redis;
  userToken: string;
  serviceToken: string;
  /** Environment of every service process (without its port). */
  env: Record<string, string>;
  /** Added for a cache-on service: empty, or cache_max_entries when the configuration turns the cache off. */
  cacheOn: Record<string, string>;
  /** api.cache_max_entries of a cache-on service. */
  cacheMaxEntries: number;
  problems: string[];
  /** Printed at the end, in order. */
  reports: (() => void)[];
}

async function main() {
  process.chdir(join(import.meta.dir, "..")); // config.toml and src/main.ts are found from here
  const duration = option("duration", "BENCH_DURATION", 5);
  const connections = Math.max(1, Math.round(option("connections", "BENCH_CONNECTIONS", 32)));
  const warmup = Math.round(option("warmup", "BENCH_WARMUP", 1));
  const rounds = Math.max(1, Math.round(option("rounds", "BENCH_ROUNDS", 5)));
  const propSeconds = option("prop-seconds", "BENCH_PROP_SECONDS", 5);
  const propRate = option("prop-rate", "BENCH_PROP_RATE", 200);
  const propOwners = Math.max(1, Math.round(option("prop-owners", "BENCH_PROP_OWNERS", 200)));
  const propSample = Math.max(1, Math.round(option("prop-sample", "BENCH_PROP_SAMPLE", 1)));
  const memoryRecords = Math.round(option("memory-records", "BENCH_MEMORY_RECORDS", 100_000));
  const only = new Set((stringOption("only", "BENCH_ONLY") ?? "throughput,coherence,memory").split(",").map((p) => p.trim()));
  for (const part of only) if (!["throughput", "coherence", "memory"].includes(part)) throw new Error(`--only: unknown part '${part}'`);
  const groups = new Set((stringOption("targets", "BENCH_TARGETS") ?? "retrieve,update").split(",").map((p) => p.trim()));
  for (const group of groups) if (!["retrieve", "update"].includes(group)) throw new Error(`--targets: unknown group '${group}'`);

  log(`bench-api: Bun ${Bun.version}; every target is a separate child process (bun ...)`);
  if (only.has("throughput")) {
    log(`throughput: wrk -t1 -c${connections}; per target ${warmup} s warm-up, then ${duration} s in ${rounds} interleaved slices`);
  }
  if (only.has("coherence") && propSeconds > 0) {
    const followed = propSample === 1 ? "every write" : `every ${propSample}th write`;
    log(`coherence: 3 replicas, ${propOwners} owners, ${propRate} updates/s open-loop for ${propSeconds} s, ${followed} followed on the other replicas`);
  }
  if (only.has("memory") && memoryRecords > 0) log(`memory: ${memoryRecords} records in one replica's cache`);

  const redis = await startRedis();
  const hour = () => Math.floor(Date.now() / 1000) + 3600;
  const bench: Bench = {
    redisUrl: redis.url,
    redisPid: redis.child.process.pid,
    inspect: new Redis(redis.url, { maxRetriesPerRequest: 1 }),
    userToken: await sign({ sub: "bench-reader", role: "USER", exp: hour() }, SECRET, "HS256"),
    serviceToken: await sign({ sub: "_UCloud", role: "SERVICE", exp: hour() }, SECRET, "HS256"),
    env: {
      IAPPS_REDIS_URL: redis.url,
      IAPPS_SERVER_HOST: "127.0.0.1",
      IAPPS_AUTH_JWT_SECRET: SECRET,
      IAPPS_UCLOUD_PROVIDER_ID: PROVIDER,
      IAPPS_API_REQUIRE_ETAG: "false",
    },
    cacheOn: {},
    cacheMaxEntries: 100_000,
    problems: [],
    reports: [],
  };
  const resolved = (key: string) =>
    Bun.spawnSync([bun(), "src/main.ts", "config", key], { env: { ...process.env, ...bench.env } }).stdout.toString().trim() || "?";
  const cacheEntries = resolved("api.cache_max_entries");
  if (cacheEntries === "0") bench.cacheOn = { IAPPS_API_CACHE_MAX_ENTRIES: "100000" };
  else if (Number(cacheEntries) > 0) bench.cacheMaxEntries = Number(cacheEntries);
  log(
    `services: bun src/main.ts api, redis.pool_size = ${resolved("redis.pool_size")}, api.cache_max_entries = ${cacheEntries}` +
      (cacheEntries === "0" ? " (cache-on services get 100000)" : "") +
      "\n",
  );

  try {
    try {
      if (only.has("throughput")) await throughput(bench, { duration, connections, warmup, rounds, groups });
      if (only.has("coherence") && propSeconds > 0) {
        await coherence(bench, { seconds: propSeconds, rate: propRate, owners: propOwners, sampleEvery: propSample, timeoutMs: 2000 });
      }
      if (only.has("memory") && memoryRecords > 0) await memory(bench, memoryRecords);
    } finally {
      // What was measured before a failure is still printed.
      for (const report of bench.reports) report();
      for (const problem of bench.problems) loud(problem);
    }
  } finally {
    bench.inspect.disconnect();
    await stopAll();
  }
  log(`\ntotal ${elapsed()}`);
}

// ---------------------------------------------------------------------------------------------
// (1) Throughput

async function throughput(bench: Bench, o: { duration: number; connections: number; warmup: number; rounds: number; groups: Set<string> }) {
  const { inspect, userToken, serviceToken, problems } = bench;
  const { duration, connections, warmup, rounds, groups } = o;

  // (a) the service, cache on
  const port = await freePort();
  const service = await startHttp("service (cache on)", ["src/main.ts", "api"], { ...bench.env, ...bench.cacheOn, IAPPS_SERVER_PORT: String(port) }, port);
  const base = `http://127.0.0.1:${port}`;
  // (b) the service, cache off
  const offPort = await freePort();
  const serviceOff = await startHttp(
    "service (cache off)",
    ["src/main.ts", "api"],
    { ...bench.env, IAPPS_API_CACHE_MAX_ENTRIES: "0", IAPPS_SERVER_PORT: String(offPort) },
    offPort,
  );
  const offBase = `http://127.0.0.1:${offPort}`;

  // The reader's record, created through the API.
  const seed = await fetch(`${base}/api/iapps/${APP}/update`, {
    method: "POST",
    headers: { authorization: `Bearer ${userToken}`, "content-type": "application/json" },
    body: JSON.stringify({ config: EMPTY_CONFIG, expectedETag: null }),
  });
  if (seed.status !== 200) throw new Error(`seeding the reader's record: ${seed.status} ${await seed.text()}`);
  const readAt = async (url: string) => {
    const response = await fetch(`${url}/api/iapps/${APP}/retrieve`, { headers: { authorization: `Bearer ${userToken}` } });
    return { status: response.status, etag: response.headers.get("etag"), body: await response.text() };
  };
  const stored = await readAt(base);
  const etag = (JSON.parse(stored.body) as { etag?: string }).etag;
  if (stored.status !== 200 || !etag || etag === "initial") throw new Error(`the reader's record was not stored: ${stored.status} ${stored.body}`);
  const warmPasses = await untilWarm("service (cache on)", inspect, async () => void (await readAt(base)));

  // (c) the bare route (the same body), (d) the bare route with one HGETALL, (e) the raw transaction loop in database 1
  const barePort = await freePort();
  const bareChild = await startHttp("bare hono", [import.meta.path, "--role", "bare", "--port", String(barePort), "--etag", etag], {}, barePort);
  const hgetallPort = await freePort();
  const readerKey = keys.record(APP, { createdBy: "bench-reader", project: null });
  const hgetallChild = await startHttp(
    "bare hono + HGETALL",
    [import.meta.path, "--role", "bare-hgetall", "--port", String(hgetallPort), "--redis", bench.redisUrl, "--key", readerKey],
    {},
    hgetallPort,
  );
  const raw = start("raw-tx", bun(), [import.meta.path, "--role", "raw-tx", "--redis", `${bench.redisUrl}/1`, "--connections", String(connections)]);

  // Every retrieve target answers the same bytes.
  for (const [name, url] of [["service (cache off)", offBase], ["bare hono", `http://127.0.0.1:${barePort}`], ["bare hono + HGETALL", `http://127.0.0.1:${hgetallPort}`]] as const) {
    const other = await readAt(url);
    if (other.status !== 200 || other.body !== stored.body || other.etag !== stored.etag) {
      throw new Error(`${name} answers ${other.status} ${other.etag} ${other.body}, the service ${stored.status} ${stored.etag} ${stored.body}`);
    }
  }
  log(`reader's record ${readerKey}: ETag ${stored.etag}, body ${stored.body}; warm in the cache-on service after ${warmPasses} pass(es) of retrieve`);

  // The unknown route answers 404 in UCloud's error shape; /healthz answers 200.
  for (const [path, status] of [["/healthz", 200], [UNKNOWN_ROUTE, 404]] as const) {
    const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${userToken}` } });
    if (response.status !== status) throw new Error(`GET ${path}: ${response.status} ${await response.text()}, expected ${status}`);
  }

  // The owners of the existing-record updates, created through the API.
  const existing = groups.has("update") ? 1000 : 0;
  await inParallel(Array.from({ length: existing }, (_, i) => i), 16, async (i) => {
    const r = await fetch(`${base}/ucloud/${PROVIDER}/iapps/${APP}/update`, {
      method: "POST",
      headers: { authorization: `Bearer ${serviceToken}`, "content-type": "application/json" },
      body: JSON.stringify({ principal: { createdBy: `bench-old-${i}`, project: null }, config: EMPTY_CONFIG, expectedETag: null }),
    });
    if (r.status !== 200) throw new Error(`seeding bench-old-${i}: ${r.status} ${await r.text()}`);
  });

  const reportOnly = luaScript("report.lua", REPORT_LUA);
  const updates = luaScript("update.lua", updateLua(EMPTY_CONFIG));
  const user = { connections, token: userToken, script: reportOnly };
  const bareUrl = `http://127.0.0.1:${barePort}/api/iapps/${APP}/retrieve`;
  const [servicePid, offPid] = [service.process.pid, serviceOff.process.pid];
  const bare = { ...httpTarget("bare Hono route (GET, constant body)", bareUrl, { ...user, expect: 200 }), pid: bareChild.process.pid };
  const warm = { ...httpTarget("service retrieve (GET, warm cache)", `${base}/api/iapps/${APP}/retrieve`, { ...user, expect: 200 }), countReads: true, pid: servicePid };
  const healthz = { ...httpTarget("service GET /healthz", `${base}/healthz`, { ...user, expect: 200 }), pid: servicePid };
  const unknown = { ...httpTarget("service GET unknown route (404)", `${base}${UNKNOWN_ROUTE}`, { ...user, expect: 404 }), pid: servicePid };
  const off = { ...httpTarget("service retrieve (GET, cache off)", `${offBase}/api/iapps/${APP}/retrieve`, { ...user, expect: 200 }), countReads: true, pid: offPid };
  const bareHgetall = {
    ...httpTarget("bare Hono route + one HGETALL (GET)", `http://127.0.0.1:${hgetallPort}/api/iapps/${APP}/retrieve`, { ...user, expect: 200 }),
    countReads: true,
    pid: hgetallChild.process.pid,
  };
  const updateUrl = `${base}/ucloud/${PROVIDER}/iapps/${APP}/update`;
  const writer = { connections, token: serviceToken, expect: 200, script: updates } as const;
  let slices = 0; // the owners of a slice of new-owner updates: bench-s<slice>-1, -2, ...
  const updateNew = {
    ...httpTarget("service update (distinct new owners)", updateUrl, { ...writer, args: () => [`bench-s${slices++}`] }),
    countCommands: true,
    pid: servicePid,
  };
  const updateExisting = {
    ...httpTarget("service update (existing owners, round robin)", updateUrl, { ...writer, args: () => ["bench-old", String(existing)] }),
    countCommands: true,
    pid: servicePid,
  };
  const rawLoop = { ...rawTarget(raw), countCommands: true, pid: raw.process.pid };
  // bare before warm: nothing from the previous slice can reach Redis during a warm-cache slice.
  const targets: Target[] = [
    ...(groups.has("retrieve") ? [bare, warm, healthz, unknown, off, bareHgetall] : []),
    ...(groups.has("update") ? [updateNew, updateExisting, rawLoop] : []),
  ];

  const watched = [service, serviceOff].map((child) => ({ child, from: child.output.length }));
  const cpuSince = cpuSnapshot([service, serviceOff, bareChild, hgetallChild, raw].map((c) => c.process.pid).concat(bench.redisPid));
  const runSlice = async (target: Target, seconds: number, measured: boolean) => {
    const readsBefore = target.countReads ? await hgetallCalls(inspect) : 0;
    const commandsBefore = target.countCommands ? await commandCalls(inspect) : 0;
    const cpuBefore = cpuSeconds(target.pid);
    const slice = await target.run(seconds);
    slice.cpu = cpuSeconds(target.pid) - cpuBefore;
    if (target.countReads) slice.redisReads = (await hgetallCalls(inspect)) - readsBefore;
    if (target.countCommands) slice.redisCommands = (await commandCalls(inspect)) - commandsBefore;
    if (measured) target.slices.push(slice);
    for (const w of watched) {
      const complaints = complaintsOf(w.child, w.from);
      w.from = w.child.output.length;
      if (complaints.length > 0) {
        problems.push(`${target.name}: ${w.child.name} logged ${complaints.length} warn/error line(s), e.g.\n    ${complaints.slice(0, 3).join("\n    ")}`);
      }
    }
    if (slice.failures > 0) problems.push(`${target.name}: ${slice.failures} failures in one slice: ${JSON.stringify(slice.counts)}`);
  };

  if (warmup > 0) {
    step(`throughput: warm-up, ${targets.length} targets`);
    for (const target of targets) await runSlice(target, warmup, false);
  }
  // wrk counts whole seconds.
  const sliceSeconds = Math.max(1, Math.round(duration / rounds));
  for (let round = 0; round < rounds; round++) {
    step(`throughput: round ${round + 1}/${rounds}`);
    for (const target of targets) await runSlice(target, sliceSeconds, true);
  }

  // Exactly one job per record: more jobs than records means first updates registered jobs they
  // did not keep. Requests still in flight when wrk stopped finish on their own: wait until the counts settle.
  let records = -1;
  let jobs = -1;
  for (let i = 0, stable = 0; i < 20 && stable < 2; i++) {
    const now = [(await scanKeys(inspect, "iapps:cfg:*")).length, Number((await inspect.get("iapps:job-seq")) ?? 0)] as const;
    stable = now[0] === records && now[1] === jobs ? stable + 1 : 0;
    [records, jobs] = now;
    await Bun.sleep(200);
  }
  const cpu = cpuSince();
  step(`throughput done: ${records} records and ${jobs} jobs in Redis`);
  if (jobs !== records) problems.push(`jobs registered (${jobs}) != records stored (${records}): some first updates registered a job they did not keep`);
  const warmReads = warm.slices.reduce((n, s) => n + (s.redisReads ?? 0), 0);
  if (warmReads > 0) problems.push(`warm cache: Redis counted ${warmReads} HGETALL(s) during the warm-cache slices (expected 0: fills or an evicted entry)`);

  // The throughput targets go: the coherence replicas should not share the CPU with them.
  for (const child of [raw, bareChild, hgetallChild, serviceOff, service]) await stop(child);

  const rows = targets.map(summarize);
  const cachedOthers = Math.min(records - 1, bench.cacheMaxEntries - 1);
  bench.reports.push(() => {
    report(rows, [
      { name: "retrieve, warm cache / bare Hono route", numerator: warm, denominator: bare, goal: 0.85 },
      { name: "GET /healthz / bare Hono route [info]", numerator: healthz, denominator: bare },
      { name: "unknown route (404) / bare Hono route [info]", numerator: unknown, denominator: bare },
      { name: "retrieve, cache off / bare Hono route + one HGETALL", numerator: off, denominator: bareHgetall, goal: 0.9 },
      { name: "retrieve, cache off / retrieve, warm cache [info]", numerator: off, denominator: warm },
      { name: "update (existing owners) / raw transaction loop", numerator: updateExisting, denominator: rawLoop, goal: 0.6 },
      { name: "update (distinct new owners) / raw transaction loop [info]", numerator: updateNew, denominator: rawLoop },
    ]);
    log(`(by the end the cache-on service's cache also held about ${cachedOthers} other records, written through by its update slices)`);
    log(`(CPU in use on average, in cores of ${availableParallelism()}: ${cores(cpu.busy)} in all, ${cores(cpu.outside)} of it outside this benchmark's processes)`);
  });
}

function report(rows: Summary[], allRatios: { name: string; numerator: Target; denominator: Target; goal?: number }[]) {
  const measured = (target: Target) => rows.some((r) => r.name === target.name);
  const ratios = allRatios.filter((ratio) => measured(ratio.numerator) && measured(ratio.denominator));
  const width = Math.max(...rows.map((row) => row.name.length));
  log("");
  log(`${"target".padEnd(width)}  ${"rate".padStart(9)}        ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)}  ${"CPU µs".padStart(7)}  failures`);
  for (const row of rows) {
    const latency = row.p50 === undefined ? " ".repeat(15) : `${String(row.p50).padStart(7)} ${String(row.p99).padStart(7)}`;
    const cpu = Number.isFinite(row.cpuPerOk) ? (row.cpuPerOk * 1e6).toFixed(1) : "-";
    log(`${row.name.padEnd(width)}  ${row.rate.toFixed(0).padStart(9)} ${row.unit.padEnd(6)} ${latency}  ${cpu.padStart(7)}  ${row.failures}`);
  }
  log("(p50: median of the slices' medians; p99: the worst slice's; CPU µs: the target process's CPU time per request or transaction)\n");
  const row = (target: Target) => rows.find((r) => r.name === target.name)!;
  for (const ratio of ratios) {
    const value = row(ratio.numerator).rate / row(ratio.denominator).rate;
    const verdict = ratio.goal === undefined ? "" : `  (goal >= ${ratio.goal}: ${value >= ratio.goal ? "ok" : "BELOW GOAL"})`;
    // The same ratio measured in CPU time per request: what it costs, whether or not the rate was
    // limited by the server (wrk, the kernel and Redis share the machine).
    const byCpu = row(ratio.denominator).cpuPerOk / row(ratio.numerator).cpuPerOk;
    log(`${ratio.name.padEnd(56)} ${value.toFixed(2)}${verdict}${Number.isFinite(byCpu) ? `  [by CPU per request: ${byCpu.toFixed(2)}]` : ""}`);
  }
  log("");
  for (const row of rows) log(`${row.name}: ${row.detail}`);
  for (const row of rows) if (row.failures > 0) loud(`${row.name}: ${row.failures} FAILED REQUESTS (must be 0): ${row.detail}`);
}

// ---------------------------------------------------------------------------------------------
// (2) Coherence

interface Served {
  /** When the GET was sent (performance.now()). */
  sentAt: number;
  /** When the answer's headers arrived. */
  at: number;
  status: number;
  etag: string | null;
}

interface Write {
  etag: string;
  sentAt: number;
  answeredAt: number;
}

interface Sample {
  owner: string;
  etag: string;
  writer: number;
  answeredAt: number;
  /** The writer's own first read after the answer. */
  own: Served;
  /** Per other replica: its GETs, in order, until it served this write or a later one (or the timeout). */
  polls: { replica: number; served: Served[] }[];
}

async function coherence(
  bench: Bench,
  o: { seconds: number; rate: number; owners: number; sampleEvery: number; timeoutMs: number },
) {
  const { inspect, problems } = bench;
  const ports: number[] = [];
  for (let i = 0; i < 3; i++) ports.push(await freePort());
  step("coherence: starting 3 replicas");
  const replicas = await Promise.all(
    ports.map((port, i) =>
      startHttp(`replica ${i + 1}`, ["src/main.ts", "api"], { ...bench.env, ...bench.cacheOn, IAPPS_SERVER_PORT: String(port) }, port),
    ),
  );
  const watched = replicas.map((child) => ({ child, from: child.output.length }));

  const headers = { authorization: `Bearer ${bench.serviceToken}`, "content-type": "application/json" };
  const url = (port: number, op: string) => `http://127.0.0.1:${port}/ucloud/${PROVIDER}/iapps/${APP}/${op}`;
  const owners = Array.from({ length: o.owners }, (_, i) => `prop-${i}`);
  const retrieveBody = new Map(owners.map((owner) => [owner, JSON.stringify({ principal: { createdBy: owner, project: null } })]));
  const unquote = (header: string | null) => (header && header.length >= 2 ? header.slice(1, -1) : null);
  const served = async (replica: number, owner: string): Promise<Served> => {
    const sentAt = performance.now();
    const response = await fetch(url(ports[replica]!, "retrieve"), { method: "POST", headers, body: retrieveBody.get(owner)! });
    const at = performance.now();
    await response.arrayBuffer();
    return { sentAt, at, status: response.status, etag: unquote(response.headers.get("etag")) };
  };
  const update = async (replica: number, owner: string, n: number) => {
    const sentAt = performance.now();
    const response = await fetch(url(ports[replica]!, "update"), {
      method: "POST",
      headers,
      body: JSON.stringify({ principal: { createdBy: owner, project: null }, config: propConfig(owner, n), expectedETag: null }),
    });
    const answeredAt = performance.now();
    const text = await response.text();
    return { sentAt, answeredAt, status: response.status, etag: unquote(response.headers.get("etag")), text };
  };

  // Seed (first updates register the jobs), then warm every replica's cache for every owner.
  const seeded = new Map<string, string>();
  await inParallel(owners, 16, async (owner) => {
    const r = await update(owners.indexOf(owner) % 3, owner, 0);
    if (r.status !== 200 || !r.etag) throw new Error(`seeding ${owner}: ${r.status} ${r.text}`);
    seeded.set(owner, r.etag);
  });
  const pairs = replicas.flatMap((_, replica) => owners.map((owner) => ({ replica, owner })));
  const passes = await untilWarm("coherence replicas", inspect, () =>
    inParallel(pairs, 16, async ({ replica, owner }) => {
      const r = await served(replica, owner);
      if (r.status !== 200 || r.etag !== seeded.get(owner)) throw new Error(`warming replica ${replica + 1} for ${owner}: ${r.status} ${r.etag}`);
    }),
  );
  step(`coherence: ${owners.length} owners seeded, warm in all 3 caches after ${passes} pass(es); ${o.rate}/s for ${o.seconds} s`);

  // The open-loop load.
  const total = Math.round(o.rate * o.seconds);
  const writes = new Map<string, Write[]>(owners.map((owner) => [owner, []]));
  const statuses: Record<string, number> = {};
  const sendLag: number[] = [];
  const writeLatency: number[] = [];
  const samples: Sample[] = [];
  const inFlight = new Set<Promise<void>>();
  let firstError = "";
  let lastSend = 0;
  let lastAnswer = 0;
  // When each invalidation reaches a subscriber in this process: how early a replica can know.
  const published = new Map<string, number>();
  const listener = new Redis(bench.redisUrl, { maxRetriesPerRequest: 1 });
  listener.on("message", (_channel: string, message: string) => {
    const at = performance.now();
    const etag = (JSON.parse(message) as { etag?: string }).etag;
    if (etag) published.set(etag, at);
  });
  await listener.subscribe(keys.invalidations());
  const readsBefore = await hgetallCalls(inspect);
  const pids = [...replicas.map((child) => child.process.pid), bench.redisPid];
  const cpuBefore = pids.map(cpuSeconds);
  const selfBefore = process.cpuUsage();
  const machineBefore = machineSeconds();
  const cpuSince = cpuSnapshot(pids);

  /** A write to `owner` sent after `answeredAt` commits after the write answered then: it is newer. */
  const newer = (owner: string, answeredAt: number, etag: string | null) =>
    etag !== null && writes.get(owner)!.some((w) => w.sentAt > answeredAt && w.etag === etag);

  const follow = async (sample: Sample, replica: number) => {
    const list: Served[] = [];
    sample.polls.push({ replica, served: list });
    for (;;) {
      const r = await served(replica, sample.owner);
      list.push(r);
      if (r.etag === sample.etag || newer(sample.owner, sample.answeredAt, r.etag)) return;
      if (r.at - sample.answeredAt > o.timeoutMs) return;
    }
  };

  const fire = async (i: number) => {
    const owner = owners[i % owners.length]!;
    const writer = (i + Math.floor(i / owners.length)) % 3;
    try {
      const r = await update(writer, owner, i);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      lastAnswer = Math.max(lastAnswer, r.answeredAt);
      if (r.status !== 200 || !r.etag) {
        firstError ||= `${r.status} ${r.text.slice(0, 200)}`;
        return;
      }
      writeLatency.push(r.answeredAt - r.sentAt);
      writes.get(owner)!.push({ etag: r.etag, sentAt: r.sentAt, answeredAt: r.answeredAt });
      if (i % o.sampleEvery !== 0) return;
      const sample: Sample = { owner, etag: r.etag, writer, answeredAt: r.answeredAt, own: { sentAt: 0, at: 0, status: 0, etag: null }, polls: [] };
      samples.push(sample);
      await Promise.all([
        served(writer, owner).then((own) => {
          sample.own = own;
        }),
        ...[0, 1, 2].filter((replica) => replica !== writer).map((replica) => follow(sample, replica)),
      ]);
    } catch (e) {
      statuses.error = (statuses.error ?? 0) + 1;
      firstError ||= String(e);
    }
  };

  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * o.rate) / 1000) + 1);
    while (sent < due) {
      const i = sent++;
      const now = performance.now();
      sendLag.push(now - (t0 + (i * 1000) / o.rate));
      lastSend = now;
      const promise = fire(i).finally(() => inFlight.delete(promise));
      inFlight.add(promise);
    }
    await Bun.sleep(1);
  }
  while (inFlight.size > 0) await Promise.all([...inFlight]);
  const loadSeconds = (performance.now() - t0) / 1000;
  const selfCpu = process.cpuUsage(selfBefore);
  const cpu = [...pids.map((pid, i) => cpuSeconds(pid) - cpuBefore[i]!), (selfCpu.user + selfCpu.system) / 1e6];
  const machineAfter = machineSeconds();
  const outside = cpuSince().outside;
  const machineBusy = (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total);
  const loadReads = (await hgetallCalls(inspect)) - readsBefore;
  listener.disconnect();
  step("coherence: load done, classifying");

  // Commit order per owner, newest first, from the ETag log each write appends to in its MULTI.
  const order = new Map<string, Map<string, number>>();
  let trimmed = 0;
  for (const owner of owners) {
    const log = await inspect.lrange(keys.etagLog(APP, { createdBy: owner, project: null }), 0, -1);
    order.set(owner, new Map(log.map((etag, position) => [etag, position])));
    if (log.length >= 64 && writes.get(owner)!.length + 1 > log.length) trimmed++;
  }
  const atOrAfter = (owner: string, etag: string | null, target: string) => {
    const positions = order.get(owner)!;
    const p = etag === null ? undefined : positions.get(etag);
    const t = positions.get(target);
    return p !== undefined && t !== undefined && p <= t;
  };
  const delays: number[] = [];
  let firstGet = 0;
  let superseded = 0;
  let notSeen = 0;
  let unknown = 0;
  let pollErrors = 0;
  let ownStale = 0;
  const getLatency: number[] = [];
  const pubsubDelay: number[] = [];
  const notSeenExamples: string[] = [];
  for (const sample of samples) {
    if (!order.get(sample.owner)!.has(sample.etag)) {
      unknown += sample.polls.length;
      continue;
    }
    if (!atOrAfter(sample.owner, sample.own.etag, sample.etag)) ownStale++;
    const message = published.get(sample.etag);
    if (message !== undefined) pubsubDelay.push(message - sample.answeredAt);
    for (const { replica, served: list } of sample.polls) {
      pollErrors += list.filter((r) => r.status !== 200).length;
      for (const r of list) getLatency.push(r.at - r.sentAt);
      const k = list.findIndex((r) => atOrAfter(sample.owner, r.etag, sample.etag));
      if (k < 0) {
        notSeen++;
        if (notSeenExamples.length < 3) {
          notSeenExamples.push(`${sample.owner} ${sample.etag} (writer ${sample.writer + 1}): replica ${replica + 1} served ${[...new Set(list.map((r) => r.etag))].join(", ")} over ${list.length} GETs`);
        }
        continue;
      }
      if (k === 0) firstGet++;
      if (list[k]!.etag !== sample.etag) superseded++;
      delays.push(list[k]!.at - sample.answeredAt);
    }
  }
  delays.sort((a, b) => a - b);
  sendLag.sort((a, b) => a - b);
  writeLatency.sort((a, b) => a - b);
  getLatency.sort((a, b) => a - b);
  pubsubDelay.sort((a, b) => a - b);
  const answered = statuses["200"] ?? 0;

  // Afterwards every replica serves every owner's latest ETag.
  const diverged: string[] = [];
  await inParallel(pairs, 16, async ({ replica, owner }) => {
    const latest = await inspect.hget(keys.record(APP, { createdBy: owner, project: null }), "etag");
    const r = await served(replica, owner);
    if (r.etag !== latest) diverged.push(`replica ${replica + 1} serves ${owner} ${r.etag}, Redis has ${latest}`);
  });

  for (const w of watched) {
    const complaints = complaintsOf(w.child, w.from);
    if (complaints.length > 0) problems.push(`coherence: ${w.child.name} logged ${complaints.length} warn/error line(s), e.g.\n    ${complaints.slice(0, 3).join("\n    ")}`);
  }
  const failed = total - answered;
  if (failed > 0) problems.push(`coherence: ${failed} of ${total} updates not answered 200: ${JSON.stringify(statuses)} (first: ${firstError})`);
  if (notSeen > 0) problems.push(`coherence: ${notSeen} replica(s) did not serve a sampled write (or a later one) within ${o.timeoutMs} ms, e.g.\n    ${notSeenExamples.join("\n    ")}`);
  if (ownStale > 0) problems.push(`coherence: ${ownStale} sampled write(s) not served by their own writer on the first read after the answer`);
  if (pollErrors > 0) problems.push(`coherence: ${pollErrors} polling GET(s) not answered 200`);
  if (diverged.length > 0) problems.push(`coherence: after the load ${diverged.length} replica/owner pair(s) serve a stale ETag, e.g.\n    ${diverged.slice(0, 3).join("\n    ")}`);
  if (trimmed > 0 || unknown > 0) problems.push(`coherence: ${trimmed} owner(s) wrote more than the ETag log keeps; ${unknown} pair(s) could not be classified (use more --prop-owners)`);

  for (const child of replicas) await stop(child);

  const pairsMeasured = delays.length;
  const p99 = quantile(delays, 0.99);
  bench.reports.push(() => {
    log("");
    log(`coherence: 3 replicas (cache on), ${o.owners} owners warm in every cache, open-loop updates over all replicas`);
    log(`  invalidation delivered  p50 ${ms(quantile(pubsubDelay, 0.5))} ms, p99 ${ms(quantile(pubsubDelay, 0.99))} ms after the write's answer (< 0: before it), to a subscription like every replica's, in this process`);
    log(`  served by the others    p50 ${ms(quantile(delays, 0.5))} ms, p90 ${ms(quantile(delays, 0.9))} ms, p99 ${ms(p99)} ms, max ${ms(delays.at(-1) ?? NaN)} ms after the write's answer  (goal p99 <= 5 ms: ${p99 <= 5 ? "ok" : "BELOW GOAL"})`);
    log(`                          at most one read late: each includes the read that saw it (a read took p50 ${ms(quantile(getLatency, 0.5))} ms, p99 ${ms(quantile(getLatency, 0.99))} ms);`);
    log(`                          ${firstGet} of ${pairsMeasured} (write, other replica) pairs were served on the first read, ${superseded} first served a later write's ETag`);
    log(`  updates sent            ${sent} in ${((lastSend - t0) / 1000).toFixed(2)} s = ${((sent * 1000) / Math.max(1, lastSend - t0)).toFixed(0)}/s (scheduled ${o.rate}/s); send lag behind schedule p50 ${ms(quantile(sendLag, 0.5))} ms, p99 ${ms(quantile(sendLag, 0.99))} ms, max ${ms(sendLag.at(-1) ?? NaN)} ms`);
    log(`  updates answered        ${answered} x 200 by ${((lastAnswer - t0) / 1000).toFixed(2)} s = ${((answered * 1000) / Math.max(1, lastAnswer - t0)).toFixed(0)}/s achieved; statuses ${JSON.stringify(statuses)}`);
    log(`  update latency          p50 ${ms(quantile(writeLatency, 0.5))} ms, p99 ${ms(quantile(writeLatency, 0.99))} ms, max ${ms(writeLatency.at(-1) ?? NaN)} ms`);
    log(`  followed writes         ${samples.length} (${o.sampleEvery === 1 ? "every one" : `every ${o.sampleEvery}th`})`);
    log(`  not served within ${o.timeoutMs} ms: ${notSeen}; writer's own first read stale: ${ownStale}; replicas stale afterwards: ${diverged.length}`);
    const share = (seconds: number) => (Number.isFinite(seconds) ? `${((seconds / loadSeconds) * 100).toFixed(0)}%` : "?");
    log(`  CPU during the load (${loadSeconds.toFixed(1)} s; 100% = one core, ${availableParallelism()} cores): replicas ${cpu.slice(0, 3).map(share).join(" / ")}, redis-server ${share(cpu[3]!)}, this process (load + polls) ${share(cpu[4]!)}; machine ${Number.isFinite(machineBusy) ? `${(machineBusy * 100).toFixed(0)}% busy` : "?"}, ${share(outside * loadSeconds)} of a core outside this benchmark's processes`);
    log(`  HGETALLs in Redis during the load: ${loadReads} (cache fills, and the reads under WATCH of updates whose replica did not hold the record or held an older one: an update of a cached record reads none)`);
  });
}

// ---------------------------------------------------------------------------------------------
// (3) Memory

interface MemoryResult {
  records: number;
  maxEntries: number;
  size: number;
  fills: number;
  missing: number;
  stillCached: boolean;
  fillSeconds: number;
  before: { rss: number; heapUsed: number; extra: number };
  after: { rss: number; heapUsed: number; extra: number };
  cleared: { rss: number; heapUsed: number; extra: number };
  rssPerRecord: number;
  heapPerRecord: number;
  extraPerRecord: number;
  storedBytes: number;
}

async function memory(bench: Bench, records: number) {
  const script = join(import.meta.dir, "bench-cache-memory.ts");
  const url = `${bench.redisUrl}/2`;
  step(`memory: writing ${records} records to database 2`);
  const populate = start("memory populate", bun(), [script, "--role", "populate", "--redis", url, "--records", String(records)]);
  const populated = await populate.closed;
  await stop(populate);
  if (populated !== 0) throw new Error(`memory populate exited ${populated}:\n${populate.output.join("\n")}`);
  step("memory: filling one service context's cache");
  const measure = start("memory measure", bun(), [script, "--records", String(records)], { ...bench.env, IAPPS_REDIS_URL: url, IAPPS_LOG_LEVEL: "warn" });
  const code = await measure.closed;
  await stop(measure);
  const line = measure.output.find((l) => l.startsWith('{"records"'));
  if (code !== 0 || !line) throw new Error(`memory measure exited ${code}:\n${measure.output.join("\n")}`);
  const r = JSON.parse(line) as MemoryResult;
  const flush = new Redis(url, { maxRetriesPerRequest: 1 });
  await flush.flushdb();
  flush.disconnect();
  const complaints = measure.output.filter((l) => l !== line && l.trim() !== "");
  if (complaints.length > 0) bench.problems.push(`memory: the measuring process printed:\n    ${complaints.slice(0, 3).join("\n    ")}`);
  if (r.size !== records || r.fills !== records || r.missing !== 0 || !r.stillCached) {
    bench.problems.push(`memory: expected ${records} cached records from ${records} fills, got size ${r.size}, fills ${r.fills}, missing ${r.missing}, stillCached ${r.stillCached}`);
  }
  const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;
  bench.reports.push(() => {
    log("");
    log(`memory: one service context's cache (cache_max_entries ${r.maxEntries}) filled through RecordStore.read with ${r.records} records in ${r.fillSeconds.toFixed(1)} s`);
    log(`  (syncthing config with 2 folders and 1 device, 32-hex ETag, numeric jobId, ISO updatedAt; ${r.storedBytes} bytes of key + fields in Redis)`);
    log(`  RSS       ${mb(r.before.rss)} -> ${mb(r.after.rss)}  = ${r.rssPerRecord.toFixed(0)} bytes per record   (after clearing the cache: ${mb(r.cleared.rss)})`);
    log(`  heapUsed  ${mb(r.before.heapUsed)} -> ${mb(r.after.heapUsed)}  = ${r.heapPerRecord.toFixed(0)} bytes per record   (JSC extra memory: ${r.extraPerRecord.toFixed(0)} bytes per record)`);
    log("  (after Bun.gc(true), a 300 ms pause and Bun.gc(true) again, each time)");
  });
}

// ---------------------------------------------------------------------------------------------

const role = stringOption("role");
if (role === "bare") {
  serveBare(Number(stringOption("port")), stringOption("etag") ?? "x");
} else if (role === "bare-hgetall") {
  await serveBareHgetall(Number(stringOption("port")), stringOption("redis")!, stringOption("key")!);
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
