// `[ucloud] mode = "core"`: jobs registered with, read from and reported to UCloud/Core (a test
// double with Core's wire shapes, test/support/core-double.ts), the provider's access token, and
// Core's signed calls. Real Redis, the real API, the real reconciler against the simulator.

import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { sign } from "hono/jwt";
import { generateKeyPairSync } from "node:crypto";
import { resolveConfig } from "../src/settings/config.ts";
import { keys } from "../src/store/keys.ts";
import type { CoreJobRegistry } from "../src/ucloud/core-registry.ts";
import { TestClock } from "./support/clock.ts";
import { CoreDouble } from "./support/core-double.ts";
import { eventually } from "./support/eventually.ts";
import { type Settings, startHarness } from "./support/harness.ts";
import { alice, type Instance, type InstanceOptions, syncthingConfig } from "./support/service.ts";

const NAMESPACE = "iapps-core-test";
const REGISTER = "/api/jobs/control/register";
const RETRIEVE = "/api/jobs/control/retrieve";
const UPDATE = "/api/jobs/control/update";
const BROWSE = "/api/jobs/control/browse";
const REFRESH = "/auth/providers/refresh";

const core = await CoreDouble.start();
// Before the harness's own: a call left hanging in Core is answered before the workers stop.
afterEach(() => core.heal());
const h = await startHarness({
  simulator: { namespace: NAMESPACE, startDelayMs: 50 },
  storage: { folders: [0, 1, 2, 3].map((n) => `home-alice/folder-${n}`) },
  settings: () => ({
    auth: { jwt_public_key: core.publicKey },
    ucloud: { mode: "core", core_url: core.url, refresh_token: core.refreshToken, core_timeout: "1s" },
    worker: { lease: "1s", resync_interval: "1h", backoff_base: "100ms", backoff_max: "500ms" },
  }),
});
const { redis, api, root: storageRoot } = h;
afterAll(() => core.close());

function coreInstance(overrides: Settings = {}, options: InstanceOptions = {}): Instance {
  return h.instance(overrides, options);
}

beforeEach(() => {
  core.heal();
  core.jobs.clear();
  core.calls.length = 0;
});

async function call(instance: Instance, op: string, body: unknown, jwt?: string) {
  return instance.request(`/ucloud/k8s/iapps/syncthing/${op}`, {
    method: "POST",
    headers: { authorization: `Bearer ${jwt ?? (await core.serviceToken())}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

const update = (config: unknown, expectedETag: string | null, instance = api, owner = alice) =>
  call(instance, "update", { principal: owner, config, expectedETag });

async function record(owner = alice) {
  return redis.admin.hgetall(keys.record("syncthing", owner));
}

describe("jobs are registered with Core", () => {
  test("the first update registers one job with the spec of spec §4.2; later updates do not register again", async () => {
    const first = await update(syncthingConfig(0), "initial");
    expect(first.status).toBe(200);
    expect(core.callsTo(REGISTER)).toHaveLength(1);
    expect(core.jobs.size).toBe(1);
    const [job] = [...core.jobs.values()];
    expect(job!.owner).toEqual({ createdBy: "alice", project: null });
    expect(job!.specification).toEqual({
      product: { id: "syncthing", category: "syncthing", provider: "k8s" },
      application: { name: "syncthing", version: "1" },
      name: "syncthing",
      replicas: 1,
      allowDuplicateJob: false,
      parameters: { stateFolder: { type: "file", path: "/home-alice/Syncthing", readOnly: false } },
      resources: [],
      timeAllocation: null,
      labels: { "ucloud.dk/ucxport": "8435" },
    });
    const registered = core.callsTo(REGISTER)[0]!.body as { items: Record<string, unknown>[] };
    expect(registered.items[0]).toMatchObject({ createdBy: "alice", project: null, providerGeneratedId: null, projectAllRead: false, projectAllWrite: false });
    expect((await record()).jobId).toBe(job!.id);

    const { etag } = (await (await call(api, "retrieve", { principal: alice })).json()) as { etag: string };
    expect((await update(syncthingConfig(1), etag)).status).toBe(200);
    expect((await update(syncthingConfig(2), null)).status).toBe(200);
    expect(core.callsTo(REGISTER)).toHaveLength(1);
    // Each later update asked Core whether the job is still alive, with UCloud's query flags.
    const retrieves = core.callsTo(RETRIEVE);
    expect(retrieves.length).toBeGreaterThanOrEqual(2);
    expect(retrieves[0]!.query).toMatchObject({ id: job!.id, includeOthers: "false", includeProduct: "false" });
    expect(retrieves.every((c) => c.status === 200)).toBe(true);
  });

  test("concurrent first updates on two replicas register exactly one job", async () => {
    const other = coreInstance();
    try {
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => update(syncthingConfig(i % 4), null, i % 2 ? api : other)));
      expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
      expect(core.callsTo(REGISTER)).toHaveLength(1);
      expect(core.liveJobsOf("alice", "syncthing")).toHaveLength(1);
    } finally {
      await other.close();
    }
  });

  test("a registration slower than the job claim's lifetime: the claim is kept alive, one job, never retired", async () => {
    const settings = { api: { job_claim_wait: "300ms" }, ucloud: { mode: "core", core_url: core.url, refresh_token: core.refreshToken, core_timeout: "3s" } };
    const [a, b] = [coreInstance(settings), coreInstance(settings)];
    try {
      core.slow(REGISTER, 900);
      const first = update(syncthingConfig(0), null, a);
      await eventually(async () => (await redis.admin.exists(keys.jobClaim("syncthing", alice))) === 1, 5, "the first update holds the job claim");
      const second = update(syncthingConfig(1), null, b);
      const statuses = [(await first).status, (await second).status];
      expect(statuses[0]).toBe(200);
      // The second waited its job_claim_wait for the first and gave up: it did not register.
      expect(statuses[1]).toBe(503);
      expect(core.callsTo(REGISTER)).toHaveLength(1);
      const jobId = (await record()).jobId!;
      expect(core.jobs.get(jobId)!.status.state).toBe("IN_QUEUE");
    } finally {
      core.heal();
      await a.close();
      await b.close();
    }
  });

  for (const missing of [404, 403] as const) {
    test(`Core answers ${missing} for the job → the record is detached → the next update registers a new job`, async () => {
      core.missingJobStatus = missing;
      try {
        expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
        const firstJob = (await record()).jobId!;
        core.jobs.delete(firstJob);

        // The worker finds the job gone and detaches the record.
        const running = h.startWorker();
        await running.context.queue.add(`reconcile:syncthing:alice`);
        await eventually(async () => (await record()).state === "detached", 15, "the record detached");
        expect(core.callsTo(REGISTER)).toHaveLength(1);

        expect((await update(syncthingConfig(1), null)).status).toBe(200);
        const secondJob = (await record()).jobId!;
        expect(secondJob).not.toBe(firstJob);
        expect(core.callsTo(REGISTER)).toHaveLength(2);
        expect(core.jobs.get(secondJob)!.specification.product.id).toBe("syncthing");
      } finally {
        core.missingJobStatus = 404;
      }
    });
  }

  test("a job Core reports final is not used again: the next update registers a new one", async () => {
    expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
    const firstJob = (await record()).jobId!;
    core.setState(firstJob, "SUCCESS");
    expect((await update(syncthingConfig(1), null)).status).toBe(200);
    expect((await record()).jobId).not.toBe(firstJob);
    expect(core.callsTo(REGISTER)).toHaveLength(2);
  });
});

describe("Core's faults", () => {
  test("Core down during an update → 503 and nothing stored; Core back → the retry succeeds", async () => {
    await core.down();
    try {
      const answer = await update(syncthingConfig(0), "initial");
      expect(answer.status).toBe(503);
      expect(((await answer.json()) as { errorCode: string }).errorCode).toBe("UNAVAILABLE");
      expect(await redis.admin.keys("iapps:config:*")).toEqual([]);
    } finally {
      core.up();
    }
    expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
    expect(core.jobs.size).toBe(1);
  });

  test("Core answering 5xx to the job check of a later update → 503, the stored record unchanged", async () => {
    expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
    const before = await record();
    core.fail(RETRIEVE, 502, 5);
    const answer = await update(syncthingConfig(1), before.etag!);
    expect(answer.status).toBe(503);
    expect(await record()).toEqual(before);
    core.heal();
    expect((await update(syncthingConfig(1), before.etag!)).status).toBe(200);
    expect(core.callsTo(REGISTER)).toHaveLength(1);
  });

  test("a register that times out after Core created the job is adopted: exactly one job", async () => {
    core.actThenHang(REGISTER);
    const answer = await update(syncthingConfig(0), "initial");
    expect(answer.status).toBe(200);
    expect(core.jobs.size).toBe(1);
    expect((await record()).jobId).toBe([...core.jobs.keys()][0]!);
    expect(core.callsTo(BROWSE).length).toBeGreaterThanOrEqual(2);
  });

  test("a register lost while Core is also unreachable for the look-up → 503; the client's retry adopts the job", async () => {
    core.actThenHang(REGISTER);
    // The look-up before registering passes; the one after the lost answer fails.
    core.fail(BROWSE, 503, 1, 1);
    const first = await update(syncthingConfig(0), "initial");
    expect(first.status).toBe(503);
    expect(await redis.admin.exists(keys.record("syncthing", alice))).toBe(0);
    expect(core.jobs.size).toBe(1);

    core.heal();
    expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
    expect(core.jobs.size).toBe(1);
    expect(core.callsTo(REGISTER)).toHaveLength(1);
    expect((await record()).jobId).toBe([...core.jobs.keys()][0]!);
  });

  test("the worker retries with backoff while Core is down, and reports the job RUNNING once it is back", async () => {
    expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
    const jobId = (await record()).jobId!;
    core.hang(RETRIEVE);
    h.startWorker();
    await eventually(async () => Number(await redis.admin.hget(keys.queueAttempts(), "reconcile:syncthing:alice")) >= 1, 15, "a failed attempt");
    expect(core.jobs.get(jobId)!.status.state).toBe("IN_QUEUE");
    core.heal();
    await eventually(async () => core.jobs.get(jobId)!.status.state === "RUNNING", 20, "the job reported RUNNING");
    expect((await record()).state).toBe("active");
    // Only changes are sent: one RUNNING, however many reconciles ran.
    const runningUpdates = core
      .callsTo(UPDATE)
      .flatMap((c) => (c.body as { items: { id: string; update: { state: string } }[] }).items)
      .filter((item) => item.id === jobId && item.update.state === "RUNNING");
    expect(runningUpdates).toHaveLength(1);
  });
});

describe("state updates", () => {
  test("are sent in batches, with UCloud's JobUpdate shape; several of one job in a batch send the last", async () => {
    const registry = api.context.jobs as CoreJobRegistry;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const owner = { createdBy: `user${i}`, project: null };
      mkdirSync(join(storageRoot, `home-user${i}`), { recursive: true });
      expect((await update({ folders: [], devices: [] }, "initial", api, owner)).status).toBe(200);
      ids.push((await record(owner)).jobId!);
    }
    core.calls.length = 0;
    await Promise.all(ids.map((id) => registry.updateState(id, "RUNNING", "Your job is now running.")));
    const calls = core.callsTo(UPDATE);
    expect(calls).toHaveLength(1);
    const body = calls[0]!.body as { items: { id: string; update: Record<string, unknown> }[] };
    expect(body.items.map((i) => i.id).sort()).toEqual([...ids].sort());
    expect(Object.keys(body.items[0]!.update).sort()).toEqual(
      ["allowRestart", "expectedDifferentState", "expectedState", "newMounts", "newTimeAllocation", "outputFolder", "state", "status", "timestamp"].sort(),
    );
    for (const id of ids) expect(core.jobs.get(id)!.status.state).toBe("RUNNING");

    await Promise.all([registry.updateState(ids[0]!, "SUSPENDED", "a"), registry.updateState(ids[0]!, "IN_QUEUE", "b")]);
    const last = core.callsTo(UPDATE).at(-1)!.body as { items: { id: string; update: { state: string; status: string } }[] };
    expect(last.items).toHaveLength(1);
    expect(last.items[0]!.update).toMatchObject({ state: "IN_QUEUE", status: "b" });
    expect(core.jobs.get(ids[0]!)!.status.state).toBe("IN_QUEUE");
  });

  test("two workers reporting one job: the later change reaches Core, whatever the first one sent", async () => {
    const registry = api.context.jobs as CoreJobRegistry;
    const other = coreInstance();
    try {
      expect((await update(syncthingConfig(0), "initial")).status).toBe(200);
      const jobId = (await record()).jobId!;
      await registry.updateState(jobId, "RUNNING", "running");
      await (other.context.jobs as CoreJobRegistry).updateState(jobId, "SUSPENDED", "restarting");
      await registry.updateState(jobId, "RUNNING", "running");
      expect(core.jobs.get(jobId)!.status.state).toBe("RUNNING");
    } finally {
      await other.close();
    }
  });

  test("one job Core no longer knows does not hold back the others in its batch", async () => {
    const registry = api.context.jobs as CoreJobRegistry;
    for (const owner of ["ann", "bob"]) mkdirSync(join(storageRoot, `home-${owner}`), { recursive: true });
    expect((await update({ folders: [], devices: [] }, "initial", api, { createdBy: "ann", project: null })).status).toBe(200);
    expect((await update({ folders: [], devices: [] }, "initial", api, { createdBy: "bob", project: null })).status).toBe(200);
    const [ann, bob] = [(await record({ createdBy: "ann", project: null })).jobId!, (await record({ createdBy: "bob", project: null })).jobId!];
    core.jobs.delete(ann);
    await Promise.all([registry.updateState(ann, "RUNNING", "x"), registry.updateState(bob, "RUNNING", "x")]);
    expect(core.jobs.get(bob)!.status.state).toBe("RUNNING");
  });
});

describe("the provider's access token", () => {
  test("50 concurrent requests needing Core share one refresh; it is renewed once before it expires", async () => {
    core.accessTokenSeconds = 60;
    const clock = new TestClock();
    const fresh = coreInstance({}, { now: clock.now });
    try {
      const owners = Array.from({ length: 50 }, (_, i) => ({ createdBy: `renew${i}`, project: null }));
      for (const owner of owners) mkdirSync(join(storageRoot, `home-${owner.createdBy}`), { recursive: true });
      const first = await Promise.all(owners.map((owner) => update({ folders: [], devices: [] }, null, fresh, owner)));
      expect(first.map((a) => a.status)).toEqual(Array(50).fill(200));
      expect(core.callsTo(REFRESH)).toHaveLength(1);
      expect(core.callsTo(REFRESH)[0]!.body).toEqual({ items: [{ refreshToken: core.refreshToken }] });

      // Renewal starts at half the token's life (30 s here): move the clock past it, not past the expiry.
      clock.advance(31_000);
      const second = await Promise.all(owners.map((owner) => update({ folders: [], devices: [] }, null, fresh, owner)));
      expect(second.map((a) => a.status)).toEqual(Array(50).fill(200));
      expect(core.callsTo(REFRESH)).toHaveLength(2);
      // No call was refused for an expired token.
      expect(core.calls.filter((c) => c.status === 401)).toEqual([]);
    } finally {
      core.accessTokenSeconds = 600;
      await fresh.close();
    }
  });

  test("a refused refresh token answers 503 and registers nothing", async () => {
    const wrong = coreInstance({ ucloud: { mode: "core", core_url: core.url, refresh_token: "not-the-token", core_timeout: "1s" } });
    try {
      expect((await update(syncthingConfig(0), "initial", wrong)).status).toBe(503);
      expect(core.jobs.size).toBe(0);
    } finally {
      await wrong.close();
    }
  });
});

describe("Core's calls are verified (RS256, sub _UCloud, role SERVICE)", () => {
  const retrieve = (jwt: string) => call(api, "retrieve", { principal: alice }, jwt);
  const errorCode = async (r: Response) => ((await r.json()) as { errorCode: string }).errorCode;

  test("a token Core signed is accepted", async () => {
    expect((await retrieve(await core.serviceToken())).status).toBe(200);
  });

  test("unsigned (alg none) → 401", async () => {
    const encode = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const claims = { sub: "_UCloud", role: "SERVICE", exp: Math.floor(Date.now() / 1000) + 600 };
    const answer = await retrieve(`${encode({ alg: "none", typ: "JWT" })}.${encode(claims)}.`);
    expect(answer.status).toBe(401);
    expect(await errorCode(answer)).toBe("UNAUTHORIZED");
  });

  test("expired → 401", async () => {
    const answer = await retrieve(await core.serviceToken({ exp: Math.floor(Date.now() / 1000) - 60 }));
    expect(answer.status).toBe(401);
  });

  test("signed with another key → 401; an HS256 token → 401", async () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: { type: "pkcs8", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } });
    const exp = Math.floor(Date.now() / 1000) + 600;
    expect((await retrieve(await sign({ sub: "_UCloud", role: "SERVICE", exp }, other.privateKey, "RS256"))).status).toBe(401);
    expect((await retrieve(await sign({ sub: "_UCloud", role: "SERVICE", exp }, "guess", "HS256"))).status).toBe(401);
  });

  test("wrong role → 403; SERVICE but not _UCloud → 403", async () => {
    const user = await retrieve(await core.serviceToken({ role: "USER", sub: "alice" }));
    expect(user.status).toBe(403);
    expect(await errorCode(user)).toBe("FORBIDDEN");
    const impostor = await retrieve(await core.serviceToken({ sub: "mallory" }));
    expect(impostor.status).toBe(403);
  });
});

describe("configuration", () => {
  test("core mode needs core_url, refresh_token and Core's public key, and names what is missing", () => {
    expect(() => resolveConfig({ ucloud: { mode: "core" } }, { source: "t", environment: {} })).toThrow(/ucloud\.core_url.*\n.*ucloud\.refresh_token.*\n.*auth\.jwt_public_key/s);
    expect(() => resolveConfig({ ucloud: { mode: "core", core_url: "ftp://x" } }, { source: "t", environment: {} })).toThrow(/core_url: expected an http/);
    const config = resolveConfig(
      { ucloud: { mode: "core", core_url: "https://core.example/" }, auth: { jwt_public_key: "PEM" } },
      { source: "t", environment: { IAPPS_UCLOUD_REFRESH_TOKEN: "r" } },
    );
    expect(config.ucloud.core_url).toBe("https://core.example");
    expect(config.ucloud.refresh_token).toBe("r");
  });
});
