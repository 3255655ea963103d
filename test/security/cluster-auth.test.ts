// A password-protected Redis Cluster (`requirepass` and `masterauth` on every node, plus an ACL
// user): the password in `[redis] cluster` seed URLs must reach every connection the service
// opens to a node (the cluster client, the transaction pools, the invalidation subscriber, the
// worker's blocking client), and must never be printed.

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { Cluster } from "ioredis";
import { resolveConfig } from "../../src/settings/config.ts";
import { httpAppFor } from "../../src/runtimes/http-app.ts";
import { createContext, type ServiceContext } from "../../src/service/context.ts";
import { keys } from "../../src/store/keys.ts";
import type { Owner } from "../../src/domain/owner.ts";
import { createClient, nodeOptions } from "../../src/store/connections.ts";
import { taskId } from "../../src/queue/tasks.ts";
import type { Worker } from "../../src/worker/worker.ts";
import { startWorker } from "../../src/worker/start.ts";
import { eventually } from "../support/eventually.ts";
import { startHarness } from "../support/harness.ts";
import { cacheLive, DEVICE_A, type Instance, providerCall, SECRET } from "../support/service.ts";

// Characters a URL must percent-encode: the seed URLs carry it encoded, Redis gets it decoded.
const PASSWORD = "s3cr3t/p@ss:w0rd";
const USER = "iapps";

// Everything this file's processes print, to check that the password is never in it.
const printed: string[] = [];
const writeStderr = process.stderr.write.bind(process.stderr);
const writeStdout = process.stdout.write.bind(process.stdout);
const consoleWarn = console.warn;

process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
  printed.push(String(chunk));
  return (writeStderr as (...a: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stderr.write;
process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
  printed.push(String(chunk));
  return (writeStdout as (...a: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stdout.write;
console.warn = (...args: unknown[]) => {
  printed.push(args.map(String).join(" "));
  consoleWarn(...args);
};
// Registered before the harness's own: the streams are given back, then the cluster stops.
afterAll(() => {
  process.stderr.write = writeStderr;
  process.stdout.write = writeStdout;
  console.warn = consoleWarn;
});

const { cluster, root: storageRoot } = await startHarness({ redis: { cluster: { password: PASSWORD, user: USER } }, storage: {}, api: false });

const opened: { close(): Promise<unknown> }[] = [];

afterEach(async () => {
  for (const thing of opened.splice(0).reverse()) await thing.close();
});

/**
 * A service context whose seed nodes come as IAPPS_REDIS_CLUSTER (as in the cluster pass of the
 * suites), starting at node `first`, with `user`'s credentials in every seed URL, or with
 * `lastOnly` in the last one only (they hold for every node all the same).
 */
function contextFor(first: number, user: string, options: { cache?: boolean; lastOnly?: boolean } = {}): ServiceContext {
  const cache = options.cache ?? true;
  const urls = cluster.urlsAs(user);
  const rotated = [...urls.slice(first), ...urls.slice(0, first)];
  const seeds = options.lastOnly ? rotated.map((url, i) => (i === rotated.length - 1 ? url : url.replace(/\/\/[^@]*@/, "//"))) : rotated;
  const config = resolveConfig(
    { auth: { jwt_secret: SECRET }, storage: { root: storageRoot }, api: cache ? {} : { cache_max_entries: 0 } },
    { source: "test", environment: { IAPPS_REDIS_CLUSTER: JSON.stringify(seeds) } },
  );
  expect(config.redis.cluster).toEqual(seeds);
  const context = createContext(config, { cache });
  opened.push(context);
  return context;
}

function instance(first: number, user = "", lastOnly = false): Instance {
  const context = contextFor(first, user, { lastOnly });
  const app = httpAppFor(context);
  return { context, request: async (path, init) => app.request(path, init), forgetCache: () => context.cache?.clear(), close: () => context.close() };
}

const owner = (name: string): Owner => ({ createdBy: name, project: null });
const config = (label: string) => ({ folders: [], devices: [{ deviceId: DEVICE_A, label }] });
const update = (api: Instance, who: Owner, label: string, expectedETag: string) =>
  providerCall(api, "syncthing", "update", { principal: who, config: config(label), expectedETag });
const retrieve = (api: Instance, who: Owner) => providerCall(api, "syncthing", "retrieve", { principal: who });
const etagOf = (response: Response) => response.headers.get("etag")!.slice(1, -1);

/** The connections named `name` on every live node, as CLIENT LIST shows them (`user=...` among the fields). */
async function connectionsNamed(name: string): Promise<string[]> {
  const lists = await cluster.onEveryNode((node) => node.client("LIST") as Promise<string>, "all");
  return lists.flatMap((list) => list.split("\n")).filter((line) => line.includes(` name=${name} `));
}

describe("a cluster that requires a password", () => {
  test("refuses a client without it (the premise of this file)", async () => {
    const client = new Cluster(cluster.urlsAs("").map((url) => ({ host: "127.0.0.1", port: Number(new URL(url).port) })), {
      redisOptions: { maxRetriesPerRequest: 0 },
      clusterRetryStrategy: () => null,
      lazyConnect: true,
    });
    client.on("error", () => {});
    try {
      await expect(client.connect().then(() => client.get("x"))).rejects.toThrow();
    } finally {
      client.disconnect();
    }
  });
});

describe("seed URLs with a password", () => {
  test("an update then a retrieve work end to end, on every master", async () => {
    const api = instance(0);
    // Owners whose records spread over all three masters: a transaction pool to each.
    const owners = Array.from({ length: 12 }, (_, i) => owner(`auth${i}`));
    const masters = new Set(await Promise.all(owners.map(async (who) => (await cluster.nodesOf(keys.record("syncthing", who))).master)));
    expect(masters.size).toBe(3);
    for (const who of owners) {
      const written = await update(api, who, "first", "initial");
      expect(written.status).toBe(200);
      const read = await retrieve(api, who);
      expect(read.status).toBe(200);
      const body = (await read.json()) as { etag: string; config: { devices: { label: string }[] } };
      expect(body.etag).toBe(etagOf(written));
      expect(body.config.devices[0]!.label).toBe("first");
      // The record, read from the cluster with the password.
      expect((await cluster.admin.hgetall(keys.record("syncthing", who))).etag).toBe(body.etag);
    }
    const who = owners[0]!;
    const second = await update(api, who, "second", etagOf(await retrieve(api, who)));
    expect(second.status).toBe(200);
    expect((await cluster.admin.hgetall(keys.record("syncthing", who))).etag).toBe(etagOf(second));
    expect(await cluster.admin.llen(keys.queuePending())).toBe(12);
    // /readyz pings the cluster through the same client.
    expect((await api.request("/readyz")).status).toBe(200);
  });

  test("with a username: every connection to a node authenticates as that user", async () => {
    const api = instance(1, USER);
    await cacheLive(api);
    for (let i = 0; i < 6; i++) expect((await update(api, owner(`user${i}`), "first", "initial")).status).toBe(200);
    const transactions = await connectionsNamed("iapps-tx");
    const subscriptions = await connectionsNamed("iapps-invalidations");
    expect(transactions.length).toBeGreaterThan(0);
    expect(subscriptions).toHaveLength(1);
    for (const line of [...transactions, ...subscriptions]) expect(line).toContain(` user=${USER} `);
  });

  test("cache invalidations reach a second instance, subscribed on another node with other credentials", async () => {
    // b's subscription goes to its first seed node, whose URL has no credentials: the last one's hold.
    const [a, b] = [instance(0), instance(4, USER, true)];
    expect(b.context.config.redis.cluster[0]).not.toContain("@");
    await cacheLive(a);
    await cacheLive(b);
    // On that first seed node, as the user of the last one's URL.
    const firstSeed = Number(new URL(b.context.config.redis.cluster[0]!).port);
    const subscriptions = ((await cluster.onNode(firstSeed, (node) => node.client("LIST"))) as string).split("\n").filter((line) => line.includes(" name=iapps-invalidations "));
    expect(subscriptions).toHaveLength(1);
    expect(subscriptions[0]).toContain(` user=${USER} `);
    const who = owner("coherent");
    let etag = etagOf(await update(a, who, "v0", "initial"));
    for (let i = 1; i <= 5; i++) {
      expect(etagOf(await retrieve(b, who))).toBe(etag); // warm in b's cache
      const written = await update(a, who, `v${i}`, etag);
      expect(written.status).toBe(200);
      etag = etagOf(written);
      await eventually(async () => etagOf(await retrieve(b, who)) === etag, 5, `instance b serving write ${i}`);
    }
    expect(b.context.subscriber!.invalidations).toBeGreaterThanOrEqual(5);
    // And the other way round.
    const back = await update(b, who, "from b", etag);
    expect(back.status).toBe(200);
    await eventually(async () => etagOf(await retrieve(a, who)) === etagOf(back), 5, "instance a serving b's write");
  });

  test("the queue: add, take and complete, a blocking wait, and a worker running an update's task", async () => {
    const context = contextFor(2, USER, { cache: false });
    const { queue } = context;
    const restart = taskId("restart", "syncthing", owner("queued"));
    expect(await queue.add(restart)).toBe(1);
    const [lease] = await queue.take(1, 10_000, "t");
    expect(lease?.id).toBe(restart);
    expect(await queue.complete(lease!)).toBe(true);
    expect(await queue.take(1, 10_000, "u")).toEqual([]);

    // The worker's kind of connection: a blocking wait that an add wakes (the add above left a wake-up).
    await cluster.admin.del(keys.queueWake());
    const blocking = createClient(context.redisSettings, { maxRetriesPerRequest: 0, connectionName: "iapps-test-wait" });
    blocking.on("error", () => {});
    opened.push({ close: async () => blocking.disconnect() });
    await eventually(async () => blocking.status === "ready", 5, "the blocking client ready");
    const woken = queue.waitForWork(blocking, 5_000);
    await eventually(async () => (await connectionsNamed("iapps-test-wait")).some((line) => line.includes(" cmd=blpop ")), 5, "the blocking wait");
    const started = Date.now();
    await queue.add(taskId("reconcile", "syncthing", owner("woken")));
    await woken;
    expect(Date.now() - started).toBeLessThan(4_000);

    // A worker (its own blocking client) runs the task of an update made through an API instance.
    await cluster.flushall();
    const ran: string[] = [];
    const worker: Worker = startWorker(context, {
      reconcile: async (app, who) => void ran.push(taskId("reconcile", app, who)),
      restart: async (app, who) => void ran.push(taskId("restart", app, who)),
    });
    opened.push({ close: () => worker.stop(5_000) });
    const api = instance(3);
    expect((await update(api, owner("worked"), "run", "initial")).status).toBe(200);
    await eventually(async () => ran.includes(taskId("reconcile", "syncthing", owner("worked"))), 10, "the worker running the update's task");
    await eventually(async () => (await queue.stats()).pending === 0, 5, "the queue drained");
    const waits = await connectionsNamed("iapps-worker-wait");
    expect(waits.length).toBeGreaterThan(0);
    for (const line of waits) expect(line).toContain(` user=${USER} `);
  });
});

describe("nodeOptions: what every node connection gets from the seed URLs", () => {
  const settings = (cluster: string[], url = "redis://:single@127.0.0.1:6379") => ({ url, cluster, poolSize: 1, poolWaitMs: 1000, commandTimeoutMs: 1000 });

  test("the username and password, decoded, from the first seed that has them", () => {
    expect(nodeOptions(settings(["redis://10.0.0.1:7000", `redis://${USER}:${encodeURIComponent(PASSWORD)}@10.0.0.2:7001`]))).toEqual({
      username: USER,
      password: PASSWORD,
    });
    expect(nodeOptions(settings(["redis://:hunter2@10.0.0.1:7000", "redis://other:hunter3@10.0.0.2:7001"]))).toEqual({ username: "", password: "hunter2" });
    expect(nodeOptions(settings(["redis://10.0.0.1:7000"]))).toEqual({});
  });

  test("TLS for rediss:// seeds", () => {
    expect(nodeOptions(settings(["rediss://app:pw@10.0.0.1:7000"]))).toEqual({ username: "app", password: "pw", tls: {} });
    const client = createClient(settings(["rediss://app:pw@10.0.0.1:7000"]), { lazyConnect: true }) as Cluster;
    try {
      expect(client.options.redisOptions).toMatchObject({ username: "app", password: "pw", tls: {} });
    } finally {
      client.disconnect();
    }
  });

  test("nothing for a single server: its URL carries its own", () => {
    expect(nodeOptions(settings([]))).toEqual({});
  });
});

test("nothing printed carries the password", () => {
  const text = printed.join("");
  expect(text).not.toContain(PASSWORD);
  expect(text).not.toContain(encodeURIComponent(PASSWORD));
});
