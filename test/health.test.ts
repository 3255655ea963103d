// /healthz and /readyz (issue "Ready for production", item 3): the process lives; it is ready
// while Redis answers and its cache subscription is live, and says 503 in UCloud's error shape
// otherwise, coming back by itself. Real Redis, stopped (SIGKILL) and frozen (SIGSTOP).

import { describe, expect, test } from "bun:test";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { parsePrometheus } from "./support/prometheus.ts";
import { cacheLive, type Instance, publicCall } from "./support/service.ts";

const h = await startHarness({ settings: { redis: { command_timeout: "500ms" } } });
const { redis, api } = h;
const uncached = h.instance({ api: { cache_max_entries: 0 } });
await cacheLive(api);

const get = (instance: Instance, path: string) => instance.request(path);

/** The JSON log lines written while `run` runs (warn and above). */
async function captureLogs(run: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const write = process.stderr.write;
  const saved = { level: process.env.IAPPS_LOG_LEVEL, format: process.env.IAPPS_LOG_FORMAT };
  let out = "";
  process.stderr.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stderr.write;
  process.env.IAPPS_LOG_LEVEL = "warn";
  process.env.IAPPS_LOG_FORMAT = "json";
  try {
    await run();
  } finally {
    process.stderr.write = write;
    for (const [key, value] of [["IAPPS_LOG_LEVEL", saved.level], ["IAPPS_LOG_FORMAT", saved.format]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
  return out
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function readyStatus(instance: Instance = api) {
  return (await get(instance, "/readyz")).status;
}

describe("with Redis up", () => {
  test("/healthz and /readyz answer 200 without a token", async () => {
    const health = await get(api, "/healthz");
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const ready = await get(api, "/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready", checks: { redis: "ok", cache: "ok" } });
  });

  test("a replica without a cache has no subscription to wait for", async () => {
    const ready = await get(uncached, "/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready", checks: { redis: "ok" } });
  });
});

describe("with Redis gone", () => {
  test("stopped: /readyz answers 503 naming Redis and the cache, /healthz stays 200, and 200 returns with Redis", async () => {
    await redis.stop();
    try {
      const response = await eventually(
        async () => {
          const r = await get(api, "/readyz");
          return r.status === 503 && r;
        },
        10,
        "/readyz answers 503",
      );
      const body = (await response.json()) as { statusCode: number; errorCode: string; why: string };
      expect(body.statusCode).toBe(503);
      expect(body.errorCode).toBe("UNAVAILABLE");
      expect(body.why).toContain("redis:");
      await eventually(async () => ((await (await get(api, "/readyz")).json()) as { why: string }).why.includes("cache:"), 10, "the subscription is known lost");
      expect((await get(api, "/healthz")).status).toBe(200);
      expect(await readyStatus(uncached)).toBe(503);

      // The API's own line about the 503 names the request it answered.
      let answer: Response | undefined;
      const logged = await captureLogs(async () => {
        answer = await publicCall(uncached, "zed", "GET", "syncthing/retrieve", undefined, { "X-Request-Id": "during-outage" });
      });
      expect(answer!.status).toBe(503);
      expect(answer!.headers.get("x-request-id")).toBe("during-outage");
      expect(logged.find((line) => line.message === "answering 503")).toMatchObject({ level: "warn", requestId: "during-outage", route: "/api/iapps/syncthing/retrieve" });

      // A scrape still answers, without the depth it could not read, and says so.
      const metrics = await get(api, "/metrics");
      expect(metrics.status).toBe(200);
      const parsed = parsePrometheus(await metrics.text());
      expect(parsed.families.get("iapps_queue_tasks")!.samples).toEqual([]);
      expect(parsed.counter("iapps_scrape_errors_total", { source: "queue" })).toBeGreaterThanOrEqual(1);
    } finally {
      await redis.startServer();
    }
    await eventually(async () => (await readyStatus()) === 200, 15, "/readyz is 200 again");
    await eventually(async () => (await readyStatus(uncached)) === 200, 15, "/readyz of the uncached replica is 200 again");
    const parsed = parsePrometheus(await (await get(api, "/metrics")).text());
    expect(parsed.get("iapps_queue_tasks", { state: "pending" })).toBe(0);
  });

  test("frozen (SIGSTOP): /readyz and /metrics still answer, with 503 and without the queue's depth", async () => {
    await redis.pause();
    try {
      const response = await get(api, "/readyz");
      expect(response.status).toBe(503);
      expect(((await response.json()) as { why: string }).why).toContain("redis:");
      const metrics = await get(uncached, "/metrics");
      expect(metrics.status).toBe(200);
      expect(parsePrometheus(await metrics.text()).families.get("iapps_queue_tasks")!.samples).toEqual([]);
    } finally {
      redis.resume();
    }
    await eventually(async () => (await readyStatus()) === 200, 15, "/readyz is 200 again");
  });
});
