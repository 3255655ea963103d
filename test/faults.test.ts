// Redis faults, for real: the server killed, frozen, and a transaction's connection cut between
// its WATCH and its EXEC. Requests answer 503 quickly, nothing is written unguarded, and the
// service recovers by itself.

import { describe, expect, test } from "bun:test";
import { keys } from "../src/store/keys.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { alice, providerCall, publicCall, startInstance, syncthingConfig } from "./support/service.ts";

// Before each test the harness also resumes a Redis a failed test left frozen.
const { redis, api } = await startHarness();

const update = (n: number, expectedETag: string | null = null) =>
  providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(n), expectedETag });
const retrieve = () => publicCall(api, "alice", "GET", "syncthing/retrieve");

async function timed(call: () => Promise<Response>): Promise<{ status: number; ms: number; errorCode?: string }> {
  const started = performance.now();
  const response = await call();
  const ms = performance.now() - started;
  const body = (await response.json().catch(() => ({}))) as { errorCode?: string };
  return { status: response.status, ms, errorCode: body.errorCode };
}

describe("Redis down", () => {
  test("requests answer 503 UNAVAILABLE within 2 seconds, and the service recovers when Redis returns", async () => {
    expect((await update(1)).status).toBe(200);
    expect((await retrieve()).status).toBe(200);
    await redis.stop();
    // The replica learns of the outage from its cache subscription and stops trusting its cache.
    await eventually(async () => !api.context.subscriber?.live, 2, "the cache subscription sees the outage");
    try {
      for (const call of [retrieve, () => update(2), () => providerCall(api, "syncthing", "restart", { principal: alice })]) {
        const answer = await timed(call);
        expect(answer).toMatchObject({ status: 503, errorCode: "UNAVAILABLE" });
        expect(answer.ms).toBeLessThan(2000);
      }
    } finally {
      await redis.startServer();
    }
    // The restarted server is empty (tests run it without persistence): recovery means 200 again.
    await eventually(async () => (await retrieve()).status === 200, 10, "a retrieve answers 200");
    expect((await update(3)).status).toBe(200);
  });

  test("a frozen Redis (SIGSTOP) answers 503 within 2 seconds instead of hanging", async () => {
    expect((await update(1)).status).toBe(200);
    await redis.pause();
    try {
      const answers = await Promise.all([
        timed(() => update(2)),
        timed(() => update(3)),
        timed(() => publicCall(api, "bob", "GET", "syncthing/retrieve")),
      ]);
      for (const answer of answers) {
        expect(answer).toMatchObject({ status: 503, errorCode: "UNAVAILABLE" });
        expect(answer.ms).toBeLessThan(2000);
      }
      // A frozen Redis takes no writes, so a record already in the cache is still current.
      const cached = await timed(retrieve);
      expect([200, 503]).toContain(cached.status);
      expect(cached.ms).toBeLessThan(2000);
    } finally {
      redis.resume();
    }
    await eventually(async () => (await update(4)).status === 200, 10, "an update answers 200");
    const config = JSON.parse((await redis.admin.hget(keys.record("syncthing", alice), "config"))!);
    expect(config).toEqual(syncthingConfig(4));
  });

  test("with the cache off, a retrieve on a frozen Redis answers 503 at its own command timeout, also one sent while another waits", async () => {
    const uncached = startInstance(redis.url, { api: { cache_max_entries: 0 } });
    const timeoutMs = uncached.context.config.redis.command_timeout;
    const uncachedRetrieve = () => publicCall(uncached, "alice", "GET", "syncthing/retrieve");
    try {
      expect((await uncachedRetrieve()).status).toBe(200);
      await redis.pause();
      try {
        const first = timed(uncachedRetrieve);
        await Bun.sleep(timeoutMs / 2);
        const second = timed(uncachedRetrieve);
        for (const answer of await Promise.all([first, second])) {
          expect(answer).toMatchObject({ status: 503, errorCode: "UNAVAILABLE" });
          expect(answer.ms).toBeGreaterThanOrEqual(timeoutMs - 1);
          expect(answer.ms).toBeLessThan(timeoutMs * 1.25);
        }
      } finally {
        redis.resume();
      }
      await eventually(async () => (await uncachedRetrieve()).status === 200, 10, "a retrieve answers 200");
    } finally {
      await uncached.close();
    }
  });
});

describe("a transaction interrupted by a disconnect", () => {
  test("fails, and its EXEC never runs without its WATCH", async () => {
    expect((await update(1)).status).toBe(200);
    const recordKey = keys.record("syncthing", alice);
    const attempt = api.context.store.attempt("syncthing", alice, async ({ record }) => {
      // Between WATCH and EXEC: cut this transaction's connection, then let another writer in.
      const clients = (await redis.admin.client("LIST")) as string;
      const ids = clients
        .split("\n")
        .filter((line) => line.includes("name=iapps-tx"))
        .map((line) => /id=(\d+)/.exec(line)![1]!);
      expect(ids.length).toBeGreaterThan(0);
      for (const id of ids) await redis.admin.client("KILL", "ID", id);
      await redis.admin.hset(recordKey, "etag", "written-by-someone-else");
      // Time for the client to notice its connection is gone (nothing the test can ask about):
      // the EXEC must meet a dead connection, not race the kill.
      await new Promise((r) => setTimeout(r, 100));
      return {
        commit: { record: { ...record!, config: syncthingConfig(99), etag: "unguarded-write" } },
        value: "committed",
      };
    });
    await expect(attempt).rejects.toThrow();
    // Even once the pool has reconnected and served other requests, the interrupted write is not replayed.
    await eventually(async () => (await retrieve()).status === 200, 5, "a retrieve answers 200");
    expect((await update(2)).status).toBe(200);
    const etags = await redis.admin.lrange(keys.etagLog("syncthing", alice), 0, -1);
    expect(etags).not.toContain("unguarded-write");
    expect(JSON.parse((await redis.admin.hget(recordKey, "config"))!)).toEqual(syncthingConfig(2));
  });

  test("through the API, writes under connection kills answer 200 or 503, and the stored ETag is the last write that landed", async () => {
    expect((await update(1)).status).toBe(200);
    const killer = setInterval(() => redis.admin.client("KILL", "TYPE", "normal").catch(() => {}), 5);
    let statuses: number[];
    try {
      statuses = await Promise.all(Array.from({ length: 50 }, (_, i) => update(i + 10).then((r) => r.status)));
    } finally {
      clearInterval(killer);
    }
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
    await eventually(async () => (await retrieve()).status === 200, 5, "a retrieve answers 200");
    const view = (await (await retrieve()).json()) as { etag: string; config: unknown };
    const etags = await redis.admin.lrange(keys.etagLog("syncthing", alice), 0, -1);
    expect(etags[0]).toBe(view.etag);
  });
});
