// Request ids and logs (issue "Ready for production", item 4): a request's id (the client's
// X-Request-Id when sane) is echoed, stored with the task the request enqueues (the latest one
// when several coalesce), and carried into the worker's and the reconciler's log lines for that
// task; logs are JSON lines, or readable lines for a terminal.

import { describe, expect, test } from "bun:test";
import { configureLog, log, prettyLine } from "../src/base/log.ts";
import { withRequestId } from "../src/base/request-id.ts";
import { keys } from "../src/store/keys.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { alice, providerCall, publicCall, syncthingConfig } from "./support/service.ts";

const h = await startHarness({
  simulator: { namespace: "iapps-request-id-test", startDelayMs: 50 },
  storage: { folders: [0, 1, 2].map((n) => `home-alice/folder-${n}`) },
});
const { redis, api } = h;
const queueContext = h.context({ worker: { max_attempts: 1 } });

const update = (n: number, headers: Record<string, string> = {}) =>
  providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(n) }, headers);

describe("every answer carries a request id", () => {
  test("a sane X-Request-Id is echoed", async () => {
    const response = await publicCall(api, "alice", "GET", "syncthing/retrieve", undefined, { "X-Request-Id": "abc-123.4_5:6" });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe("abc-123.4_5:6");
  });

  test("without one, or with one that is too long or has odd characters, a fresh id is made", async () => {
    const ids = new Set<string>();
    for (const sent of [undefined, "x".repeat(129), "a b", "<script>", "a\u00e9"]) {
      const response = await publicCall(api, "alice", "GET", "syncthing/retrieve", undefined, sent === undefined ? {} : { "X-Request-Id": sent });
      const id = response.headers.get("x-request-id")!;
      expect(id).toMatch(/^[A-Za-z0-9_-]{12}-[0-9a-z]+$/);
      expect(id).not.toBe(sent);
      ids.add(id);
    }
    expect(ids.size).toBe(5);
  });

  test("error answers carry it too", async () => {
    const response = await api.request("/api/iapps/syncthing/retrieve", { headers: { "X-Request-Id": "no-token" } });
    expect(response.status).toBe(401);
    expect(response.headers.get("x-request-id")).toBe("no-token");
    const conflict = await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(1), expectedETag: "stale" }, { "X-Request-Id": "stale-write" });
    expect(conflict.status).toBe(409);
    expect(conflict.headers.get("x-request-id")).toBe("stale-write");
  });
});

describe("the task remembers the latest request that added it", () => {
  const task = "reconcile:syncthing:alice";

  test("coalesced requests leave the latest id; taking the task hands it over; completing removes it", async () => {
    expect((await update(1, { "X-Request-Id": "first" })).status).toBe(200);
    expect(await redis.admin.hget(keys.queueRequestIds(), task)).toBe("first");
    expect((await update(2, { "X-Request-Id": "second" })).status).toBe(200);
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual([task]);
    expect(await redis.admin.hget(keys.queueRequestIds(), task)).toBe("second");

    const [lease] = await queueContext.queue.take(1, 10_000, "test");
    expect(lease).toEqual({ id: task, token: expect.any(String), requestId: "second" });
    expect(await queueContext.queue.complete(lease!)).toBe(true);
    expect(await redis.admin.hexists(keys.queueRequestIds(), task)).toBe(0);
  });

  test("a request while the task runs is the id of its next run, and survives the running one's completion", async () => {
    expect((await update(1, { "X-Request-Id": "before" })).status).toBe(200);
    const [running] = await queueContext.queue.take(1, 10_000, "test");
    expect(running!.requestId).toBe("before");
    expect((await update(2, { "X-Request-Id": "during" })).status).toBe(200);
    expect(await queueContext.queue.complete(running!)).toBe(true);
    const [next] = await queueContext.queue.take(1, 10_000, "test");
    expect(next!.requestId).toBe("during");
  });

  test("tasks no request added (resync, pod events) have none", async () => {
    await queueContext.queue.add("reconcile:syncthing:bob");
    const [lease] = await queueContext.queue.take(1, 10_000, "test");
    expect(lease).toEqual({ id: "reconcile:syncthing:bob", token: expect.any(String) });
  });

  test("a dead letter keeps the request id, and the hash forgets it", async () => {
    expect((await update(1, { "X-Request-Id": "doomed" })).status).toBe(200);
    const [lease] = await queueContext.queue.take(1, 10_000, "test");
    expect(await queueContext.queue.fail(lease!, "boom")).toBe("dead");
    expect(await queueContext.queue.deadLetters()).toEqual([{ id: task, attempts: 1, error: "boom", failedAt: expect.any(Number), requestId: "doomed" }]);
    expect(await redis.admin.hlen(keys.queueRequestIds())).toBe(0);
  });
});

describe("the worker's and the reconciler's log lines carry the request id", () => {
  test("an update with X-Request-Id: abc… shows that id in the worker process's lines for its task", async () => {
    const child = h.startWorkerProcess({ IAPPS_WORKER_RESYNC_INTERVAL: "1h", IAPPS_LOG_LEVEL: "debug", IAPPS_LOG_FORMAT: "json" });
    const requestId = `abc-${Date.now()}`;
    const response = await update(1, { "X-Request-Id": requestId });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe(requestId);
    const lines = () =>
      child
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const created = await eventually(
      async () => lines().find((line) => line.message === "created a pod"),
      15,
      `the reconciler logs the pod it created (output: ${child.output()})`,
    );
    expect(created.requestId).toBe(requestId);
    const done = await eventually(async () => lines().find((line) => line.message === "task done" && line.task === "reconcile:syncthing:alice"), 10, "the worker logs the task done");
    expect(done.requestId).toBe(requestId);
    // Lines of the worker that belong to no request (it started, say) carry none.
    expect(lines().find((line) => line.message === "worker started")!.requestId).toBeUndefined();
  });
});

describe("log lines", () => {
  function capture(run: () => void): string {
    const write = process.stderr.write;
    const level = process.env.IAPPS_LOG_LEVEL;
    let out = "";
    process.stderr.write = ((chunk: string) => {
      out += chunk;
      return true;
    }) as typeof process.stderr.write;
    process.env.IAPPS_LOG_LEVEL = "debug";
    try {
      run();
    } finally {
      process.stderr.write = write;
      process.env.IAPPS_LOG_LEVEL = level;
    }
    return out;
  }

  test("JSON: one object per line, with the current request id", () => {
    configureLog({ format: "json" });
    try {
      const out = capture(() => withRequestId("req-1", () => log("warn", "answering 503", { route: "/x" })));
      const entry = JSON.parse(out.trimEnd());
      expect(entry).toMatchObject({ level: "warn", message: "answering 503", requestId: "req-1", route: "/x" });
      expect(out.endsWith("\n")).toBe(true);
      expect(out.trimEnd().includes("\n")).toBe(false);
    } finally {
      configureLog({ format: "auto" });
    }
  });

  test("pretty: time of day, level, message, then key=value (quoted where needed)", () => {
    const line = prettyLine(
      { time: "2026-11-28T12:04:05.123Z", level: "warn", message: "task failed", requestId: "abc", error: "two words", attempts: 3 },
      false,
    );
    expect(line).toBe('12:04:05.123 WARN  task failed requestId=abc error="two words" attempts=3\n');
    configureLog({ format: "pretty" });
    try {
      expect(capture(() => withRequestId("r2", () => log("info", "hello", { n: 1 })))).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}hello requestId=r2 n=1\n$/);
    } finally {
      configureLog({ format: "auto" });
    }
  });
});
