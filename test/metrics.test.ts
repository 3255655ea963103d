// /metrics (issue "Ready for production", item 3): Prometheus text that a strict parser accepts,
// and counters that move with traffic: requests by route and status, cache hits, the queue's
// depth, tasks, retries and dead letters, reconciles and Kubernetes calls. Real Redis, a real
// reconciling worker against the simulator, and a real worker process with its own listener.

import { afterEach, describe, expect, test } from "bun:test";
import { Registry } from "../src/metrics/registry.ts";
import { keys } from "../src/store/keys.ts";
import { startWorker } from "../src/worker/start.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { startProcess } from "./support/processes.ts";
import { parsePrometheus } from "./support/prometheus.ts";
import { freePort } from "./support/redis-server.ts";
import { alice, cacheLive, type Instance, providerCall, publicCall, syncthingConfig } from "./support/service.ts";

const NAMESPACE = "iapps-metrics-test";
const h = await startHarness({
  simulator: { namespace: NAMESPACE, startDelayMs: 50 },
  storage: { folders: [0, 1, 2].map((n) => `home-alice/folder-${n}`) },
  settings: { worker: { lease: "1s", resync_interval: "1h" } },
});
const { redis, api, simulator, root: storageRoot } = h;

/** Workers with handlers of a test's own (the harness stops the reconciling ones). */
const stoppers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const stop of stoppers.splice(0)) await stop();
});

async function scrape(instance: Instance = api) {
  const response = await instance.request("/metrics");
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheus(await response.text());
}

const RETRIEVE = { route: "/api/iapps/:app/retrieve", method: "GET", status: "200" };
const PROVIDER_UPDATE = "/ucloud/:providerId/iapps/:app/update";

describe("the registry writes the text format", () => {
  test("HELP and TYPE come first, label values are escaped, histograms are cumulative and end in +Inf", () => {
    const registry = new Registry();
    const counter = registry.counter("demo_total", "A counter\nwith a \\ in its help.", ["path"]);
    const histogram = registry.histogram("demo_seconds", "A histogram.", ["kind"], [0.1, 1]);
    registry.gauge("demo_empty", "Never set.");
    counter.inc({ path: 'a "quoted"\\ value\nover two lines' }, 2);
    for (const value of [0.05, 0.5, 0.5, 7]) histogram.observe({ kind: "x" }, value);
    const text = registry.expose();
    expect(text).toContain("# HELP demo_total A counter\\nwith a \\\\ in its help.\n# TYPE demo_total counter\n");
    expect(text).toContain('demo_total{path="a \\"quoted\\"\\\\ value\\nover two lines"} 2\n');
    expect(text).toContain('demo_seconds_bucket{kind="x",le="0.1"} 1\ndemo_seconds_bucket{kind="x",le="1"} 3\ndemo_seconds_bucket{kind="x",le="+Inf"} 4\n');
    expect(text).toContain('demo_seconds_sum{kind="x"} 8.05\ndemo_seconds_count{kind="x"} 4\n');
    const parsed = parsePrometheus(text);
    expect(parsed.get("demo_total", { path: 'a "quoted"\\ value\nover two lines' })).toBe(2);
    expect(parsed.families.get("demo_empty")?.type).toBe("gauge");
  });

  test("a sample must give exactly the declared labels; a counter never goes down", () => {
    const registry = new Registry();
    const counter = registry.counter("strict_total", "Strict.", ["a"]);
    expect(() => counter.inc({})).toThrow("expected labels {a}");
    expect(() => counter.inc({ a: "1", b: "2" })).toThrow("expected labels {a}");
    expect(() => counter.inc({ a: "1" }, -1)).toThrow("only goes up");
    expect(() => registry.counter("strict_total", "Again.")).toThrow("registered twice");
    expect(() => registry.counter("bad-name", "Bad.")).toThrow("not valid");
    expect(() => counter.bind({ b: "1" })).toThrow("expected labels {a}");
  });

  test("a bound series is the same series as the one named by its labels", () => {
    const registry = new Registry();
    const counter = registry.counter("bound_total", "Bound.", ["a", "b"]);
    const histogram = registry.histogram("bound_seconds", "Bound.", ["a"], [1]);
    counter.bind({ b: "2", a: "1" }).inc();
    counter.inc({ a: "1", b: "2" }, 2);
    histogram.bind({ a: "x" }).observe(0.5);
    histogram.observe({ a: "x" }, 3);
    expect(counter.get({ a: "1", b: "2" })).toBe(3);
    expect(histogram.count({ a: "x" })).toBe(2);
    const parsed = parsePrometheus(registry.expose());
    expect(parsed.get("bound_total", { a: "1", b: "2" })).toBe(3);
    expect(parsed.get("bound_seconds_bucket", { a: "x", le: "1" })).toBe(1);
  });

  test("the test's parser refuses what a scraper would choke on", () => {
    expect(() => parsePrometheus("x_total 1\n")).toThrow("before its family's TYPE");
    expect(() => parsePrometheus("# TYPE x counter\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n")).toThrow("twice");
    expect(() => parsePrometheus('# TYPE x counter\nx{a="\\q"} 1\n')).toThrow("bad escape");
    expect(() => parsePrometheus('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n')).toThrow("cumulative");
    expect(() => parsePrometheus('# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n')).toThrow("+Inf");
    expect(() => parsePrometheus('# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n')).toThrow("_count");
    expect(() => parsePrometheus("# TYPE x gauge\nx 1")).toThrow("newline");
  });
});

describe("/metrics moves with traffic", () => {
  test("requests are counted by route pattern, method and status, with a latency histogram", async () => {
    await cacheLive(api);
    const before = await scrape();
    for (let i = 0; i < 3; i++) expect((await publicCall(api, "alice", "GET", "syncthing/retrieve")).status).toBe(200);
    const first = await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(1), expectedETag: "initial" });
    expect(first.status).toBe(200);
    const stale = await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(2), expectedETag: "initial" });
    expect(stale.status).toBe(409);
    expect((await api.request("/no/such/route/for-alice")).status).toBe(404);
    const after = await scrape();

    expect(after.counter("iapps_http_requests_total", RETRIEVE) - before.counter("iapps_http_requests_total", RETRIEVE)).toBe(3);
    const update = (status: string) => ({ route: PROVIDER_UPDATE, method: "POST", status });
    expect(after.counter("iapps_http_requests_total", update("200")) - before.counter("iapps_http_requests_total", update("200"))).toBe(1);
    expect(after.counter("iapps_http_requests_total", update("409")) - before.counter("iapps_http_requests_total", update("409"))).toBe(1);
    const unmatched = { route: "unmatched", method: "GET", status: "404" };
    expect(after.counter("iapps_http_requests_total", unmatched) - before.counter("iapps_http_requests_total", unmatched)).toBe(1);
    expect(after.counter("iapps_http_request_duration_seconds_count", RETRIEVE) - before.counter("iapps_http_request_duration_seconds_count", RETRIEVE)).toBe(3);
    // Raw paths never become labels: the series stay bounded whatever clients ask for.
    const routes = after.families.get("iapps_http_requests_total")!.samples.map((s) => s.labels.route!);
    expect(routes.some((route) => route.includes("alice") || route.includes("syncthing/"))).toBe(false);
  });

  test("repeated retrieves are cache hits; a write's invalidation is counted", async () => {
    await cacheLive(api);
    const before = await scrape();
    for (let i = 0; i < 5; i++) expect((await publicCall(api, "bob", "GET", "syncthing/retrieve")).status).toBe(200);
    const after = await scrape();
    expect(after.counter("iapps_cache_misses_total") - before.counter("iapps_cache_misses_total")).toBe(1);
    expect(after.counter("iapps_cache_hits_total") - before.counter("iapps_cache_hits_total")).toBe(4);
    expect(after.get("iapps_cache_subscription_live")).toBe(1);

    expect((await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(1) })).status).toBe(200);
    await eventually(
      async () => (await scrape()).counter("iapps_cache_invalidations_total") > after.counter("iapps_cache_invalidations_total"),
      5,
      "the update's invalidation is counted",
    );
  });

  test("the queue's depth by state is read from Redis at scrape time", async () => {
    const queue = api.context.queue;
    // A failed task waiting out its backoff (retrying), and a check added for later (scheduled).
    await queue.add("reconcile:syncthing:u6");
    const [failing] = await queue.take(1, 60_000, "failing");
    await queue.fail(failing!, "boom");
    await queue.add("reconcile:syncthing:u1", "reconcile:syncthing:u2", "reconcile:syncthing:u3");
    await queue.addAfter("reconcile:syncthing:u4", 3_600_000);
    await queue.take(1, 60_000, "test");
    await redis.admin.hset(keys.queueDead(), "reconcile:syncthing:u5", JSON.stringify({ id: "reconcile:syncthing:u5", attempts: 8, error: "x", failedAt: 0 }));
    const metrics = await scrape();
    expect(metrics.get("iapps_queue_tasks", { state: "pending" })).toBe(2);
    expect(metrics.get("iapps_queue_tasks", { state: "active" })).toBe(1);
    expect(metrics.get("iapps_queue_tasks", { state: "retrying" })).toBe(1);
    expect(metrics.get("iapps_queue_tasks", { state: "scheduled" })).toBe(1);
    expect(metrics.get("iapps_queue_tasks", { state: "delayed" })).toBeUndefined();
    expect(metrics.get("iapps_queue_tasks", { state: "dead" })).toBe(1);
  });

  test("an update a worker processes moves the task, reconcile and Kubernetes metrics", async () => {
    // Before the worker starts: its watch caches list the pods once when they start.
    const before = await scrape();
    h.startWorker();
    const done = { kind: "reconcile", outcome: "done" };
    expect((await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(1) })).status).toBe(200);
    // One process, one registry: the API's /metrics shows what the worker did (as under role all).
    const after = await eventually(
      async () => {
        const metrics = await scrape();
        return metrics.counter("iapps_reconcile_total", { app: "syncthing", outcome: "created" }) > before.counter("iapps_reconcile_total", { app: "syncthing", outcome: "created" }) &&
          metrics.counter("iapps_task_duration_seconds_count", done) > before.counter("iapps_task_duration_seconds_count", done) &&
          metrics;
      },
      10,
      "the worker's reconcile shows in /metrics",
    );
    const create = { verb: "create", resource: "pod" };
    expect(after.counter("iapps_kubernetes_requests_total", create) - before.counter("iapps_kubernetes_requests_total", create)).toBeGreaterThanOrEqual(1);
    expect(after.counter("iapps_kubernetes_requests_total", { verb: "list", resource: "pod" })).toBeGreaterThan(
      before.counter("iapps_kubernetes_requests_total", { verb: "list", resource: "pod" }),
    );
  });

  test("failing tasks count their retries, then their dead letter", async () => {
    const context = h.context({ worker: { max_attempts: 2, backoff_base: "10ms" } });
    const failing = async () => {
      throw new Error("this task always fails");
    };
    const worker = startWorker(context, { reconcile: failing, restart: failing });
    stoppers.push(async () => {
      await worker.stop(5000);
      await context.close();
    });
    const before = await scrape();
    await context.queue.add("restart:syncthing:carol");
    await eventually(async () => (await redis.admin.hexists(keys.queueDead(), "restart:syncthing:carol")) === 1, 10, "the task is a dead letter");
    const after = await scrape();
    const kind = { kind: "restart" };
    expect(after.counter("iapps_task_retries_total", kind) - before.counter("iapps_task_retries_total", kind)).toBe(1);
    expect(after.counter("iapps_task_dead_letters_total", kind) - before.counter("iapps_task_dead_letters_total", kind)).toBe(1);
    const dead = { kind: "restart", outcome: "dead" };
    expect(after.counter("iapps_task_duration_seconds_count", dead) - before.counter("iapps_task_duration_seconds_count", dead)).toBe(1);
    expect(after.get("iapps_queue_tasks", { state: "dead" })).toBe(1);
  });
});

describe("the worker process serves its own /metrics on [worker] metrics_port", () => {
  test("role worker answers /healthz, /readyz and /metrics, whose task counters move with the tasks it runs", async () => {
    const port = await freePort();
    const child = startProcess(["src/main.ts", "worker"], {
      IAPPS_REDIS_URL: redis.url,
      IAPPS_SERVER_HOST: "127.0.0.1",
      IAPPS_WORKER_METRICS_PORT: String(port),
      IAPPS_WORKER_RESYNC_INTERVAL: "1h",
      IAPPS_KUBERNETES_NAMESPACE: NAMESPACE,
      IAPPS_KUBERNETES_SIMULATOR_PORT: String(simulator.port),
      IAPPS_STORAGE_ROOT: storageRoot,
      IAPPS_AUTH_JWT_SECRET: "unused",
    });
    const base = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${base}/healthz`).catch(() => null))?.status === 200, 15, `the worker's listener answers (output: ${child.output()})`);
    await eventually(async () => (await fetch(`${base}/readyz`)).status === 200, 10, "the worker is ready");
    const workerMetrics = async () => parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    const done = { kind: "reconcile", outcome: "done" };
    const created = { app: "syncthing", outcome: "created" };
    const before = await workerMetrics();
    expect(before.counter("iapps_reconcile_total", created)).toBe(0);
    expect((await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(2) })).status).toBe(200);
    const metrics = await eventually(
      async () => {
        const m = await workerMetrics();
        // The task's duration is observed once it completes, just after its reconcile is counted.
        const finished = m.counter("iapps_task_duration_seconds_count", done) > before.counter("iapps_task_duration_seconds_count", done);
        return m.counter("iapps_reconcile_total", created) === 1 && finished && m;
      },
      15,
      "the worker's /metrics counts the reconcile that created the pod, and its task's duration",
    );
    expect(metrics.counter("iapps_kubernetes_requests_total", { verb: "create", resource: "pod" })).toBeGreaterThanOrEqual(1);
    // No API in this process: no requests of the API were counted, only the listener's own.
    expect(metrics.families.get("iapps_http_requests_total")!.samples.every((s) => ["/healthz", "/readyz", "/metrics"].includes(s.labels.route!))).toBe(true);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(404);
  });
});
