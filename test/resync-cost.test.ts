// What one resync pass costs Redis per unchanged record (spec §9, issue 13), and that the pass
// still fixes what nothing else would. A pass checks every record with the reconciler's own
// decisions, read-only (`Reconciler.check`), against the watch caches, and puts a reconcile on
// the queue only for records that one would change: an unchanged running Syncthing record costs
// its record and its job (its pod's port is on the pod, its drives' metadata read once while no
// drive changes). Counted on the server side (INFO commandstats: every command Redis ran,
// scripts' own included) over a pass with no worker running beside it, and on the client side
// (commands sent, by name; a script is one EVALSHA), and printed.

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import type { Owner } from "../src/domain/owner.ts";
import { KubernetesGateway } from "../src/kubernetes/gateway.ts";
import { LABELS, podName } from "../src/reconciler/objects.ts";
import { keys } from "../src/store/keys.ts";
import { loadedScripts } from "../src/store/scripts.ts";
import { type PassResult, resyncOnce } from "../src/worker/resync.ts";
import { reconcilerFor, resyncCheck } from "../src/worker/start.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { DEVICE_A, providerCall } from "./support/service.ts";

/** The goal of issue 13: Redis commands per unchanged record and pass, server side. */
const GOAL_PER_RECORD = 3;
const RECORDS = 40;

const appSettings = { port_min: 30000, port_max: 31000, ip_address: "10.20.30.40", relays: false, image: "example/syncthing", image_version: "7" };
const NAMESPACE = "resync-cost-test";
const h = await startHarness({
  simulator: { namespace: NAMESPACE },
  storage: {},
  api: false,
  settings: { apps: { syncthing: appSettings }, worker: { lease: "10s", resync_interval: "1h", concurrency: 8 } },
});
const { redis, kubernetes: cluster, root } = h;

const owner = (i: number): Owner => ({ createdBy: `user${i}`, project: null });
/** The record as the service reads it (its fields' encoding is the store's business). */
const recordOf = (who: Owner) => h.context().store.read("syncthing", who);

/** Script names by the SHA-1 EVALSHA sends (of the script as loaded: its includes expanded). */
const scriptNames = new Map<string, string>();
const nameScripts = () => {
  for (const script of loadedScripts()) scriptNames.set(createHash("sha1").update(script.lua).digest("hex"), script.name);
};

/** Commands sent by this process's clients (not the test's admin connection), by name; a script by its file's name. */
const sent = new Map<string, number>();
let counting = false;
const originalSend = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function (this: Redis, command: { name: string; args: unknown[] }, stream?: unknown) {
  if (counting && this !== redis.admin) {
    const name = command.name === "evalsha" || command.name === "eval" ? (scriptNames.get(String(command.args[0])) ?? command.name) : command.name;
    sent.set(name, (sent.get(name) ?? 0) + 1);
  }
  return Reflect.apply(originalSend, this, [command, stream]);
} as typeof originalSend;

/** Every command Redis ran (scripts' too), less INFO. */
async function serverCommands(): Promise<number> {
  let total = 0;
  for (const [, name, calls] of (await redis.admin.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (name !== "info") total += Number(calls);
  return total;
}

/** Records of `owners`, each with the given folders in its home drive and one device, all running. */
async function runningRecords(owners: Owner[], folders: string[]) {
  const api = h.instance();
  for (const who of owners) {
    for (const folder of folders) mkdirSync(join(root, `home-${who.createdBy}`, folder), { recursive: true });
    const config = { folders: folders.map((name) => ({ ucloudPath: `/home-${who.createdBy}/${name}`, id: name })), devices: [{ deviceId: DEVICE_A, label: "laptop" }] };
    expect((await providerCall(api, "syncthing", "update", { principal: who, config })).status).toBe(200);
  }
  await api.close();
  await eventually(
    async () => (await cluster.listPods("ucloud.dk/iapp-name=syncthing")).filter((p) => p.status?.phase === "Running").length === owners.length,
    60,
    `${owners.length} running pods`,
  );
  // Every job says RUNNING and the queue is idle: the records are unchanged from here on.
  await eventually(
    async () => {
      const states = await Promise.all(owners.map(async (who) => (await h.context().jobs.retrieve((await recordOf(who))!.jobId))?.state));
      return states.every((s) => s === "RUNNING") && (await redis.admin.llen(keys.queuePending())) === 0 && (await redis.admin.zcard(keys.queueActive())) === 0;
    },
    30,
    "every job running and the queue idle",
  );
}

/** The resync as the worker holding its lock runs it, with the worker's check, in this test's own context and caches (no worker beside it). */
async function passRunner(simulatorUrl = h.simulator.url) {
  const context = h.context();
  const gateway = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl });
  const caches = gateway.startCaches({ selectLabel: LABELS.app, indexLabel: LABELS.owner });
  const check = resyncCheck(context, gateway, reconcilerFor(context, gateway, () => {}), caches);
  await caches;
  let round = 0;
  return {
    gateway,
    pass: async (): Promise<PassResult> => (await resyncOnce(context.commands, context.queue, 60_000, `resync-cost-test-${round++}`, { check }))!,
    close: () => gateway.stopCaches(),
  };
}

describe("commands per unchanged record and resync pass (issue 13)", () => {
  test(`a resync of ${RECORDS} running Syncthing records with two folders each: at most ${GOAL_PER_RECORD} commands per record, server side, and nothing enqueued`, async () => {
    const running = h.startWorker();
    const owners = Array.from({ length: RECORDS }, (_, i) => owner(i));
    await runningRecords(owners, ["Documents", "Photos"]);
    await running.stop();
    const runner = await passRunner();
    // The first pass reads each drive's metadata once; the ones after it, none while no drive changes.
    expect((await runner.pass()).enqueued).toBe(0);
    await redis.admin.del(keys.resyncLock());

    nameScripts();
    sent.clear();
    const serverBefore = await serverCommands();
    counting = true;
    const pass = await runner.pass();
    counting = false;
    const server = (await serverCommands()) - serverBefore;
    await runner.close();
    expect(pass.records).toBe(RECORDS);
    expect(pass.enqueued).toBe(0);
    expect(pass.failed).toBe(0);

    const rows = [...sent].sort(([a], [b]) => a.localeCompare(b)).map(([command, calls]) => ({ command, calls, perRecord: Math.round((calls / RECORDS) * 100) / 100 }));
    const clientTotal = rows.reduce((sum, row) => sum + row.calls, 0);
    // Once per pass: the lock, the queue's length, the outbox index, SCANs, the drives' version.
    const count = (...names: string[]) => names.reduce((sum, name) => sum + (sent.get(name) ?? 0), 0);
    const perPass = count("set", "llen", "scan", "hscan", "get");
    console.log(`\nOne resync pass over ${RECORDS} unchanged Syncthing records (two folders each, in the owner's home drive):`);
    console.table(rows);
    console.log(
      `commands Redis ran per record: ${(server / RECORDS).toFixed(2)} (goal ${GOAL_PER_RECORD}), all of the pass's included; ` +
        `sent per record ${((clientTotal - perPass) / RECORDS).toFixed(2)}, plus ${perPass} per pass (lock, queue length, SCANs, outbox index, drives' version)`,
    );
    expect(server / RECORDS).toBeLessThanOrEqual(GOAL_PER_RECORD);
  }, 120_000);

  test("a folder marked restricted since, and a pod whose deletion the worker's watch never delivered: the next pass has both fixed", async () => {
    // The worker watches through a proxy that can lose a pod's DELETED event, as a watch may.
    const lost = new Set<string>();
    const upstream = h.simulator.url;
    const proxy = Bun.serve({
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        const answer = await fetch(`${upstream}${url.pathname}${url.search}`, {
          method: request.method,
          headers: request.headers,
          body: request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer(),
        });
        if (url.searchParams.get("watch") !== "true" || !answer.body) return answer;
        const decoder = new TextDecoder();
        let pending = "";
        const dropLost = new TransformStream<Uint8Array, string>({
          transform(chunk, out) {
            pending += decoder.decode(chunk, { stream: true });
            const lines = pending.split("\n");
            pending = lines.pop()!;
            for (const line of lines) {
              const event = line.trim() === "" ? null : (JSON.parse(line) as { type: string; object?: { metadata?: { name?: string } } });
              const name = event?.object?.metadata?.name;
              if (event?.type === "DELETED" && name !== undefined && lost.delete(name)) continue;
              out.enqueue(`${line}\n`);
            }
          },
        });
        return new Response(answer.body.pipeThrough(dropLost).pipeThrough(new TextEncoderStream()), { status: answer.status, headers: answer.headers });
      },
    });
    try {
      const running = h.startWorker({ worker: { resync_interval: "1500ms" } }, `http://127.0.0.1:${proxy.port}`);
      const [lostPod, restricted] = [owner(100), owner(101)];
      await runningRecords([lostPod, restricted], ["Documents"]);
      const podOf = async (who: Owner) => cluster.getPod(podName((await recordOf(who))!.jobId));
      const before = (await podOf(lostPod))!;

      // The pod goes; its DELETED event never reaches the worker, whose cache still has it.
      lost.add(before.metadata!.name!);
      await cluster.deletePod(before.metadata!.name!);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(lost.size).toBe(0);
      // Marked restricted by an operator: nothing but the resync looks at drives.
      const home = `home-${restricted.createdBy}`;
      await running.context.drives.create(home, restricted.createdBy);
      await running.context.drives.mark(home, "Documents", "SENSITIVE");

      await eventually(async () => (await podOf(lostPod))?.metadata?.uid !== undefined && (await podOf(lostPod))?.metadata?.uid !== before.metadata!.uid, 30, "the lost pod back");
      await eventually(async () => ((await recordOf(restricted))!.config as { folders: unknown[] }).folders.length === 0, 30, "the restricted folder gone from the record");
    } finally {
      proxy.stop(true);
    }
  }, 120_000);
});
