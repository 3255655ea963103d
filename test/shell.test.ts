// Interactive shell sessions (spec §8): a session made through the provider route, attached over
// the WebSocket of a real API server (Bun), runs real bash in the simulator's bubblewrap sandbox
// with the pod's mounts; unknown sessions are refused; the sandbox is confined; input refreshes
// the lease and its expiry ends the session with UCloud's message.

import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { Exec } from "@kubernetes/client-node";
import { type Api, createApi } from "../src/runtimes/api.ts";
import { listenWithBun } from "../src/runtimes/bun.ts";
import { MESSAGES } from "../src/shell/session.ts";
import { keys } from "../src/store/keys.ts";
import { makeDrive } from "./support/drives.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { token } from "./support/service.ts";

const h = await startHarness({ simulator: { namespace: "iapps-shell" }, storage: {}, settings: { auth: { jwt_secret: "test-secret-0123456789abcdef" } } });
const { redis, root } = h;
const api: Api = createApi(h.config({ server: { host: "127.0.0.1", port: 0 } }));
const { url, listener } = listenWithBun(api);
afterAll(async () => {
  api.shells.closeAll();
  await listener.drain();
  await api.close();
});
const alice = { createdBy: "alice", project: null };

beforeEach(async () => {
  await makeDrive(api.context.drives, root, "home-alice", null, ["Documents"]);
  await Bun.write(join(root, "home-alice/Documents/notes.txt"), "hello\n");
  h.startWorker();
});

async function openSession(folder = "/home-alice/Documents"): Promise<{ sessionIdentifier: string; domainOverride: string }> {
  const response = await fetch(`${url}/ucloud/k8s/jobs/openTerminalInFolder`, {
    method: "POST",
    headers: { authorization: `Bearer ${await token("_UCloud", "SERVICE")}`, "ucloud-username": btoa("alice"), "content-type": "application/json" },
    body: JSON.stringify({ items: [{ folder }] }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { responses: { sessionIdentifier: string; domainOverride: string }[] }).responses[0]!;
}

/** A UI's socket: what it received, and how it closed. */
class Client {
  readonly messages: { type: string; streamId: string; payload: { type: string; data?: string } }[] = [];
  closed: { code: number; reason: string } | null = null;
  readonly ws: WebSocket;
  readonly opened: Promise<void>;

  constructor(base: string) {
    this.ws = new WebSocket(`${base}/ucloud/k8s/websocket`);
    this.opened = new Promise((resolve) => this.ws.addEventListener("open", () => resolve()));
    this.ws.addEventListener("message", (event) => this.messages.push(JSON.parse(String(event.data))));
    this.ws.addEventListener("close", (event) => (this.closed = { code: event.code, reason: event.reason }));
  }

  send(payload: Record<string, unknown>) {
    this.ws.send(JSON.stringify({ call: "jobs.provider.k8s.shell", streamId: "s1", payload }));
  }

  get output(): string {
    return this.messages.filter((m) => m.payload.type === "data").map((m) => m.payload.data).join("");
  }

  acks(): number {
    return this.messages.filter((m) => m.payload.type === "ack").length;
  }

  async shows(text: string | RegExp, seconds = 20) {
    await eventually(() => (typeof text === "string" ? this.output.includes(text) : text.test(this.output)), seconds, `the terminal shows ${text}; it shows ${JSON.stringify(this.output.slice(-300))}`);
  }
}

async function attached(): Promise<Client> {
  const session = await openSession();
  const client = new Client(session.domainOverride);
  await client.opened;
  client.send({ type: "initialize", sessionIdentifier: session.sessionIdentifier, cols: 80, rows: 24 });
  await eventually(() => client.messages.some((m) => m.payload.type === "initialize"), 10, "initialize is answered");
  return client;
}

describe("a shell session over WebSocket, against the simulator's sandbox", () => {
  test("initialize, then bash in the drive: echo, pwd, ls, and resize; each input and resize acknowledged", async () => {
    const client = await attached();
    expect(client.messages[0]).toEqual({ type: "message", streamId: "s1", payload: { type: "initialize" } });
    await client.shows(MESSAGES.preparing);
    await client.shows(/\$ $/m);
    client.send({ type: "input", data: "echo hel''lo-$((1+1))\n" });
    await client.shows("hello-2");
    client.send({ type: "input", data: "cd /work/home-alice && pwd && ls Documents\n" });
    await client.shows("/work/home-alice");
    await client.shows("notes.txt");
    client.send({ type: "resize", cols: 120, rows: 40 });
    client.send({ type: "input", data: "stty size\n" });
    await client.shows("40 120");
    expect(client.acks()).toBe(4);
    // Writes land in the drive.
    client.send({ type: "input", data: "echo from-shell > Documents/made.txt\n" });
    await eventually(() => existsSync(join(root, "home-alice/Documents/made.txt")), 10, "the file is made in the drive");
    expect(readFileSync(join(root, "home-alice/Documents/made.txt"), "utf8")).toBe("from-shell\n");
    client.ws.close();
  });

  test("when bash exits, the session starts another", async () => {
    const client = await attached();
    await client.shows(/\$ $/m);
    client.send({ type: "input", data: "exit\n" });
    const before = client.output.length;
    await eventually(() => /\$ $/.test(client.output.slice(before)), 20, "a new prompt");
    client.send({ type: "input", data: "echo again-$((2*3))\n" });
    await client.shows("again-6");
    client.ws.close();
  });

  test("an unknown or guessed session identifier is refused and the socket closed", async () => {
    for (const sessionIdentifier of ["A".repeat(32), "not-an-id", ""]) {
      const client = new Client(url.replace(/^http/, "ws"));
      await client.opened;
      client.send({ type: "initialize", sessionIdentifier, cols: 80, rows: 24 });
      await eventually(() => client.closed !== null, 10, "the socket is closed");
      expect(client.messages).toEqual([]);
    }
    expect(await redis.admin.exists(keys.record("terminal", alice))).toBe(0);
  });

  test("input before initialize, or a message over the limit, closes the socket", async () => {
    const early = new Client(url.replace(/^http/, "ws"));
    await early.opened;
    early.send({ type: "input", data: "id\n" });
    await eventually(() => early.closed !== null, 10, "closed");
    const big = new Client(url.replace(/^http/, "ws"));
    await big.opened;
    big.send({ type: "input", data: "x".repeat(100_000) });
    await eventually(() => big.closed !== null, 10, "closed");
    expect(big.closed!.code).toBe(1009);
  });

  test("input refreshes the inactivity lease; its expiry ends the session with UCloud's message", async () => {
    const client = await attached();
    await client.shows(/\$ $/m);
    const lease = keys.activityLease("terminal", alice);
    await redis.admin.pexpire(lease, 60_000);
    client.send({ type: "input", data: "true\n" });
    await eventually(async () => (await redis.admin.pttl(lease)) > 60_000, 10, "the lease is refreshed");
    // A resize is no activity for the lease.
    await redis.admin.pexpire(lease, 60_000);
    client.send({ type: "resize", cols: 100, rows: 30 });
    await Bun.sleep(500);
    expect(await redis.admin.pttl(lease)).toBeLessThanOrEqual(60_000);
    await redis.admin.del(lease);
    await client.shows(MESSAGES.expired);
    await eventually(() => client.closed !== null, 10, "the socket is closed");
  });

  test("a reconnect after the lease ran out: Your session has expired", async () => {
    const session = await openSession();
    const first = new Client(session.domainOverride);
    await first.opened;
    first.send({ type: "initialize", sessionIdentifier: session.sessionIdentifier });
    await first.shows(/\$ $/m);
    first.ws.close();
    await redis.admin.del(keys.activityLease("terminal", alice));
    const again = new Client(session.domainOverride);
    await again.opened;
    again.send({ type: "initialize", sessionIdentifier: session.sessionIdentifier });
    await again.shows(MESSAGES.expired);
  });
});

describe("the simulator's sandbox", () => {
  /** Runs `script` (no TTY) in the terminal's pod through client-node's Exec; its output and status. */
  async function run(script: string): Promise<{ out: string; status: string }> {
    const client = await attached();
    await client.shows(/\$ $/m);
    client.ws.close();
    const record = await redis.admin.hgetall(keys.record("terminal", alice));
    const stdout = new PassThrough();
    let out = "";
    stdout.on("data", (chunk) => (out += chunk));
    const kubeConfig = h.kubernetes["kubeConfig" as keyof typeof h.kubernetes] as never;
    const status = await new Promise<string>((resolve, reject) => {
      new Exec(kubeConfig)
        .exec("iapps-shell", `j-${record.jobId}-job-0`, "user-job", ["/bin/sh", "-c", script], stdout, stdout, null, false, (s) => resolve(s.status ?? ""))
        .catch(reject);
    });
    return { out, status };
  }

  test("runs as an unprivileged user, cannot write outside its mounts, and has no network", async () => {
    const { out } = await run(
      "id -u; touch /usr/x 2>/dev/null || echo no-usr; touch /etc/x 2>/dev/null || echo no-etc; touch / 2>/dev/null; mkdir /x 2>/dev/null || echo no-root; " +
        "ls /sys/class/net 2>/dev/null | tr '\\n' ' '; echo; (exec 3<>/dev/tcp/1.1.1.1/80) 2>/dev/null || echo no-net; bash -c 'exec 3<>/dev/tcp/127.0.0.1/" +
        new URL(url).port +
        "' 2>/dev/null || echo no-local",
    );
    expect(out).toContain("1000\n");
    for (const refused of ["no-usr", "no-etc", "no-root", "no-local"]) expect(out).toContain(refused);
  });

  test("a drive mounted read-only cannot be written", async () => {
    await makeDrive(api.context.drives, root, "shared", { owner: "bob", members: { alice: "read" } });
    await openSession("/shared");
    const { out } = await run("ls /work; touch /work/shared/x 2>/dev/null || echo no-write; touch /work/home-alice/ok && echo wrote");
    expect(out).toContain("no-write");
  });
});
