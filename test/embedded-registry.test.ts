// The embedded job registry (src/ucloud/embedded-registry.ts) keeps each job compact on Redis's
// default settings (issue 13: a listpack, every value at most 64 bytes), answers the same Job it
// was given, and reads the jobs an earlier version wrote (id, specification JSON, ISO times) as
// it did then: operators upgrade in place, with no migration.

import { describe, expect, test } from "bun:test";
import type { JobSpecification } from "../src/domain/app.ts";
import { syncthing } from "../src/apps/syncthing.ts";
import { keys } from "../src/store/keys.ts";
import { CREATED_BY_PLACEHOLDER, EmbeddedJobRegistry } from "../src/ucloud/embedded-registry.ts";
import { startHarness } from "./support/harness.ts";

const h = await startHarness({ api: false });
const { redis } = h;

/** The specification the service registers for a Syncthing owner (src/service/write-loop.ts). */
function syncthingSpec(createdBy: string): JobSpecification {
  const base: JobSpecification = {
    product: { id: "syncthing", category: "syncthing", provider: "k8s" },
    application: { name: "syncthing", version: "latest" },
    name: "syncthing",
    replicas: 1,
    parameters: {},
    resources: [],
  };
  return syncthing.mutateJobSpec({ createdBy, project: null }, base);
}

const registry = () => new EmbeddedJobRegistry(h.context().commands);
const encoding = async (jobId: string) => redis.admin.object("ENCODING", keys.job(jobId));

describe("a job reads back as it was registered", () => {
  test("specification, owner, state, status and times; another registry (another process) reads the same", async () => {
    const before = Date.now();
    const id = await registry().register(syncthingSpec("alice"), "alice", null);
    const job = await registry().retrieve(id);
    expect(job).toEqual({
      id,
      specification: syncthingSpec("alice"),
      createdBy: "alice",
      project: null,
      state: "IN_QUEUE",
      status: "Registered",
      createdAt: job!.createdAt,
      updatedAt: job!.createdAt,
    });
    expect(Date.parse(job!.createdAt)).toBeGreaterThanOrEqual(before);
    expect(job!.createdAt).toBe(new Date(Date.parse(job!.createdAt)).toISOString());
    expect(await registry().retrieve("404")).toBeNull();
  });

  test("a project, a state change and a status, and a final state that stays final", async () => {
    const jobs = registry();
    const id = await jobs.register(syncthingSpec("bob"), "bob", "p1");
    await jobs.updateState(id, "SUSPENDED", "No device");
    let job = (await registry().retrieve(id))!;
    expect([job.project, job.state, job.status]).toEqual(["p1", "SUSPENDED", "No device"]);
    expect(Date.parse(job.updatedAt)).toBeGreaterThanOrEqual(Date.parse(job.createdAt));
    await jobs.updateState(id, "SUCCESS");
    await jobs.updateState(id, "RUNNING");
    job = (await registry().retrieve(id))!;
    expect([job.state, job.status]).toEqual(["SUCCESS", ""]);
  });

  test("owners of one app share one kept specification; the owner's name is put back for each", async () => {
    const jobs = registry();
    const ids = await Promise.all(["ann", "ben", "cyd"].map((who) => jobs.register(syncthingSpec(who), who, null)));
    expect(await redis.admin.hlen(keys.jobSpecifications())).toBe(1);
    for (const [i, who] of ["ann", "ben", "cyd"].entries()) expect((await registry().retrieve(ids[i]!))!.specification).toEqual(syncthingSpec(who));
  });

  test("a specification that holds the placeholder itself is kept in the job, and reads back exactly", async () => {
    const odd = { ...syncthingSpec("dan"), name: `${CREATED_BY_PLACEHOLDER} of dan` };
    const id = await registry().register(odd, "dan", null);
    expect(await redis.admin.hexists(keys.job(id), "specification")).toBe(1);
    expect((await registry().retrieve(id))!.specification).toEqual(odd);
  });

  test("a kept specification deleted from Redis is kept again by the next registration", async () => {
    const jobs = registry();
    await jobs.register(syncthingSpec("eve"), "eve", null);
    await redis.admin.del(keys.jobSpecifications());
    const id = await jobs.register(syncthingSpec("fay"), "fay", null);
    expect((await registry().retrieve(id))!.specification).toEqual(syncthingSpec("fay"));
  });
});

describe("a job stays compact on Redis's default settings (issue 13)", () => {
  test("a listpack when registered and when running, and again once a long status is gone", async () => {
    const [, listpackValue] = (await redis.admin.config("GET", "hash-max-listpack-value")) as [string, string];
    expect(listpackValue).toBe("64");
    const jobs = registry();
    const id = await jobs.register(syncthingSpec("user00000"), "user00000", null);
    expect(await encoding(id)).toBe("listpack");
    await jobs.updateState(id, "RUNNING");
    expect(await encoding(id)).toBe("listpack");
    const long = "No free Syncthing port: every port in [30000, 31000) is taken. Widen [apps.syncthing] port_min/port_max.";
    await jobs.updateState(id, "SUSPENDED", long);
    expect(await encoding(id)).toBe("hashtable");
    expect((await registry().retrieve(id))!.status).toBe(long);
    await jobs.updateState(id, "RUNNING");
    expect(await encoding(id)).toBe("listpack");
    const job = (await registry().retrieve(id))!;
    expect([job.state, job.status, job.specification]).toEqual(["RUNNING", "", syncthingSpec("user00000")]);
    expect(Number(await redis.admin.call("MEMORY", "USAGE", keys.job(id), "SAMPLES", "0"))).toBeLessThanOrEqual(200);
  });
});

describe("jobs written by the previous encoding (upgrade in place)", () => {
  /** A job exactly as the registry wrote it before (one hash, the specification as JSON, ISO times). */
  async function writeOldJob(id: string, state: string, status: string | null) {
    const spec = syncthingSpec("olga");
    await redis.admin.hset(keys.job(id), {
      id,
      specification: JSON.stringify(spec),
      createdBy: "olga",
      project: "",
      state,
      ...(status === null ? {} : { status }),
      createdAt: "2025-06-01T10:00:00.000Z",
      updatedAt: "2025-06-01T10:00:05.123Z",
    });
    return spec;
  }

  test("read as they were", async () => {
    const spec = await writeOldJob("7", "IN_QUEUE", "Registered");
    expect(await registry().retrieve("7")).toEqual({
      id: "7",
      specification: spec,
      createdBy: "olga",
      project: null,
      state: "IN_QUEUE",
      status: "Registered",
      createdAt: "2025-06-01T10:00:00.000Z",
      updatedAt: "2025-06-01T10:00:05.123Z",
    });
  });

  test("are rewritten compact by their first read, and read the same after", async () => {
    const spec = await writeOldJob("6", "RUNNING", null);
    expect(await encoding("6")).toBe("hashtable");
    const first = await registry().retrieve("6");
    expect(await encoding("6")).toBe("listpack");
    const hash = await redis.admin.hgetall(keys.job("6"));
    expect(Object.keys(hash).sort()).toEqual(["createdAt", "createdBy", "spec", "state", "updatedAt"]);
    expect(hash.createdAt).toBe(String(Date.parse("2025-06-01T10:00:00.000Z")));
    expect(await registry().retrieve("6")).toEqual(first);
    expect(first!.specification).toEqual(spec);
    expect(first!.updatedAt).toBe("2025-06-01T10:00:05.123Z");
  });

  test("change state with the new script and still read back", async () => {
    const spec = await writeOldJob("8", "RUNNING", null);
    const before = Date.now();
    await registry().updateState("8", "SUSPENDED", "No device");
    const job = (await registry().retrieve("8"))!;
    expect([job.state, job.status, job.createdAt, job.specification]).toEqual(["SUSPENDED", "No device", "2025-06-01T10:00:00.000Z", spec]);
    expect(Date.parse(job.updatedAt)).toBeGreaterThanOrEqual(before);
  });

  test("a new registration after them takes the next id of the same counter", async () => {
    await writeOldJob("9", "RUNNING", null);
    await redis.admin.set(keys.jobSequence(), "9");
    expect(await registry().register(syncthingSpec("olga"), "olga", null)).toBe("10");
  });
});
