// The terminal's shell sessions (spec §8, UCloud's openTerminalInFolder): the provider route with
// a service token and the user in `UCloud-Username`, the public route with a user token; sessions
// in Redis, bound to one user and folder, capped per user; nothing else made on refusal.

import { beforeEach, describe, expect, test } from "bun:test";
import { keys } from "../src/store/keys.ts";
import { makeDrive } from "./support/drives.ts";
import { startHarness } from "./support/harness.ts";
import { token } from "./support/service.ts";

const { redis, api, root } = await startHarness({ storage: {}, settings: { apps: { terminal: { shell_sessions_per_user: 3 } } } });

beforeEach(async () => {
  await makeDrive(api.context.drives, root, "home-alice", null, ["Documents"]);
  await makeDrive(api.context.drives, root, "bobs", { owner: "bob" });
  await makeDrive(api.context.drives, root, "locked", { owner: "alice", locked: true });
});

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

async function providerOpen(user: string | null, body: unknown, extra: Record<string, string> = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${await token("_UCloud", "SERVICE")}`, "content-type": "application/json", ...extra };
  if (user !== null) headers["ucloud-username"] = b64(user);
  return api.request("/ucloud/k8s/jobs/openTerminalInFolder", { method: "POST", headers, body: JSON.stringify(body) });
}

async function publicOpen(user: string, body: unknown) {
  return api.request("/api/jobs/openTerminalInFolder", {
    method: "POST",
    headers: { authorization: `Bearer ${await token(user)}`, "content-type": "application/json", host: "iapps.example.org" },
    body: JSON.stringify(body),
  });
}

const items = (...folders: string[]) => ({ items: folders.map((folder) => ({ folder })) });

describe("POST /ucloud/<providerId>/jobs/openTerminalInFolder", () => {
  test("creates a session bound to the user and folder, with a random 32-character identifier and the WebSocket base", async () => {
    const response = await providerOpen("alice", items("/home-alice/Documents"));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { responses: { type: string; jobId: string; rank: number; sessionIdentifier: string; domainOverride: string }[] };
    expect(body.responses).toHaveLength(1);
    const [session] = body.responses;
    expect(session).toMatchObject({ type: "shell", jobId: "/home-alice/Documents", rank: 0 });
    expect(session!.sessionIdentifier).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(session!.domainOverride).toMatch(/^ws:\/\//);
    const stored = JSON.parse((await redis.admin.get(keys.shellSession(session!.sessionIdentifier)))!);
    expect(stored).toMatchObject({ owner: { createdBy: "alice", project: null }, folder: "/home-alice/Documents", attached: false });
    expect(await redis.admin.pttl(keys.shellSession(session!.sessionIdentifier))).toBeGreaterThan(3_500_000);
    // Nothing else: no record, no job, no lease.
    expect((await redis.admin.keys("*")).filter((k) => !k.startsWith("iapps:drive:")).sort()).toEqual(
      [keys.shellSession(session!.sessionIdentifier), keys.shellSessionsOf("alice")].sort(),
    );
  });

  test("two sessions never share an identifier", async () => {
    const response = await providerOpen("alice", items("/home-alice", "/home-alice"));
    const body = (await response.json()) as { responses: { sessionIdentifier: string }[] };
    expect(new Set(body.responses.map((r) => r.sessionIdentifier)).size).toBe(2);
  });

  test("a folder that does not exist: 404 Folder cannot be found, nothing created", async () => {
    for (const folder of ["/home-alice/nope", "/no-such-drive/x"]) {
      const response = await providerOpen("alice", items(folder));
      expect(response.status).toBe(404);
      expect(((await response.json()) as { why: string }).why).toBe("Folder cannot be found");
    }
    expect(await redis.admin.keys("iapps:shell*")).toEqual([]);
  });

  test("a drive the user may not use (someone else's, locked): 403, nothing created", async () => {
    for (const folder of ["/bobs", "/locked"]) expect((await providerOpen("alice", items(folder))).status).toBe(403);
    expect(await redis.admin.keys("iapps:shell*")).toEqual([]);
  });

  test("needs a SERVICE token and a valid UCloud-Username", async () => {
    const user = await api.request("/ucloud/k8s/jobs/openTerminalInFolder", {
      method: "POST",
      headers: { authorization: `Bearer ${await token("alice")}`, "ucloud-username": b64("alice") },
      body: JSON.stringify(items("/home-alice")),
    });
    expect(user.status).toBe(403);
    expect((await providerOpen(null, items("/home-alice"))).status).toBe(400);
    expect((await providerOpen("bad user", items("/home-alice"))).status).toBe(400);
    expect((await providerOpen(null, items("/home-alice"), { "ucloud-username": "%%%" })).status).toBe(400);
  });

  test("another provider id: 404", async () => {
    const response = await api.request("/ucloud/other/jobs/openTerminalInFolder", {
      method: "POST",
      headers: { authorization: `Bearer ${await token("_UCloud", "SERVICE")}`, "ucloud-username": b64("alice") },
      body: JSON.stringify(items("/home-alice")),
    });
    expect(response.status).toBe(404);
  });

  test("a user holds at most [apps.terminal] shell_sessions_per_user live sessions", async () => {
    for (let i = 0; i < 3; i++) expect((await providerOpen("alice", items("/home-alice"))).status).toBe(200);
    const refused = await providerOpen("alice", items("/home-alice"));
    expect(refused.status).toBe(403);
    expect(await redis.admin.zcard(keys.shellSessionsOf("alice"))).toBe(3);
    // Another user is not held back by alice's sessions.
    await makeDrive(api.context.drives, root, "home-carol", null);
    expect((await providerOpen("carol", items("/home-carol"))).status).toBe(200);
  });
});

describe("POST /api/jobs/openTerminalInFolder", () => {
  test("a session for the token's user, with its provider", async () => {
    const response = await publicOpen("alice", items("/home-alice/Documents"));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { responses: { providerDomain: string; providerId: string; session: { sessionIdentifier: string; domainOverride: string } }[] };
    expect(body.responses[0]).toMatchObject({ providerId: "k8s", session: { type: "shell", jobId: "/home-alice/Documents" } });
    const stored = JSON.parse((await redis.admin.get(keys.shellSession(body.responses[0]!.session.sessionIdentifier)))!);
    expect(stored.owner.createdBy).toBe("alice");
  });

  test("another user's drive: 403", async () => {
    expect((await publicOpen("carol", items("/home-alice"))).status).toBe(403);
  });
});
