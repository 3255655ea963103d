// The HTTP API as spec §2-§4 describe it: routes, errors, ETags, the lifecycle of a record and
// its job. Real Redis; requests through the same fetch handler the server runs.

import { describe, expect, test } from "bun:test";
import { sign } from "hono/jwt";
import { keys } from "../src/store/keys.ts";
import { TestClock } from "./support/clock.ts";
import { startHarness } from "./support/harness.ts";
import {
  alice,
  DEVICE_A,
  DEVICE_B,
  providerCall,
  publicCall,
  SECRET,
  startInstance,
  syncthingConfig,
  token,
} from "./support/service.ts";

const h = await startHarness();
const { redis, api } = h;

const recordKey = keys.record("syncthing", alice);

async function update(config: unknown, expectedETag: string | null, owner = alice, headers: Record<string, string> = {}) {
  return providerCall(api, "syncthing", "update", { principal: owner, config, expectedETag }, headers);
}

async function retrieve(owner = alice, headers: Record<string, string> = {}) {
  return providerCall(api, "syncthing", "retrieve", { principal: owner }, headers);
}

async function currentEtag(owner = alice): Promise<string> {
  return ((await (await retrieve(owner)).json()) as { etag: string }).etag;
}

async function storedKeys(): Promise<string[]> {
  return (await redis.admin.keys("*")).sort();
}

async function expectError(response: Response, status: number, errorCode: string, whyIncludes?: string) {
  const body = (await response.json()) as { statusCode: number; why: string; errorCode: string };
  expect({ status: response.status, errorCode: body.errorCode }).toEqual({ status, errorCode });
  expect(body.statusCode).toBe(status);
  expect(body.why.length).toBeGreaterThan(10);
  if (whyIncludes) expect(body.why).toContain(whyIncludes);
}

/** The owner's jobs, as the embedded registry answers them (its hash layout is its own: docs/operations.md). */
async function jobsOf(owner = alice) {
  const ids = (await redis.admin.keys("iapps:job:*")).map((key) => key.slice("iapps:job:".length));
  const jobs = await Promise.all(ids.map((id) => api.context.jobs.retrieve(id)));
  return jobs.filter((j) => j !== null && j.createdBy === owner.createdBy).map((j) => j!);
}

describe("retrieve with no record (spec §3.1)", () => {
  test("answers etag 'initial' and the default configuration, and stores nothing", async () => {
    const response = await retrieve();
    expect(response.status).toBe(200);
    expect(response.headers.get("etag")).toBe('"initial"');
    expect(await response.json()).toEqual({ etag: "initial", config: { folders: [], devices: [] } });
    expect(await storedKeys()).toEqual([]);
  });

  test("the public route answers the same for the caller", async () => {
    const response = await publicCall(api, "alice", "GET", "syncthing/retrieve?provider=k8s&productId=syncthing");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ etag: "initial", config: { folders: [], devices: [] } });
    expect(await storedKeys()).toEqual([]);
  });
});

describe("update (spec §3, §4)", () => {
  test("stores the configuration with a new random 128-bit ETag, shown by retrieve and the ETag header", async () => {
    const response = await update(syncthingConfig(1), null);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});
    const etag = await currentEtag();
    expect(etag).toMatch(/^[0-9a-f]{32}$/);
    expect(response.headers.get("etag")).toBe(`"${etag}"`);
    const view = await (await retrieve()).json();
    expect(view).toEqual({ etag, config: { ...syncthingConfig(1) } });
  });

  test("every change gives a new ETag that never repeats an earlier one", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      expect((await update(syncthingConfig(i), null)).status).toBe(200);
      seen.add(await currentEtag());
    }
    expect(seen.size).toBe(20);
    expect(seen.has("initial")).toBe(false);
  });

  test("an expectedETag equal to the current one is accepted", async () => {
    await update(syncthingConfig(1), null);
    const etag = await currentEtag();
    expect((await update(syncthingConfig(2), etag)).status).toBe(200);
    expect(await currentEtag()).not.toBe(etag);
  });

  test("with no record the current ETag is 'initial': 'initial' is accepted, anything else is 409", async () => {
    await expectError(await update(syncthingConfig(1), "something-else"), 409, "ETAG_MISMATCH", "expectedETag");
    expect(await storedKeys()).toEqual([]);
    expect((await update(syncthingConfig(1), "initial")).status).toBe(200);
  });

  test("a stale expectedETag answers 409 and changes nothing", async () => {
    await update(syncthingConfig(1), null);
    const before = await redis.admin.hgetall(recordKey);
    await expectError(await update(syncthingConfig(2), "stale"), 409, "ETAG_MISMATCH");
    expect(await redis.admin.hgetall(recordKey)).toEqual(before);
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["reconcile:syncthing:alice"]);
  });

  test("expectedETag null (or absent) is unconditional", async () => {
    await update(syncthingConfig(1), null);
    expect((await update(syncthingConfig(2), null)).status).toBe(200);
    const response = await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(3) });
    expect(response.status).toBe(200);
    expect(((await (await retrieve()).json()) as { config: unknown }).config).toEqual(syncthingConfig(3));
  });

  test("two writers holding the same ETag: exactly one wins", async () => {
    await update(syncthingConfig(0), null);
    const etag = await currentEtag();
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => update(syncthingConfig(i + 1), etag)));
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(9);
  });

  test("the public update acts for the token's subject in the personal workspace", async () => {
    const response = await publicCall(api, "alice", "POST", "syncthing/update", {
      provider: "k8s",
      productId: "syncthing",
      config: syncthingConfig(7),
      expectedETag: "initial",
    });
    expect(response.status).toBe(200);
    expect(JSON.parse((await redis.admin.hget(recordKey, "config"))!)).toEqual(syncthingConfig(7));
  });

  test("the record is a readable Redis hash with config, etag, jobId, state and updatedAt", async () => {
    await update(syncthingConfig(1), null);
    const hash = await redis.admin.hgetall(recordKey);
    expect(Object.keys(hash).sort()).toEqual(["config", "etag", "jobId", "state", "updatedAt"]);
    expect(hash.state).toBe("active");
    expect(new Date(hash.updatedAt!).getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  test("owners with a project are kept apart from the personal workspace", async () => {
    const inProject = { createdBy: "alice", project: "p-123" };
    await update(syncthingConfig(1), null, inProject);
    expect(await redis.admin.exists(keys.record("syncthing", inProject))).toBe(1);
    expect(await redis.admin.exists(recordKey)).toBe(0);
    expect((await (await retrieve()).json()) as unknown).toMatchObject({ etag: "initial" });
  });
});

describe("validation before storing (spec §4.1)", () => {
  test("an invalid configuration answers 400 naming the field, and stores and registers nothing", async () => {
    const config = { folders: [], devices: [{ deviceId: DEVICE_A }, { deviceId: DEVICE_A.toLowerCase() }] };
    await expectError(await update(config, null), 400, "INVALID_CONFIGURATION", "config.devices[1].deviceId");
    expect(await storedKeys()).toEqual([]);
  });

  test("a device ID with a wrong check character is refused", async () => {
    const bad = `${DEVICE_B.slice(0, -1)}A`;
    await expectError(await update({ folders: [], devices: [{ deviceId: bad, label: "x" }] }, null), 400, "INVALID_CONFIGURATION", "devices[0].deviceId");
  });

  test("an invalid update of an existing record leaves it unchanged", async () => {
    await update(syncthingConfig(1), null);
    const before = await redis.admin.hgetall(recordKey);
    await expectError(await update({ folders: "nope", devices: [] }, null), 400, "INVALID_CONFIGURATION", "config.folders");
    expect(await redis.admin.hgetall(recordKey)).toEqual(before);
  });
});

describe("jobs (spec §4.2, §4.3)", () => {
  test("the first update registers one job with the app's specification", async () => {
    await update(syncthingConfig(1), null);
    await update(syncthingConfig(2), null);
    const jobs = await jobsOf();
    expect(jobs).toHaveLength(1);
    const job = jobs[0]!;
    expect(await redis.admin.hget(recordKey, "jobId")).toBe(job.id);
    expect(job.specification).toEqual({
      product: { id: "syncthing", category: "syncthing", provider: "k8s" },
      application: { name: "syncthing", version: "1" },
      name: "syncthing",
      replicas: 1,
      parameters: { stateFolder: { type: "file", path: "/home-alice/Syncthing", readOnly: false } },
      resources: [],
      labels: { "ucloud.dk/ucxport": "8435" },
    });
    expect(job.project).toBeNull();
  });

  test("a detached record gets a new job, carrying the configuration of that update", async () => {
    await update(syncthingConfig(1), null);
    const firstJob = await redis.admin.hget(recordKey, "jobId");
    await redis.admin.hset(recordKey, "state", "detached");
    expect((await update(syncthingConfig(2), null)).status).toBe(200);
    const record = await redis.admin.hgetall(recordKey);
    expect(record.jobId).not.toBe(firstJob!);
    expect(record.state).toBe("active");
    expect(JSON.parse(record.config!)).toEqual(syncthingConfig(2));
    expect(await jobsOf()).toHaveLength(2);
  });

  test("a record whose job reached a final state gets a new job on the next update", async () => {
    await update(syncthingConfig(1), null);
    const firstJob = (await redis.admin.hget(recordKey, "jobId"))!;
    await api.context.jobs.updateState(firstJob, "SUCCESS");
    await update(syncthingConfig(2), null);
    expect(await redis.admin.hget(recordKey, "jobId")).not.toBe(firstJob);
  });

  test("a record whose job vanished from the registry gets a new job on the next update", async () => {
    await update(syncthingConfig(1), null);
    const firstJob = (await redis.admin.hget(recordKey, "jobId"))!;
    await redis.admin.del(keys.job(firstJob));
    await update(syncthingConfig(2), null);
    const jobId = await redis.admin.hget(recordKey, "jobId");
    expect(jobId).not.toBe(firstJob);
    expect(await redis.admin.exists(keys.job(jobId!))).toBe(1);
  });

  test("twenty concurrent first updates register exactly one job", async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => update(syncthingConfig(i), null)));
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(await jobsOf()).toHaveLength(1);
    expect(await redis.admin.exists(keys.jobClaim("syncthing", alice))).toBe(0);
  });

  test("concurrent first updates all expecting 'initial': one wins, the rest get 409", async () => {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => update(syncthingConfig(i), "initial")));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(1);
    expect(answers.filter((r) => r.status === 409)).toHaveLength(9);
    expect(await jobsOf()).toHaveLength(1);
  });
});

describe("reset (spec §4.4)", () => {
  test("stores the default configuration with a new ETag", async () => {
    await update(syncthingConfig(1), null);
    const etag = await currentEtag();
    const response = await providerCall(api, "syncthing", "reset", { principal: alice, expectedETag: etag });
    expect(response.status).toBe(200);
    const view = (await (await retrieve()).json()) as { etag: string; config: unknown };
    expect(view.config).toEqual({ folders: [], devices: [] });
    expect(view.etag).not.toBe(etag);
    expect(response.headers.get("etag")).toBe(`"${view.etag}"`);
  });

  test("with no record succeeds and stores nothing", async () => {
    const response = await providerCall(api, "syncthing", "reset", { principal: alice, expectedETag: null });
    expect(response.status).toBe(200);
    expect(await storedKeys()).toEqual([]);
  });

  test("the provider reset checks expectedETag: a mismatch is 409 and changes nothing", async () => {
    await update(syncthingConfig(1), null);
    const before = await redis.admin.hgetall(recordKey);
    await expectError(await providerCall(api, "syncthing", "reset", { principal: alice, expectedETag: "stale" }), 409, "ETAG_MISMATCH");
    expect(await redis.admin.hgetall(recordKey)).toEqual(before);
  });

  test("the public reset carries no ETag check, as in UCloud", async () => {
    await update(syncthingConfig(1), null);
    const response = await publicCall(api, "alice", "POST", "syncthing/reset", { provider: "k8s", productId: "syncthing", expectedETag: "stale" });
    expect(response.status).toBe(200);
    expect(((await (await retrieve()).json()) as { config: unknown }).config).toEqual({ folders: [], devices: [] });
  });

  test("the public reset accepts an empty body", async () => {
    await update(syncthingConfig(1), null);
    expect((await publicCall(api, "alice", "POST", "syncthing/reset", "")).status).toBe(200);
  });

  test("reset of a detached record registers a new job with the default configuration", async () => {
    await update(syncthingConfig(1), null);
    const firstJob = await redis.admin.hget(recordKey, "jobId");
    await redis.admin.hset(recordKey, "state", "detached");
    expect((await providerCall(api, "syncthing", "reset", { principal: alice })).status).toBe(200);
    const record = await redis.admin.hgetall(recordKey);
    expect(record.jobId).not.toBe(firstJob!);
    expect(record.state).toBe("active");
    expect(JSON.parse(record.config!)).toEqual({ folders: [], devices: [] });
  });
});

describe("restart (spec §3.3, §4.5)", () => {
  test("with no record answers 404 and stores nothing", async () => {
    await expectError(await providerCall(api, "syncthing", "restart", { principal: alice }), 404, "NOT_FOUND");
    await expectError(await publicCall(api, "alice", "POST", "syncthing/restart", {}), 404, "NOT_FOUND");
    expect(await storedKeys()).toEqual([]);
  });

  test("with a record keeps the ETag and enqueues one restart task on the queue", async () => {
    await update(syncthingConfig(1), null);
    const etag = await currentEtag();
    const response = await providerCall(api, "syncthing", "restart", { principal: alice });
    expect(response.status).toBe(200);
    expect(response.headers.get("etag")).toBe(`"${etag}"`);
    expect(await currentEtag()).toBe(etag);
    expect(await redis.admin.lrange(keys.queuePending(), 0, -1)).toEqual(["reconcile:syncthing:alice", "restart:syncthing:alice"]);
  });

  test("at most one restart task is pending per record", async () => {
    await update(syncthingConfig(1), null);
    for (let i = 0; i < 5; i++) expect((await publicCall(api, "alice", "POST", "syncthing/restart", {})).status).toBe(200);
    const pending = await redis.admin.lrange(keys.queuePending(), 0, -1);
    expect(pending.filter((t) => t === "restart:syncthing:alice")).toHaveLength(1);
    expect(await redis.admin.smembers(keys.queueDirty())).toEqual(expect.arrayContaining(pending));
  });

  test("a restart whose job is gone registers a new job with the stored configuration and a new ETag", async () => {
    await update(syncthingConfig(4), null);
    const etag = await currentEtag();
    const firstJob = (await redis.admin.hget(recordKey, "jobId"))!;
    await api.context.jobs.updateState(firstJob, "FAILURE");
    expect((await providerCall(api, "syncthing", "restart", { principal: alice })).status).toBe(200);
    const record = await redis.admin.hgetall(recordKey);
    expect(record.jobId).not.toBe(firstJob);
    expect(record.etag).not.toBe(etag);
    expect(JSON.parse(record.config!)).toEqual(syncthingConfig(4));
  });
});

describe("standard HTTP on top", () => {
  test("If-Match with the current ETag lets an update through; a different one answers 412 and changes nothing", async () => {
    await update(syncthingConfig(1), null);
    const etag = await currentEtag();
    await expectError(await update(syncthingConfig(2), null, alice, { "if-match": '"stale"' }), 412, "PRECONDITION_FAILED", "If-Match");
    expect(await currentEtag()).toBe(etag);
    expect((await update(syncthingConfig(2), null, alice, { "if-match": `"${etag}"` })).status).toBe(200);
  });

  test("If-Match applies to reset and restart too", async () => {
    await update(syncthingConfig(1), null);
    await expectError(await providerCall(api, "syncthing", "reset", { principal: alice }, { "if-match": '"x"' }), 412, "PRECONDITION_FAILED");
    await expectError(await publicCall(api, "alice", "POST", "syncthing/restart", {}, { "if-match": '"x"' }), 412, "PRECONDITION_FAILED");
    await expectError(await publicCall(api, "alice", "POST", "syncthing/reset", {}, { "if-match": '"x"' }), 412, "PRECONDITION_FAILED");
  });

  test("If-Match: * requires a record to exist", async () => {
    await expectError(await update(syncthingConfig(1), null, alice, { "if-match": "*" }), 412, "PRECONDITION_FAILED");
    await update(syncthingConfig(1), null);
    expect((await update(syncthingConfig(2), null, alice, { "if-match": "*" })).status).toBe(200);
  });

  test("If-None-Match with the current ETag answers 304 with no body", async () => {
    await update(syncthingConfig(1), null);
    const etag = await currentEtag();
    const response = await publicCall(api, "alice", "GET", "syncthing/retrieve", undefined, { "if-none-match": `"${etag}"` });
    expect(response.status).toBe(304);
    expect(await response.text()).toBe("");
    expect(response.headers.get("etag")).toBe(`"${etag}"`);
    const other = await publicCall(api, "alice", "GET", "syncthing/retrieve", undefined, { "if-none-match": '"old"' });
    expect(other.status).toBe(200);
  });

  test("with require_etag, an update with neither expectedETag nor If-Match answers 428", async () => {
    const strict = startInstance(redis.url, { api: { require_etag: true } });
    try {
      const response = await providerCall(strict, "syncthing", "update", { principal: alice, config: syncthingConfig(1), expectedETag: null });
      await expectError(response, 428, "PRECONDITION_REQUIRED", "expectedETag");
      expect(await storedKeys()).toEqual([]);
      const withBody = await providerCall(strict, "syncthing", "update", { principal: alice, config: syncthingConfig(1), expectedETag: "initial" });
      expect(withBody.status).toBe(200);
      const etag = await currentEtag();
      const withHeader = await providerCall(strict, "syncthing", "update", { principal: alice, config: syncthingConfig(2) }, { "if-match": `"${etag}"` });
      expect(withHeader.status).toBe(200);
    } finally {
      await strict.close();
    }
  });
});

describe("errors (spec §2, the error table)", () => {
  test("malformed JSON answers 400 INVALID_REQUEST", async () => {
    await expectError(await providerCall(api, "syncthing", "update", '{"principal":'), 400, "INVALID_REQUEST", "JSON");
  });

  test("wrong types answer 400 naming the field", async () => {
    await expectError(await providerCall(api, "syncthing", "update", { principal: { createdBy: 5 }, config: {} }), 400, "INVALID_REQUEST", "principal.createdBy");
    await expectError(await providerCall(api, "syncthing", "update", { principal: alice, config: syncthingConfig(), expectedETag: 7 }), 400, "INVALID_REQUEST", "expectedETag");
    await expectError(await providerCall(api, "syncthing", "update", { principal: alice }), 400, "INVALID_REQUEST", "config");
    await expectError(await providerCall(api, "syncthing", "update", [1, 2]), 400, "INVALID_REQUEST", "JSON object");
  });

  test("an owner whose name would break the key layout is refused", async () => {
    await expectError(await providerCall(api, "syncthing", "retrieve", { principal: { createdBy: "a:b", project: null } }), 400, "INVALID_REQUEST", "principal.createdBy");
    await expectError(await providerCall(api, "syncthing", "retrieve", { principal: { createdBy: "a", project: "{x}" } }), 400, "INVALID_REQUEST", "principal.project");
  });

  test("no token, a malformed token, a wrongly signed or an expired token answer 401", async () => {
    const noToken = await api.request("/api/iapps/syncthing/retrieve");
    await expectError(noToken, 401, "UNAUTHORIZED");
    const garbage = await api.request("/api/iapps/syncthing/retrieve", { headers: { authorization: "Bearer not.a.jwt" } });
    await expectError(garbage, 401, "UNAUTHORIZED");
    const wrongKey = await sign({ sub: "alice", role: "USER", exp: Math.floor(Date.now() / 1000) + 60 }, "another-secret", "HS256");
    await expectError(await api.request("/api/iapps/syncthing/retrieve", { headers: { authorization: `Bearer ${wrongKey}` } }), 401, "UNAUTHORIZED");
    const expired = await token("alice", "USER", { exp: Math.floor(Date.now() / 1000) - 10 });
    await expectError(await api.request("/api/iapps/syncthing/retrieve", { headers: { authorization: `Bearer ${expired}` } }), 401, "UNAUTHORIZED");
    const noRole = await sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 60 }, SECRET, "HS256");
    await expectError(await api.request("/api/iapps/syncthing/retrieve", { headers: { authorization: `Bearer ${noRole}` } }), 401, "UNAUTHORIZED", "role");
  });

  test("the wrong role for a route answers 403", async () => {
    const user = await token("alice", "USER");
    const asUser = await api.request("/ucloud/k8s/iapps/syncthing/retrieve", {
      method: "POST",
      headers: { authorization: `Bearer ${user}` },
      body: JSON.stringify({ principal: alice }),
    });
    await expectError(asUser, 403, "FORBIDDEN");
    const service = await token("_UCloud", "SERVICE");
    await expectError(await api.request("/api/iapps/syncthing/retrieve", { headers: { authorization: `Bearer ${service}` } }), 403, "FORBIDDEN");
  });

  test("ADMIN tokens may use the public API", async () => {
    const admin = await token("root", "ADMIN");
    const response = await api.request("/api/iapps/syncthing/retrieve", { headers: { authorization: `Bearer ${admin}` } });
    expect(response.status).toBe(200);
  });

  test("an unknown app, and the terminal's configuration routes, answer 404 UNKNOWN_APPLICATION", async () => {
    await expectError(await providerCall(api, "nope", "retrieve", { principal: alice }), 404, "UNKNOWN_APPLICATION");
    await expectError(await publicCall(api, "alice", "GET", "nope/retrieve"), 404, "UNKNOWN_APPLICATION");
    for (const op of ["retrieve", "update", "reset", "restart"]) {
      await expectError(await providerCall(api, "terminal", op, { principal: alice, config: { folders: [] } }), 404, "UNKNOWN_APPLICATION");
    }
  });

  test("a disabled app answers 404 UNKNOWN_APPLICATION", async () => {
    const disabled = startInstance(redis.url, { apps: { syncthing: { enabled: false } } });
    try {
      await expectError(await providerCall(disabled, "syncthing", "retrieve", { principal: alice }), 404, "UNKNOWN_APPLICATION");
    } finally {
      await disabled.close();
    }
  });

  test("another provider's routes answer 404", async () => {
    const service = await token("_UCloud", "SERVICE");
    const response = await api.request("/ucloud/other/iapps/syncthing/retrieve", {
      method: "POST",
      headers: { authorization: `Bearer ${service}` },
      body: JSON.stringify({ principal: alice }),
    });
    await expectError(response, 404, "NOT_FOUND", "k8s");
  });

  test("an unknown route answers 404 in UCloud's error shape", async () => {
    await expectError(await api.request("/nothing/here"), 404, "NOT_FOUND");
  });

  test("a body over the limit answers 413 and changes nothing", async () => {
    const big = { principal: alice, config: { folders: [], devices: [], padding: "x".repeat(1024 * 1024 + 10) }, expectedETag: null };
    await expectError(await providerCall(api, "syncthing", "update", big), 413, "PAYLOAD_TOO_LARGE");
    expect(await storedKeys()).toEqual([]);
  });
});

describe("production tokens signed with a private key (RS256, ES256)", () => {
  for (const [algorithm, type, options] of [
    ["RS256", "rsa", { modulusLength: 2048 }],
    ["ES256", "ec", { namedCurve: "P-256" }],
  ] as const) {
    test(`${algorithm}: tokens verify with [auth] jwt_public_key; the HS256 secret no longer opens the door`, async () => {
      const { generateKeyPairSync } = await import("node:crypto");
      const pair = generateKeyPairSync(type as "rsa", {
        ...(options as { modulusLength: number }),
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      });
      const production = startInstance(redis.url, { auth: { jwt_secret: "", jwt_public_key: pair.publicKey, jwt_algorithm: algorithm } });
      try {
        const exp = Math.floor(Date.now() / 1000) + 60;
        const good = await sign({ sub: "_UCloud", role: "SERVICE", exp }, pair.privateKey, algorithm);
        const call = (jwt: string) =>
          production.request("/ucloud/k8s/iapps/syncthing/retrieve", {
            method: "POST",
            headers: { authorization: `Bearer ${jwt}` },
            body: JSON.stringify({ principal: alice }),
          });
        expect((await call(good)).status).toBe(200);
        await expectError(await call(await token("_UCloud", "SERVICE")), 401, "UNAUTHORIZED");
        const other = generateKeyPairSync(type as "rsa", {
          ...(options as { modulusLength: number }),
          publicKeyEncoding: { type: "spki", format: "pem" },
          privateKeyEncoding: { type: "pkcs8", format: "pem" },
        });
        await expectError(await call(await sign({ sub: "_UCloud", role: "SERVICE", exp }, other.privateKey, algorithm)), 401, "UNAUTHORIZED");
      } finally {
        await production.close();
      }
    });
  }
});

describe("remembered tokens", () => {
  test("a verified token stops working when it expires", async () => {
    const clock = new TestClock();
    const clocked = h.instance({}, { now: clock.now });
    try {
      const shortLived = await token("alice", "USER", { exp: Math.floor(Date.now() / 1000) + 2 });
      const call = () => clocked.request("/api/iapps/syncthing/retrieve", { headers: { authorization: `Bearer ${shortLived}` } });
      expect((await call()).status).toBe(200);
      clock.advance(2100);
      await expectError(await call(), 401, "UNAUTHORIZED");
    } finally {
      await clocked.close();
    }
  });
});

describe("the embedded job registry", () => {
  test("a final state is final: a late state update does not bring the job back", async () => {
    await update(syncthingConfig(1), null);
    const jobId = (await redis.admin.hget(recordKey, "jobId"))!;
    await api.context.jobs.updateState(jobId, "RUNNING");
    await api.context.jobs.updateState(jobId, "SUCCESS");
    await api.context.jobs.updateState(jobId, "RUNNING");
    expect((await api.context.jobs.retrieve(jobId))?.state).toBe("SUCCESS");
  });

  test("updating a job that does not exist invents nothing", async () => {
    await api.context.jobs.updateState("12345", "RUNNING");
    expect(await api.context.jobs.retrieve("12345")).toBeNull();
  });
});
