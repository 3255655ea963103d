// History, rollback and the audit stream (spec §11, issue 16): every change of a record is kept
// as a version written in the record's own MULTI, a rollback makes an old configuration current
// again as a new version, and every change and restart reaches the stream `iapps:audit` through
// the record's outbox, so that a writer dying after its EXEC loses no entry.

import { describe, expect, test } from "bun:test";
import type { AuditEntry } from "../src/domain/record.ts";
import { keys } from "../src/store/keys.ts";
import { relayIndexedOutboxes } from "../src/worker/resync.ts";
import { makeDrive } from "./support/drives.ts";
import { startHarness } from "./support/harness.ts";
import { startProcess } from "./support/processes.ts";
import { providerCall, publicCall, syncthingConfig } from "./support/service.ts";

const h = await startHarness({ storage: {} });
const { redis, api } = h;

const bob = { createdBy: "bob", project: null };
const update = (user: string, n: number, expectedETag: string | null = null) =>
  publicCall(api, user, "POST", "syncthing/update", { config: syncthingConfig(n), expectedETag });
const etagOf = (response: Response) => response.headers.get("etag")!.replaceAll('"', "");
const history = async (user: string, query = "") => {
  const response = await publicCall(api, user, "GET", `syncthing/history${query}`);
  expect(response.status).toBe(200);
  return (await response.json()) as { items: { etag: string; config: unknown; kind: string; changedBy: string; via: string; changedAt: string; requestId: string }[]; next: string | null };
};
const auditEntries = async (): Promise<Record<string, string>[]> =>
  ((await redis.admin.xrange(keys.audit(), "-", "+")) as [string, string[]][]).map(([, flat]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    return fields;
  });

describe("history (spec §11)", () => {
  test("three changes are listed newest first with their configs, kinds, authors, routes, times and request ids", async () => {
    const started = Date.now();
    const first = await update("alice", 1);
    expect(first.status).toBe(200);
    const second = await providerCall(api, "syncthing", "update", { principal: { createdBy: "alice", project: null }, config: syncthingConfig(2) }, { "x-request-id": "req-second" });
    expect(second.status).toBe(200);
    const third = await publicCall(api, "alice", "POST", "syncthing/reset", {});
    expect(third.status).toBe(200);

    const { items, next } = await history("alice");
    expect(next).toBeNull();
    expect(items.map((version) => version.etag)).toEqual([etagOf(third), etagOf(second), etagOf(first)]);
    expect(items.map((version) => version.kind)).toEqual(["reset", "update", "update"]);
    expect(items.map((version) => version.via)).toEqual(["public", "provider", "public"]);
    expect(items.map((version) => version.changedBy)).toEqual(["alice", "alice", "alice"]);
    expect(items[0]!.config).toEqual({ folders: [], devices: [] });
    expect(items[1]!.config).toEqual(syncthingConfig(2));
    expect(items[2]!.config).toEqual(syncthingConfig(1));
    expect(items[1]!.requestId).toBe("req-second");
    expect(items[2]!.requestId).toBe(first.headers.get("x-request-id")!);
    for (const version of items) {
      expect(Date.parse(version.changedAt)).toBeGreaterThanOrEqual(started - 1000);
      expect(Date.parse(version.changedAt)).toBeLessThanOrEqual(Date.now());
    }
    expect(items.map((version) => version.changedAt)).toEqual([...items.map((version) => version.changedAt)].sort().reverse());
  });

  test("another owner's history is empty, as is one with no record", async () => {
    expect((await update("alice", 1)).status).toBe(200);
    expect(await history("bob")).toEqual({ items: [], next: null });
    const provider = await providerCall(api, "syncthing", "history", { principal: bob });
    expect(provider.status).toBe(200);
    expect(await provider.json()).toEqual({ items: [], next: null });
  });

  test("a restart makes no version", async () => {
    expect((await update("alice", 1)).status).toBe(200);
    expect((await publicCall(api, "alice", "POST", "syncthing/restart", {})).status).toBe(200);
    expect((await history("alice")).items.map((version) => version.kind)).toEqual(["update"]);
  });

  test("only [api] history_length versions are kept", async () => {
    const small = h.instance({ api: { history_length: 3 } });
    const etags: string[] = [];
    for (let n = 0; n < 5; n++) {
      const response = await publicCall(small, "alice", "POST", "syncthing/update", { config: syncthingConfig(n) });
      etags.push(etagOf(response));
    }
    const response = await publicCall(small, "alice", "GET", "syncthing/history");
    const { items } = (await response.json()) as { items: { etag: string }[] };
    expect(items.map((version) => version.etag)).toEqual(etags.slice(2).reverse());
    expect(await redis.admin.llen(keys.history("syncthing", { createdBy: "alice", project: null }))).toBe(3);
  });

  test("paging with itemsPerPage and next walks every version once, newest first", async () => {
    const etags: string[] = [];
    for (let n = 0; n < 7; n++) etags.push(etagOf(await update("alice", n)));
    const seen: string[] = [];
    let next: string | null = null;
    let pages = 0;
    do {
      const page = await history("alice", `?itemsPerPage=3${next === null ? "" : `&next=${encodeURIComponent(next)}`}`);
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((version) => version.etag));
      next = page.next;
      pages++;
    } while (next !== null);
    expect(pages).toBe(3);
    expect(seen).toEqual([...etags].reverse());

    // The provider route pages the same way.
    const firstPage = (await (await providerCall(api, "syncthing", "history", { principal: { createdBy: "alice", project: null }, itemsPerPage: 5 })).json()) as {
      items: { etag: string }[];
      next: string;
    };
    const secondPage = (await (await providerCall(api, "syncthing", "history", { principal: { createdBy: "alice", project: null }, itemsPerPage: 5, next: firstPage.next })).json()) as {
      items: { etag: string }[];
      next: string | null;
    };
    expect([...firstPage.items, ...secondPage.items].map((version) => version.etag)).toEqual([...etags].reverse());
    expect(secondPage.next).toBeNull();
  });

  test("itemsPerPage outside 1 to 100 is a 400 that names it", async () => {
    for (const bad of ["0", "101", "x", "1.5"]) {
      const response = await publicCall(api, "alice", "GET", `syncthing/history?itemsPerPage=${bad}`);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { why: string }).why).toContain("itemsPerPage");
    }
    expect((await providerCall(api, "syncthing", "history", { principal: bob, itemsPerPage: 0 })).status).toBe(400);
  });

  test("the terminal has no history or rollback routes: 404, as its other configuration routes", async () => {
    expect((await publicCall(api, "alice", "GET", "terminal/history")).status).toBe(404);
    expect((await providerCall(api, "terminal", "history", { principal: bob })).status).toBe(404);
    expect((await providerCall(api, "terminal", "rollback", { principal: bob, etag: "x", expectedETag: null })).status).toBe(404);
  });
});

describe("rollback (spec §11)", () => {
  test("a rollback to the first version makes a new version with its configuration and a new ETag", async () => {
    const first = etagOf(await update("alice", 1));
    const second = etagOf(await update("alice", 2));
    const rolled = await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: first, expectedETag: second });
    expect(rolled.status).toBe(200);
    const etag = etagOf(rolled);
    expect([first, second]).not.toContain(etag);

    const current = await publicCall(api, "alice", "GET", "syncthing/retrieve");
    expect(await current.json()).toEqual({ etag, config: syncthingConfig(1) });
    const { items } = await history("alice");
    expect(items[0]).toMatchObject({ etag, config: syncthingConfig(1), kind: "rollback", changedBy: "alice", via: "public" });
    expect(items.map((version) => version.etag)).toEqual([etag, second, first]);
  });

  test("through the provider API, with the principal as author", async () => {
    const first = etagOf(await update("bob", 1));
    const second = etagOf(await update("bob", 2));
    const rolled = await providerCall(api, "syncthing", "rollback", { principal: bob, etag: first, expectedETag: second });
    expect(rolled.status).toBe(200);
    expect((await history("bob")).items[0]).toMatchObject({ etag: etagOf(rolled), config: syncthingConfig(1), kind: "rollback", changedBy: "bob", via: "provider" });
  });

  test("a stale expectedETag is a 409, a stale If-Match a 412, and nothing changes", async () => {
    const first = etagOf(await update("alice", 1));
    const second = etagOf(await update("alice", 2));
    const stale = await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: first, expectedETag: first });
    expect(stale.status).toBe(409);
    expect(((await stale.json()) as { errorCode: string }).errorCode).toBe("ETAG_MISMATCH");
    const staleHeader = await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: first, expectedETag: null }, { "if-match": `"${first}"` });
    expect(staleHeader.status).toBe(412);
    expect((await history("alice")).items.map((version) => version.etag)).toEqual([second, first]);
  });

  test("an ETag no kept version has is a 404, and nothing changes", async () => {
    const first = etagOf(await update("alice", 1));
    const unknown = await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: "0123456789abcdef0123456789abcdef", expectedETag: first });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { errorCode: string }).errorCode).toBe("NOT_FOUND");
    // Another owner's version is not kept for this one.
    const bobs = etagOf(await update("bob", 3));
    expect((await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: bobs, expectedETag: first })).status).toBe(404);
    expect((await history("alice")).items.map((version) => version.etag)).toEqual([first]);
  });

  test("the old configuration is admitted again: a folder marked sensitive since is refused", async () => {
    await makeDrive(api.context.drives, h.root, "home-alice", { owner: "alice" }, ["folder-1", "folder-2"]);
    const first = etagOf(await update("alice", 1));
    const second = etagOf(await update("alice", 2));
    await makeDrive(api.context.drives, h.root, "home-alice", { owner: "alice", sensitivity: { "folder-1": "SENSITIVE" } }, ["folder-1", "folder-2"]);
    const refused = await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: first, expectedETag: second });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { errorCode: string }).errorCode).toBe("INVALID_CONFIGURATION");
    expect((await history("alice")).items.map((version) => version.etag)).toEqual([second, first]);
  });
});

describe("the audit stream iapps:audit (spec §11)", () => {
  test("holds updates, resets, rollbacks, terminal opens and restarts, with who, how and which request", async () => {
    const first = etagOf(await update("alice", 1));
    const second = etagOf(await update("alice", 2));
    const rolled = etagOf(await publicCall(api, "alice", "POST", "syncthing/rollback", { etag: first, expectedETag: second }));
    const restart = await providerCall(api, "syncthing", "restart", { principal: { createdBy: "alice", project: null } });
    expect(restart.status).toBe(200);
    const reset = etagOf(await publicCall(api, "alice", "POST", "syncthing/reset", {}));
    await makeDrive(api.context.drives, h.root, "home-bob", { owner: "bob" });
    const opened = await providerCall(api, "terminal", "open", { principal: bob, folder: "/home-bob" });
    expect(opened.status).toBe(200);

    const entries = await auditEntries();
    expect(entries.map(({ app, owner, kind, etag, changedBy, via }) => ({ app, owner, kind, etag, changedBy, via }))).toEqual([
      { app: "syncthing", owner: "alice", kind: "update", etag: first, changedBy: "alice", via: "public" },
      { app: "syncthing", owner: "alice", kind: "update", etag: second, changedBy: "alice", via: "public" },
      { app: "syncthing", owner: "alice", kind: "rollback", etag: rolled, changedBy: "alice", via: "public" },
      { app: "syncthing", owner: "alice", kind: "restart", etag: rolled, changedBy: "alice", via: "provider" },
      { app: "syncthing", owner: "alice", kind: "reset", etag: reset, changedBy: "alice", via: "public" },
      { app: "terminal", owner: "bob", kind: "open", etag: etagOf(opened), changedBy: "bob", via: "provider" },
    ]);
    expect(entries[3]!.requestId).toBe(restart.headers.get("x-request-id")!);
    for (const entry of entries) expect(Number.isNaN(Date.parse(entry.at!))).toBe(false);
    // The terminal's open that changed its folders is also a version of the terminal's record.
    const kept = await redis.admin.lrange(keys.history("terminal", bob), 0, -1);
    expect(kept.map((json) => (JSON.parse(json) as { kind: string }).kind)).toEqual(["open"]);
  });

  test("a writer killed between its EXEC and the relay loses no entry: the resync appends it", async () => {
    const dying = h.instance();
    dying.context.queue.addFor = async () => {
      throw new Error("the writer died before it could relay");
    };
    // Nor within the write's MULTI.
    dying.context.queue.addCommands = () => {
      throw new Error("the writer died before it could relay");
    };
    const response = await publicCall(dying, "alice", "POST", "syncthing/update", { config: syncthingConfig(1) });
    expect(response.status).toBe(200);
    // The relay orders entries by their time (milliseconds): two in the same millisecond have no
    // order to keep, and an update is quick enough here for the next change to share it.
    await Bun.sleep(5);
    const restarted = await publicCall(dying, "alice", "POST", "syncthing/restart", {});
    expect(restarted.status).toBe(200);
    expect(await auditEntries()).toEqual([]);
    // The version is there at once: it was written in the record's MULTI.
    expect((await history("alice")).items.map((version) => version.etag)).toEqual([etagOf(response)]);

    await relayIndexedOutboxes(h.context().commands, h.context().queue);
    expect((await auditEntries()).map(({ kind, etag }) => ({ kind, etag }))).toEqual([
      { kind: "update", etag: etagOf(response) },
      { kind: "restart", etag: etagOf(response) },
    ]);
    expect(await redis.admin.exists(keys.outbox("syncthing", { createdBy: "alice", project: null }))).toBe(0);
    expect(await redis.admin.hlen(keys.outboxIndex())).toBe(0);
  });

  test("bun src/main.ts audit prints entries as JSON lines, filtered by --owner and --app", async () => {
    await update("alice", 1);
    await update("bob", 2);
    const cli = async (...args: string[]) => {
      const child = startProcess(["src/main.ts", "audit", ...args], { IAPPS_REDIS_URL: redis.url });
      expect(await child.exited).toBe(0);
      return child
        .stdout()
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as AuditEntry);
    };
    expect((await cli()).map((entry) => entry.owner)).toEqual(["alice", "bob"]);
    expect((await cli("--owner", "bob")).map((entry) => [entry.owner, entry.kind])).toEqual([["bob", "update"]]);
    expect(await cli("--app", "terminal")).toEqual([]);
  });
});
