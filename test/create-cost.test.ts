// What creating an owner costs Redis on the worker's side (issue 13: creating 10,000 Syncthing
// owners at a constant number of commands per record, at most 80 with the API's write). All that
// the worker's connections make Redis run, scripts' own commands included, from the API's write
// until the pod runs and its job says RUNNING: the write's reconcile (take, complete), the pod's
// Running event's (claimed at once: claim, complete), and their reads and writes (record, job,
// drive metadata, reset marker, port, job state). Attributed by MONITOR (Redis shows a script's commands
// right after the script, as `lua`), by connection: the worker's are those that appeared when it
// started. The maintenance's promote (a constant per 250 ms, not per owner) is left out.

import { describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Owner } from "../src/domain/owner.ts";
import { keys } from "../src/store/keys.ts";
import { loadedScripts } from "../src/store/scripts.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { DEVICE_A, providerCall } from "./support/service.ts";

/**
 * The worker's commands per owner created one after another (no take serves two tasks): 51.5,
 * was 78. Under bench:scale's load (takes batched, the worker always busy) its share is about 40,
 * issue 13's goal for it (79 per created owner with the API's 39; docs/development.md "Scale").
 * A new command in a reconcile of a created owner (it has two) fails here.
 */
const BOUND_PER_OWNER = 53;
const OWNERS = 8;

const NAMESPACE = "create-cost-test";
const appSettings = { port_min: 30000, port_max: 31000, ip_address: "10.20.30.40", relays: false, image: "example/syncthing", image_version: "7" };
const h = await startHarness({
  simulator: { namespace: NAMESPACE },
  storage: {},
  api: false,
  settings: { apps: { syncthing: appSettings }, worker: { lease: "10s", resync_interval: "1h", concurrency: 8 } },
});
const { redis, root } = h;

const owner = (name: string): Owner => ({ createdBy: name, project: null });
/** The test's own reads, on connections of its own. */
const context = h.context();

/** The addresses of the clients connected now. */
async function clientAddresses(): Promise<Set<string>> {
  const list = (await redis.admin.client("LIST")) as string;
  return new Set([...list.matchAll(/ addr=(\S+)/g)].map((match) => match[1]!));
}

/** A new owner with a folder in its home drive and a device (so a pod), as bench:scale makes them. */
async function create(api: ReturnType<typeof h.instance>, who: Owner) {
  mkdirSync(join(root, `home-${who.createdBy}`, "A"), { recursive: true });
  const config = { folders: [{ ucloudPath: `/home-${who.createdBy}/A`, id: "a" }], devices: [{ deviceId: DEVICE_A, label: "x" }] };
  expect((await providerCall(api, "syncthing", "update", { principal: who, config, expectedETag: null })).status).toBe(200);
}

/** Its job says RUNNING (its pod runs) and the queue is idle. */
async function running(who: Owner) {
  await eventually(
    async () => {
      const record = await context.store.read("syncthing", who);
      const job = record ? await context.jobs.retrieve(record.jobId) : null;
      return job?.state === "RUNNING" && (await redis.admin.llen(keys.queuePending())) === 0 && (await redis.admin.zcard(keys.queueActive())) === 0;
    },
    30,
    `${who.createdBy} running and the queue idle`,
  );
}

describe("the worker's Redis commands per created owner (issue 13)", () => {
  test(`creating ${OWNERS} Syncthing owners one after another: at most ${BOUND_PER_OWNER} commands each on the worker's side, server side`, async () => {
    // The test's connections, then the API's, made before the worker's.
    await context.store.read("syncthing", owner("warm-0"));
    await context.jobs.retrieve("0");
    const tests = await clientAddresses();
    const api = h.instance();
    await create(api, owner("warm-0"));
    const before = await clientAddresses();
    const apis = new Set([...before].filter((address) => !tests.has(address)));
    const worker = h.startWorker();
    await running(owner("warm-0"));
    await create(api, owner("warm-1"));
    await running(owner("warm-1"));
    const workers = new Set([...(await clientAddresses())].filter((address) => !before.has(address)));
    expect(workers.size).toBeGreaterThan(0);

    const promoteSha = loadedScripts().find((script) => script.name.startsWith("promote"))!.sha;
    const byCommand = new Map<string, number>();
    /** The API's commands, for the record (the other share of creating an owner). */
    let apiCommands = 0;
    const unknown = new Set<string>();

    let source = "";
    let skipping = false;
    const monitor = await redis.admin.duplicate().monitor();
    monitor.on("monitor", (_time: string, args: string[], from: string) => {
      const name = args[0]!.toLowerCase();
      if (from !== "lua") {
        source = from;
        skipping = name === "evalsha" && args[1] === promoteSha;
      }
      if (apis.has(source)) apiCommands++;
      if (skipping || !workers.has(source)) {
        if (!before.has(source) && !workers.has(source)) unknown.add(source);
        return;
      }
      byCommand.set(name, (byCommand.get(name) ?? 0) + 1);
    });
    // MONITOR is on before the first write.
    await redis.admin.ping();
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (let i = 0; i < OWNERS; i++) {
      await create(api, owner(`owner${i}`));
      await running(owner(`owner${i}`));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    monitor.disconnect();
    await worker.stop();
    await api.close();

    const total = [...byCommand.values()].reduce((sum, n) => sum + n, 0);
    console.log(
      `\nThe worker's Redis commands per created owner (${OWNERS} owners, server side, scripts' own included): ${(total / OWNERS).toFixed(2)} (at most ${BOUND_PER_OWNER}); ` +
        `the API's: ${(apiCommands / OWNERS).toFixed(2)}`,
    );
    console.table(
      [...byCommand].sort(([a], [b]) => a.localeCompare(b)).map(([command, calls]) => ({ command, perOwner: Math.round((calls / OWNERS) * 100) / 100 })),
    );
    // No connection the worker opened later went uncounted.
    expect([...unknown]).toEqual([]);
    expect(total / OWNERS).toBeLessThanOrEqual(BOUND_PER_OWNER);
  }, 120_000);
});
