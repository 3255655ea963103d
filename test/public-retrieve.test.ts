// The public retrieve answered around Hono (src/http/public-retrieve.ts, issue 14) answers exactly
// what the Hono route answers: status, headers, body, request metrics and cache counts. A request
// whose token this replica has not verified yet always goes through the Hono route (which verifies
// and remembers it); the same request again, with the same token, goes around it. Real Redis.

import { afterAll, describe, expect, test } from "bun:test";
import { sign } from "hono/jwt";
import { metrics } from "../src/metrics/metrics.ts";
import { startHarness } from "./support/harness.ts";
import { cacheLive, type Instance, SECRET, startInstance, syncthingConfig } from "./support/service.ts";

const { redis } = await startHarness({ api: false });
const cached = startInstance(redis.url);
const uncached = startInstance(redis.url, { api: { cache_max_entries: 0 } });
await cacheLive(cached);
afterAll(async () => {
  await cached.close();
  await uncached.close();
});

const ROUTE = "/api/iapps/:app/retrieve";
let tokens = 0;
/** A token no replica has seen: its first request goes through Hono. Distinct by its `exp`. */
const freshToken = (user: string) => sign({ sub: user, role: "USER", exp: Math.floor(Date.now() / 1000) + 3600 + ++tokens }, SECRET, "HS256");

interface Seen {
  status: number;
  headers: [string, string][];
  body: string;
}

async function retrieve(instance: Instance, token: string, path: string, headers: Record<string, string> = {}): Promise<Seen> {
  const response = await instance.request(path, { headers: { authorization: `Bearer ${token}`, "x-request-id": "same-id", ...headers } });
  return { status: response.status, headers: [...response.headers], body: await response.text() };
}

/** The request through Hono, then around it: both answers, and the request metrics each counted. */
async function throughAndAround(instance: Instance, user: string, path: string, headers: Record<string, string> = {}) {
  const token = await freshToken(user);
  const through = await retrieve(instance, token, path, headers);
  const counted = (status: number) => metrics.httpRequests.get({ route: ROUTE, method: "GET", status: String(status) });
  const before = counted(through.status);
  const around = await retrieve(instance, token, path, headers);
  return { through, around, countedAround: counted(around.status) - before };
}

async function store(user: string) {
  const token = await freshToken(user);
  const response = await cached.request("/api/iapps/syncthing/update", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ config: syncthingConfig(1), expectedETag: null }),
  });
  expect(response.status).toBe(200);
  return response.headers.get("etag")!;
}

describe("a retrieve around Hono answers what the Hono route answers", () => {
  test("a cached record: 200 with its body, ETag and request id; counted once, as a cache hit", async () => {
    await store("pr-alice");
    const hits = metrics.cacheHits.get();
    const { through, around, countedAround } = await throughAndAround(cached, "pr-alice", "/api/iapps/syncthing/retrieve");
    expect(through.status).toBe(200);
    expect(around).toEqual(through);
    expect(around.headers).toContainEqual(["x-request-id", "same-id"]);
    expect(countedAround).toBe(1);
    expect(metrics.cacheHits.get() - hits).toBe(2);
  });

  test("If-None-Match, strong or weak or in a list: 304 with the ETag, no body", async () => {
    const etag = await store("pr-bob");
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const { through, around, countedAround } = await throughAndAround(cached, "pr-bob", "/api/iapps/syncthing/retrieve", { "if-none-match": ifNoneMatch });
      expect(through.status).toBe(304);
      expect(around).toEqual(through);
      expect(countedAround).toBe(1);
    }
    const { through, around } = await throughAndAround(cached, "pr-bob", "/api/iapps/syncthing/retrieve", { "if-none-match": '"other"' });
    expect(through.status).toBe(200);
    expect(around).toEqual(through);
  });

  test("no record: the default configuration with ETag initial", async () => {
    const { through, around } = await throughAndAround(cached, "pr-nobody", "/api/iapps/syncthing/retrieve");
    expect(through.status).toBe(200);
    expect(JSON.parse(through.body).etag).toBe("initial");
    expect(around).toEqual(through);
  });

  test("with the cache off: the record read from Redis", async () => {
    await store("pr-carol");
    const { through, around } = await throughAndAround(uncached, "pr-carol", "/api/iapps/syncthing/retrieve");
    expect(through.status).toBe(200);
    expect(around).toEqual(through);
  });

  test("a record not in the cache: read from Redis and cached, its miss counted once", async () => {
    await store("pr-frank");
    const token = await freshToken("pr-frank");
    const through = await retrieve(cached, token, "/api/iapps/syncthing/retrieve");
    cached.forgetCache();
    const [hits, misses] = [metrics.cacheHits.get(), metrics.cacheMisses.get()];
    expect(await retrieve(cached, token, "/api/iapps/syncthing/retrieve")).toEqual(through);
    expect([metrics.cacheHits.get() - hits, metrics.cacheMisses.get() - misses]).toEqual([0, 1]);
    expect(await retrieve(cached, token, "/api/iapps/syncthing/retrieve")).toEqual(through);
    expect([metrics.cacheHits.get() - hits, metrics.cacheMisses.get() - misses]).toEqual([1, 1]);
  });

  test("an app without configuration routes, or none: the app's error answer, counted under its status", async () => {
    for (const app of ["terminal", "nosuch"]) {
      for (const instance of [cached, uncached]) {
        const { through, around, countedAround } = await throughAndAround(instance, "pr-dave", `/api/iapps/${app}/retrieve`);
        expect(through.status).toBe(404);
        expect(around).toEqual(through);
        expect(countedAround).toBe(1);
      }
    }
  });

  test("what it leaves to Hono is answered there: a query, HEAD, a path with %, an unknown token", async () => {
    const token = await freshToken("pr-erin");
    await retrieve(cached, token, "/api/iapps/syncthing/retrieve");
    expect((await retrieve(cached, token, `/api/iapps/syncthing/retrieve?provider=${"x".repeat(300)}`)).status).toBe(400);
    expect((await retrieve(cached, token, "/api/iapps/syncthing/retrieve?provider=k8s")).status).toBe(200);
    expect((await retrieve(cached, token, "/api/iapps/syncth%69ng/retrieve")).status).toBe(200);
    expect((await retrieve(cached, token, "/api/iapps/syncthing/retrieve/")).status).toBe(404);
    const head = await cached.request("/api/iapps/syncthing/retrieve", { method: "HEAD", headers: { authorization: `Bearer ${token}` } });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect((await retrieve(cached, "not-a-token", "/api/iapps/syncthing/retrieve")).status).toBe(401);
    const service = await sign({ sub: "_UCloud", role: "SERVICE", exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET, "HS256");
    await retrieve(cached, service, "/api/iapps/syncthing/retrieve");
    expect((await retrieve(cached, service, "/api/iapps/syncthing/retrieve")).status).toBe(403);
  });
});
