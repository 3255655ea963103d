// The shell's WebSocket under the other runtime adapters (issue 18): Node with tsx
// (src/runtimes/node.ts, @hono/node-server's upgrade) and `deno serve` (src/runtimes/deno.ts,
// hono/deno), each a real process against the harness's Redis and simulator with a worker in
// this process: a session opened through the public route, attached with UCloud's messages, runs
// `echo` in bash. (Bun's is test/shell.test.ts and test/terminal-page.test.ts.)

import { afterAll, beforeEach, describe, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeDrive } from "./support/drives.ts";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { type Child, ROOT, startProcess } from "./support/processes.ts";
import { freePort } from "./support/redis-server.ts";
import { SECRET, token } from "./support/service.ts";

const DENO =
  [join(ROOT, "node_modules/deno/deno"), join(ROOT, "node_modules/@deno/linux-x64-glibc/deno")].find((p) => existsSync(p)) ??
  "no Deno binary in node_modules/deno or node_modules/@deno/linux-x64-glibc: run npm ci";
const NAMESPACE = "iapps-shell-runtimes";

const h = await startHarness({ api: false, simulator: { namespace: NAMESPACE }, storage: {}, settings: { auth: { jwt_secret: SECRET } } });
const denoDir = mkdtempSync(join(tmpdir(), "iapps-deno-"));
afterAll(() => rmSync(denoDir, { recursive: true, force: true }));

beforeEach(async () => {
  await makeDrive(h.startWorker().context.drives, h.root, "home-alice", null, []);
});

// Deno runs with --allow-all: src/base/directory.ts walks drives through /proc/self/fd/<n>/...,
// which Deno's --allow-read/--allow-write refuse ("Requires all access") short of it.
const RUNTIMES: { name: string; todo?: string; start(port: number, env: Record<string, string>): Child }[] = [
  { name: "Node: node --import tsx src/runtimes/node.ts", start: (_, env) => startProcess(["--import", "tsx", "src/runtimes/node.ts"], env, "node") },
  {
    name: "Deno: deno serve src/runtimes/deno.ts",
    start: (port, env) =>
      startProcess(
        ["serve", "--cached-only", "--node-modules-dir=manual", "--allow-all", "--host", "127.0.0.1", "--port", String(port), "src/runtimes/deno.ts"],
        env,
        DENO,
      ),
  },
];

describe("a shell session over each runtime's WebSocket", () => {
  for (const runtime of RUNTIMES) {
    (runtime.todo ? test.todo : test)(`${runtime.name}: open through the public route, attach, echo${runtime.todo ? ` (todo: ${runtime.todo})` : ""}`, async () => {
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      const child = runtime.start(port, {
        IAPPS_REDIS_URL: h.redis.url,
        IAPPS_AUTH_JWT_SECRET: SECRET,
        IAPPS_SERVER_HOST: "127.0.0.1",
        IAPPS_SERVER_PORT: String(port),
        IAPPS_STORAGE_ROOT: h.root,
        IAPPS_KUBERNETES_NAMESPACE: NAMESPACE,
        IAPPS_KUBERNETES_SIMULATOR_PORT: String(h.simulator.port),
        DENO_DIR: denoDir,
        DENO_NO_UPDATE_CHECK: "1",
      });
      const alice = await token("alice");
      const open = () =>
        fetch(`${base}/api/jobs/openTerminalInFolder`, {
          method: "POST",
          headers: { authorization: `Bearer ${alice}`, "content-type": "application/json" },
          body: JSON.stringify({ items: [{ folder: "/home-alice" }] }),
        });
      const response = await eventually(
        async () => {
          if (child.process.exitCode !== null) throw new Error(`the API exited (${child.process.exitCode}):\n${child.output()}`);
          return open().catch(() => null);
        },
        90,
        "the API answering",
      );
      if (response.status !== 200) throw new Error(`${response.status} ${await response.text()}\n${child.output()}`);
      const opened = ((await response.json()) as { responses: { providerId: string; session: { sessionIdentifier: string; domainOverride: string } }[] }).responses[0]!;
      const ws = new WebSocket(`${opened.session.domainOverride}/ucloud/${opened.providerId}/websocket`);
      let output = "";
      ws.addEventListener("message", (event) => {
        const message = JSON.parse(String(event.data)) as { payload: { type: string; data?: string } };
        if (message.payload.type === "data") output += message.payload.data;
      });
      await new Promise((resolve, reject) => {
        ws.addEventListener("open", resolve);
        ws.addEventListener("error", () => reject(new Error(`the WebSocket failed:\n${child.output()}`)));
      });
      const send = (payload: Record<string, unknown>) => ws.send(JSON.stringify({ call: `jobs.provider.${opened.providerId}.shell`, streamId: "s1", payload }));
      send({ type: "initialize", sessionIdentifier: opened.session.sessionIdentifier, cols: 80, rows: 24 });
      const shows = (pattern: RegExp, what: string) =>
        eventually(() => pattern.test(output), 30, what).catch((e: Error) => {
          throw new Error(`${e.message}; it shows ${JSON.stringify(output.slice(-300))}\n${child.output()}`);
        });
      await shows(/\$ $/m, "a prompt");
      send({ type: "input", data: "echo runtime-$((6*7))\n" });
      await shows(/^runtime-42\r?$/m, "the echo");
      ws.close();
    }, 120_000);
  }
});
