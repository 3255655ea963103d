// The integrated terminal (spec §2 terminal routes, §8): open and activity through the provider
// API against a real Redis and a temporary storage root, and the terminal's runtime hooks
// (observe, shouldRun, podMatches, mutatePod, recheckAfter) with fake runtime objects.

import { beforeEach, describe, expect, test } from "bun:test";
import type { V1Pod } from "@kubernetes/client-node";
import type { AppSettings, PodContext } from "../src/domain/app.ts";
import type { ActivityLeases, AppRuntime, PortAllocator } from "../src/domain/runtime.ts";
import {
  drivePathOf,
  TERMINAL_ANNOTATIONS,
  terminal,
  type TerminalConfig,
  type TerminalFacts,
  terminalFoldersHash,
} from "../src/apps/terminal.ts";
import { buildPod, filesystemVolume } from "../src/reconciler/objects.ts";
import type { FolderAccess, Storage } from "../src/domain/storage.ts";
import { keys } from "../src/store/keys.ts";
import type { Owner } from "../src/domain/owner.ts";
import { type DriveSpec, makeDrive } from "./support/drives.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { alice, providerCall, publicCall, startInstance, token } from "./support/service.ts";

const INACTIVITY_MS = 15 * 60_000;

const { redis, api, root } = await startHarness({ storage: {} });

/** A drive `<root>/<driveId>` with its metadata. */
const drive = (driveId: string, metadata: DriveSpec) => makeDrive(api.context.drives, root, driveId, metadata);

beforeEach(async () => {
  await drive("shared", { owner: "bob", members: { alice: "read" } });
  await drive("project-x", { owner: "bob", members: { alice: "write" } });
  await drive("locked", { owner: "alice", locked: true });
  await drive("bobs", { owner: "bob" });
});

const bob: Owner = { createdBy: "bob", project: null };
/** Every key but the drives' metadata each test starts with. */
const keysBesideDrives = async () => (await redis.admin.keys("*")).filter((key) => !key.startsWith("iapps:drive:"));
const recordKey = keys.record("terminal", alice);
const leaseKey = keys.activityLease("terminal", alice);

interface Opened {
  jobId: string;
  etag: string;
  warnings: string[];
}

async function open(folder: unknown, owner: Owner = alice): Promise<Response> {
  return providerCall(api, "terminal", "open", { principal: owner, folder });
}

async function opened(folder: string, owner: Owner = alice): Promise<Opened> {
  const response = await open(folder, owner);
  const body = await response.json();
  expect({ status: response.status, body }).toMatchObject({ status: 200 });
  return body as Opened;
}

async function activity(owner: Owner = alice): Promise<Response> {
  return providerCall(api, "terminal", "activity", { principal: owner });
}

async function stored(): Promise<{ config: TerminalConfig; etag: string; jobId: string; state: string }> {
  const hash = await redis.admin.hgetall(recordKey);
  return { config: JSON.parse(hash.config!), etag: hash.etag!, jobId: hash.jobId!, state: hash.state! };
}

/** The owner's jobs, as the embedded registry answers them (its hash layout is its own: docs/operations.md). */
async function jobs(owner = alice) {
  const ids = (await redis.admin.keys("iapps:job:*")).map((key) => key.slice("iapps:job:".length));
  const all = await Promise.all(ids.map((id) => api.context.jobs.retrieve(id)));
  return all.filter((j) => j !== null && j.createdBy === owner.createdBy).map((j) => j!);
}

async function expectError(response: Response, status: number, errorCode: string, whyIncludes?: string) {
  const body = (await response.json()) as { statusCode: number; why: string; errorCode: string };
  expect({ status: response.status, errorCode: body.errorCode }).toEqual({ status, errorCode });
  if (whyIncludes) expect(body.why).toContain(whyIncludes);
}

async function pendingTasks(): Promise<string[]> {
  return redis.admin.lrange(keys.queuePending(), 0, -1);
}

/** Empties the task queue, to see what the next call adds. */
async function clearQueue() {
  await redis.admin.del(keys.queuePending(), keys.queueDirty());
}

describe("open (spec §2, §8)", () => {
  test("adds the folder's drive, answers jobId, etag and no warnings, and registers the terminal's job", async () => {
    const response = await open("/home-alice/Documents/thesis");
    expect(response.status).toBe(200);
    const body = (await response.json()) as Opened;
    const record = await stored();
    expect(record.config).toEqual({ folders: ["/home-alice"] });
    expect(body).toEqual({ jobId: record.jobId, etag: record.etag, warnings: [] });
    expect(body.etag).toMatch(/^[0-9a-f]{32}$/);
    expect(response.headers.get("etag")).toBe(`"${body.etag}"`);

    const registered = await jobs();
    expect(registered).toHaveLength(1);
    expect(registered[0]!.id).toBe(body.jobId);
    expect(registered[0]!.specification).toEqual({
      product: { id: "terminal", category: "terminal", provider: "k8s" },
      application: { name: "unknown", version: "unknown" },
      name: "Integrated terminal",
      replicas: 1,
      parameters: {},
      resources: [],
    });
    expect(await pendingTasks()).toEqual(["reconcile:terminal:alice"]);
  });

  test("refreshes the inactivity lease ([apps.terminal] inactivity)", async () => {
    await opened("/home-alice");
    const ttl = await redis.admin.pttl(leaseKey);
    expect(ttl).toBeGreaterThan(INACTIVITY_MS - 10_000);
    expect(ttl).toBeLessThanOrEqual(INACTIVITY_MS);
  });

  test("the folder list is deduplicated by drive and keeps its order; each change gives a new ETag", async () => {
    const first = await opened("/home-alice/a");
    const second = await opened("/project-x/data");
    expect(second.etag).not.toBe(first.etag);
    const third = await opened("/shared");
    expect(third.etag).not.toBe(second.etag);
    const again = await opened("/home-alice/b/c");
    expect((await stored()).config).toEqual({ folders: ["/home-alice", "/project-x", "/shared"] });
    expect(new Set([first.jobId, second.jobId, third.jobId, again.jobId]).size).toBe(1);
    expect(await jobs()).toHaveLength(1);
  });

  test("an unchanged list keeps the ETag (the running pod stays), refreshes the lease and asks for a reconcile", async () => {
    const first = await opened("/home-alice");
    await redis.admin.set(leaseKey, "x", "PX", 60_000);
    await clearQueue();
    const again = await opened("/home-alice/Documents");
    expect(again).toEqual(first);
    expect((await stored()).etag).toBe(first.etag);
    expect(await redis.admin.pttl(leaseKey)).toBeGreaterThan(INACTIVITY_MS - 10_000);
    expect(await pendingTasks()).toEqual(["reconcile:terminal:alice"]);
  });

  test("a drive the owner cannot use is not added; the open succeeds and says why", async () => {
    await opened("/home-alice");
    for (const [folder, reason] of [
      ["/locked/notes", "locked"],
      ["/bobs/secrets", "no access"],
      ["/nowhere/x", "does not exist"],
    ] as const) {
      const answer = await opened(folder);
      expect(answer.warnings).toHaveLength(1);
      expect(answer.warnings[0]).toContain(`/${folder.split("/")[1]}`);
      expect(answer.warnings[0]).toContain(reason);
    }
    expect((await stored()).config).toEqual({ folders: ["/home-alice"] });
  });

  test("a first open on an unusable drive still answers a job (a terminal with no folders, which does not run)", async () => {
    const answer = await opened("/locked");
    expect(answer.warnings).toHaveLength(1);
    const record = await stored();
    expect(record.config).toEqual({ folders: [] });
    expect(answer).toMatchObject({ jobId: record.jobId, etag: record.etag });
    expect(await jobs()).toHaveLength(1);
  });

  test("a read-only drive is added (it is mounted read-only)", async () => {
    const answer = await opened("/shared/papers");
    expect(answer.warnings).toEqual([]);
    expect((await stored()).config).toEqual({ folders: ["/shared"] });
  });

  test("a listed drive that became unusable is taken out, with a warning", async () => {
    await opened("/project-x");
    await opened("/home-alice");
    await drive("project-x", { owner: "bob", members: { alice: "write" }, locked: true });
    const answer = await opened("/shared");
    expect((await stored()).config).toEqual({ folders: ["/home-alice", "/shared"] });
    expect(answer.warnings).toHaveLength(1);
    expect(answer.warnings[0]).toContain("/project-x");
    expect(answer.warnings[0]).toContain("locked");
  });

  test("an idle terminal (lease run out) starts afresh with the drive opened now", async () => {
    await opened("/home-alice");
    await opened("/project-x");
    await redis.admin.del(leaseKey);
    await opened("/shared");
    expect((await stored()).config).toEqual({ folders: ["/shared"] });
    expect(await jobs()).toHaveLength(1);
  });

  test("concurrent opens of different drives: every drive is listed, one job", async () => {
    for (let i = 0; i < 6; i++) await drive(`d${i}`, { owner: "alice" });
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => opened(`/d${i}/work`)));
    expect(new Set(answers.map((a) => a.jobId)).size).toBe(1);
    expect((await stored()).config.folders.sort()).toEqual(["/d0", "/d1", "/d2", "/d3", "/d4", "/d5"]);
    expect(await jobs()).toHaveLength(1);
  });

  test("a record whose job is final gets a new job and a new ETag, also when the list is unchanged", async () => {
    const first = await opened("/home-alice");
    await redis.admin.hset(keys.job(first.jobId), "state", "SUCCESS");
    const again = await opened("/home-alice");
    expect(again.jobId).not.toBe(first.jobId);
    expect(again.etag).not.toBe(first.etag);
    expect(await stored()).toMatchObject({ jobId: again.jobId, etag: again.etag, state: "active", config: { folders: ["/home-alice"] } });
    expect(await jobs()).toHaveLength(2);
  });

  test("owners have their own terminals", async () => {
    const a = await opened("/home-alice");
    const b = await opened("/bobs", bob);
    expect(a.jobId).not.toBe(b.jobId);
    expect(b.warnings).toEqual([]);
    expect(JSON.parse((await redis.admin.hget(keys.record("terminal", bob), "config"))!)).toEqual({ folders: ["/bobs"] });
  });
});

describe("activity (spec §2)", () => {
  test("refreshes the lease and answers {}", async () => {
    const first = await opened("/home-alice");
    await redis.admin.set(leaseKey, "x", "PX", 60_000);
    await clearQueue();
    const response = await activity();
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});
    expect(await redis.admin.pttl(leaseKey)).toBeGreaterThan(INACTIVITY_MS - 10_000);
    // A live lease: nothing else happens.
    expect(await pendingTasks()).toEqual([]);
    expect((await stored()).etag).toBe(first.etag);
  });

  test("after the lease ran out it also asks for a reconcile (the pod comes back), keeping the ETag", async () => {
    const first = await opened("/home-alice");
    await redis.admin.del(leaseKey);
    await clearQueue();
    expect((await activity()).status).toBe(200);
    expect(await redis.admin.pttl(leaseKey)).toBeGreaterThan(INACTIVITY_MS - 10_000);
    expect(await pendingTasks()).toEqual(["reconcile:terminal:alice"]);
    expect((await stored()).etag).toBe(first.etag);
  });

  test("with no terminal: 404 NOT_FOUND, and no lease", async () => {
    await expectError(await activity(), 404, "NOT_FOUND");
    expect(await redis.admin.exists(leaseKey)).toBe(0);
  });
});

describe("the terminal's routes refuse what they should", () => {
  test("a token that is not SERVICE: 403", async () => {
    for (const op of ["open", "activity"]) {
      const response = await api.request(`/ucloud/k8s/iapps/terminal/${op}`, {
        method: "POST",
        headers: { authorization: `Bearer ${await token("alice", "USER")}`, "content-type": "application/json" },
        body: JSON.stringify({ principal: alice, folder: "/home-alice" }),
      });
      await expectError(response, 403, "FORBIDDEN");
    }
    expect(await keysBesideDrives()).toEqual([]);
  });

  test("bad bodies: 400 naming the field", async () => {
    const cases: [string, unknown, string][] = [
      ["open", { principal: alice }, "folder"],
      ["open", { principal: alice, folder: 7 }, "folder"],
      ["open", { principal: alice, folder: "home-alice" }, "folder"],
      ["open", { principal: alice, folder: "/home-alice/../bobs" }, "folder"],
      ["open", { principal: alice, folder: "//" }, "folder"],
      ["open", { folder: "/home-alice" }, "principal"],
      ["open", { principal: { createdBy: "a:b", project: null }, folder: "/home-alice" }, "principal.createdBy"],
      ["activity", {}, "principal"],
      ["activity", { principal: { project: null } }, "principal.createdBy"],
      ["open", "{not json", "JSON"],
    ];
    for (const [op, body, field] of cases) {
      await expectError(await providerCall(api, "terminal", op, body), 400, "INVALID_REQUEST", field);
    }
    expect(await keysBesideDrives()).toEqual([]);
  });

  test("another provider id: 404", async () => {
    const response = await api.request("/ucloud/other/iapps/terminal/open", {
      method: "POST",
      headers: { authorization: `Bearer ${await token("_UCloud", "SERVICE")}`, "content-type": "application/json" },
      body: JSON.stringify({ principal: alice, folder: "/home-alice" }),
    });
    await expectError(response, 404, "NOT_FOUND");
  });

  test("the terminal's configuration routes still answer 404, also with a record", async () => {
    await opened("/home-alice");
    for (const op of ["retrieve", "update", "reset", "restart"]) {
      const body = { principal: alice, config: { folders: [] }, expectedETag: null };
      await expectError(await providerCall(api, "terminal", op, body), 404, "UNKNOWN_APPLICATION");
    }
    await expectError(await publicCall(api, "alice", "GET", "terminal/retrieve"), 404, "UNKNOWN_APPLICATION");
    for (const op of ["update", "reset", "restart"]) {
      await expectError(await publicCall(api, "alice", "POST", `terminal/${op}`, { config: { folders: [] } }), 404, "UNKNOWN_APPLICATION");
    }
    expect((await publicCall(api, "alice", "POST", "terminal/open", { folder: "/home-alice" })).status).toBe(404);
  });

  test("the terminal's configuration routes say it has none, and that it is configured by opening it", async () => {
    const said = "The integrated application 'terminal' has no configuration routes: it is configured by opening it, POST /ucloud/k8s/iapps/terminal/open";
    for (const op of ["retrieve", "update", "reset", "restart"]) {
      await expectError(await providerCall(api, "terminal", op, { principal: alice, config: { folders: [] } }), 404, "UNKNOWN_APPLICATION", said);
    }
    await expectError(await publicCall(api, "alice", "GET", "terminal/retrieve"), 404, "UNKNOWN_APPLICATION", said);
    // An app that is not there at all still says so.
    await expectError(await providerCall(api, "nope", "retrieve", { principal: alice }), 404, "UNKNOWN_APPLICATION", "There is no integrated application called 'nope'");
  });

  test("a disabled terminal: 404 UNKNOWN_APPLICATION", async () => {
    const disabled = startInstance(redis.url, { storage: { root }, apps: { terminal: { enabled: false } } });
    try {
      await expectError(await providerCall(disabled, "terminal", "open", { principal: alice, folder: "/home-alice" }), 404, "UNKNOWN_APPLICATION");
      await expectError(await providerCall(disabled, "terminal", "activity", { principal: alice }), 404, "UNKNOWN_APPLICATION");
    } finally {
      await disabled.close();
    }
  });
});

describe("the inactivity lease in Redis (RedisActivityLeases)", () => {
  test("refresh sets it with PX in the record's hash slot; remaining is PTTL, 0 without one", async () => {
    const { leases } = api.context.runtime;
    expect(leaseKey).toBe("iapps:lease:{terminal:alice}");
    expect(await leases.remaining("terminal", alice)).toBe(0);
    await leases.refresh("terminal", alice, 5_000);
    const left = await leases.remaining("terminal", alice);
    expect(left).toBeGreaterThan(3_000);
    expect(left).toBeLessThanOrEqual(5_000);
    expect(await redis.admin.pttl(leaseKey)).toBeLessThanOrEqual(5_000);
    expect(await leases.remaining("terminal", bob)).toBe(0);
    // One without an expiry (made by hand) is no lease: a terminal must not run for ever.
    await redis.admin.set(leaseKey, "by hand");
    expect(await leases.remaining("terminal", alice)).toBe(0);
  });

  test("it expires by itself", async () => {
    await api.context.runtime.leases.refresh("terminal", alice, 50);
    await eventually(async () => (await redis.admin.exists(leaseKey)) === 0, 2, "Redis expires the lease", 10);
    expect(await api.context.runtime.leases.remaining("terminal", alice)).toBe(0);
    expect(await redis.admin.exists(leaseKey)).toBe(0);
  });
});

describe("the terminal's runtime hooks (spec §8)", () => {
  const settings: AppSettings = { enabled: true, image: "docker.io/library/alpine", image_version: "3", inactivity: INACTIVITY_MS };
  const filesystem = filesystemVolume({ root: "/storage", host_path: "", volume_claim: "" });

  const access = (ucloudPath: string, level: FolderAccess["access"]): FolderAccess => ({
    ucloudPath,
    driveId: ucloudPath.split("/")[1]!,
    internalPath: level === "none" ? "" : `/storage${ucloudPath}`,
    subPath: level === "none" ? "" : ucloudPath.slice(1),
    access: level,
    ...(level === "none" ? { why: "the drive is locked" } : {}),
  });

  function fakeRuntime(leaseMs: number, levels: Record<string, FolderAccess["access"]>): AppRuntime & { asked: string[] } {
    const asked: string[] = [];
    const storage: Storage = {
      access: async (owner, path) => {
        asked.push(`${owner.createdBy} ${path}`);
        return access(path, levels[path] ?? "none");
      },
      accessAll: async () => {
        throw new Error("the terminal asks folder by folder");
      },
      sensitivity: async () => {
        throw new Error("the terminal does not ask for sensitivity");
      },
      serviceFolder: async () => {
        throw new Error("the terminal keeps no folder of its own");
      },
      writeServiceFiles: async () => {
        throw new Error("the terminal writes no files");
      },
      wipeServiceFolder: async () => {
        throw new Error("the terminal deletes nothing");
      },
    };
    const leases: ActivityLeases = {
      refresh: async () => {
        throw new Error("observe must not refresh the lease");
      },
      remaining: async (app, owner) => {
        asked.push(`lease ${app} ${owner.createdBy}`);
        return leaseMs;
      },
    };
    const ports = {} as PortAllocator;
    return { storage, leases, ports, asked };
  }

  function context(folders: FolderAccess[], leaseMs = 60_000): PodContext<TerminalConfig, TerminalFacts> {
    return {
      owner: alice,
      jobId: "42",
      etag: "e1",
      config: { folders: folders.map((f) => f.ucloudPath) },
      settings,
      filesystem,
      facts: { leaseMs, folders },
    };
  }

  const podFor = (ctx: PodContext<TerminalConfig, TerminalFacts>): V1Pod =>
    buildPod(terminal as never, ctx as PodContext<unknown>, "terminal:alice");

  test("observe reads the lease and each folder's access, in configuration order", async () => {
    const runtime = fakeRuntime(1234, { "/home-alice": "write", "/shared": "read" });
    const base = { owner: alice, jobId: "42", etag: "e1", config: { folders: ["/home-alice", "/shared", "/locked"] }, settings, filesystem };
    const facts = await terminal.observe(base, runtime);
    expect(facts.leaseMs).toBe(1234);
    expect(facts.folders.map((f) => [f.ucloudPath, f.access])).toEqual([
      ["/home-alice", "write"],
      ["/shared", "read"],
      ["/locked", "none"],
    ]);
    expect(runtime.asked.sort()).toEqual(["alice /home-alice", "alice /locked", "alice /shared", "lease terminal alice"]);
  });

  test("shouldRun: lease alive, at least one folder, and none unusable (read-only counts)", () => {
    const rw = access("/home-alice", "write");
    const ro = access("/shared", "read");
    const none = access("/locked", "none");
    expect(terminal.shouldRun(context([rw, ro]))).toBe(true);
    expect(terminal.shouldRun(context([ro]))).toBe(true);
    expect(terminal.shouldRun(context([rw, ro], 0))).toBe(false);
    expect(terminal.shouldRun(context([rw, none]))).toBe(false);
    expect(terminal.shouldRun(context([]))).toBe(false);
  });

  test("mutatePod: image, sleep inf, resources, grace period 0, each folder mounted rw or ro at /work/<driveId> from the storage volume", () => {
    const ctx = context([access("/home-alice", "write"), access("/shared", "read")]);
    const pod = podFor(ctx);
    const container = pod.spec!.containers[0]!;
    expect(container.name).toBe("user-job");
    expect(container.image).toBe("docker.io/library/alpine:3");
    expect(container.command).toEqual(["sleep", "inf"]);
    expect(container.resources).toEqual({
      requests: { cpu: "500m", memory: "2000000000" },
      limits: { cpu: "1000m", memory: "2000000000" },
    });
    expect(pod.spec!.terminationGracePeriodSeconds).toBe(0);
    // Spec §10: one volume, the storage root, and a subPath per drive (never a hostPath inside the root).
    expect(pod.spec!.volumes).toEqual([{ name: "ucloud-filesystem", hostPath: { path: "/storage", type: "Directory" } }]);
    expect(container.volumeMounts).toEqual([
      { name: "ucloud-filesystem", mountPath: "/work/home-alice", subPath: "home-alice", readOnly: false },
      { name: "ucloud-filesystem", mountPath: "/work/shared", subPath: "shared", readOnly: true },
    ]);
    expect(container.workingDir).toBe("/work");
    // The generic parts stay.
    expect(pod.metadata!.annotations!["ucloud.dk/iapp-etag"]).toBe("e1");
    expect(pod.metadata!.annotations!["ucloud.dk/iapp-version"]).toBeUndefined();
    expect(pod.metadata!.annotations![TERMINAL_ANNOTATIONS.folders]).toBe(terminalFoldersHash(ctx.facts.folders));
    expect(pod.spec!.restartPolicy).toBe("Never");
  });

  test("podMatches: the pod's mounts fit the folders and their access, else it is replaced", () => {
    const rw = access("/home-alice", "write");
    const ro = access("/shared", "read");
    const pod = podFor(context([rw, ro]));
    expect(terminal.podMatches(pod, context([rw, ro]))).toBe(true);
    // Write permission taken away, granted, a folder more, one less, another order: a new pod.
    expect(terminal.podMatches(pod, context([access("/home-alice", "read"), ro]))).toBe(false);
    expect(terminal.podMatches(pod, context([rw, access("/shared", "write")]))).toBe(false);
    expect(terminal.podMatches(pod, context([rw, ro, access("/project-x", "write")]))).toBe(false);
    expect(terminal.podMatches(pod, context([rw]))).toBe(false);
    expect(terminal.podMatches(pod, context([ro, rw]))).toBe(false);
    // A pod without the annotation (made before it existed) does not fit either.
    const bare = podFor(context([rw, ro]));
    delete bare.metadata!.annotations![TERMINAL_ANNOTATIONS.folders];
    expect(terminal.podMatches(bare, context([rw, ro]))).toBe(false);
  });

  test("recheckAfter is the lease left (the reconciler looks again when it runs out); none without a lease", () => {
    expect(terminal.recheckAfter(context([access("/home-alice", "write")], 90_000))).toBe(90_000);
    expect(terminal.recheckAfter(context([access("/home-alice", "write")], 0))).toBeNull();
  });

  test("nothing to prepare, release or reset; no extra services; service and policy untouched", async () => {
    const runtime = fakeRuntime(1, {});
    const ctx = context([access("/home-alice", "write")]);
    expect(await terminal.prepareStart(ctx, runtime)).toBeNull();
    await terminal.release("42", runtime);
    await terminal.reset(alice, runtime);
    expect(terminal.extraServices(ctx)).toEqual([]);
    const service = { spec: { clusterIP: "None" } };
    terminal.mutateService(service, ctx);
    expect(service).toEqual({ spec: { clusterIP: "None" } });
    expect(runtime.asked).toEqual([]);
  });

  test("drivePathOf: the first segment of a UCloud path", () => {
    expect(drivePathOf("/home-alice/Documents/x")).toBe("/home-alice");
    expect(drivePathOf("/shared")).toBe("/shared");
    expect(drivePathOf("//shared//x")).toBe("/shared");
    expect(drivePathOf("//")).toBeNull();
  });
});
