// The API under each runtime it supports (issue 7, items 2 and 6): Bun, `deno serve` and Node 20
// with tsx, each a real process on a free port against a real Redis, serving the entry module
// src/runtimes/serve.ts (or main.ts role api on Bun); and SIGTERM during load, where no request in flight
// may be cut off and the process exits 0 with its Redis connections closed.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "./support/eventually.ts";
import { startHarness } from "./support/harness.ts";
import { type Child, ROOT, startProcess } from "./support/processes.ts";
import { freePort } from "./support/redis-server.ts";
import { SECRET, syncthingConfig, token } from "./support/service.ts";

// Deno's first start compiles the module graph into a fresh cache: generous, and bounded. The
// runtimes' tests wait up to 90 s for it, then take a few seconds.
const RUNTIME_TEST_TIMEOUT_MS = 120_000;

/** The native binary (npm's postinstall links it there); the bin.cjs wrapper would not pass signals on. */
const DENO =
  [join(ROOT, "node_modules/deno/deno"), join(ROOT, "node_modules/@deno/linux-x64-glibc/deno")].find((p) => existsSync(p)) ??
  "no Deno binary in node_modules/deno or node_modules/@deno/linux-x64-glibc: run npm ci";
// --allow-all: the storage model reaches drives through /proc/self/fd/<fd>/<name> (no openat in
// Node's API), which Deno grants only with all permissions ("Requires all access").
const DENO_PERMISSIONS = ["--allow-all"];

interface Runtime {
  name: string;
  start(port: number, env: Record<string, string>): Child;
  /** Whether SIGTERM drains and closes Redis (the entry alone under Bun has no one to do it). */
  drains?: false;
}

const RUNTIMES: Runtime[] = [
  { name: "Bun: bun src/main.ts api", start: (_, env) => startProcess(["src/main.ts", "api"], env) },
  { name: "Bun: bun src/runtimes/serve.ts (the default export alone)", start: (_, env) => startProcess(["src/runtimes/serve.ts"], env), drains: false },
  {
    name: "Deno: deno serve src/runtimes/deno.ts",
    start: (port, env) =>
      startProcess(
        // --cached-only and node_modules as they are: nothing may be downloaded.
        ["serve", "--cached-only", "--node-modules-dir=manual", ...DENO_PERMISSIONS, "--host", "127.0.0.1", "--port", String(port), "src/runtimes/deno.ts"],
        env,
        DENO,
      ),
  },
  { name: "Node: node --import tsx src/runtimes/node.ts", start: (_, env) => startProcess(["--import", "tsx", "src/runtimes/node.ts"], env, "node") },
];

const { redis, root: storageRoot } = await startHarness({ api: false, storage: {} });
/** Deno's cache, outside the repository and fresh for this run. */
const denoDir = mkdtempSync(join(tmpdir(), "iapps-deno-"));
afterAll(() => rmSync(denoDir, { recursive: true, force: true }));

function environment(port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    IAPPS_REDIS_URL: redis.url,
    IAPPS_AUTH_JWT_SECRET: SECRET,
    IAPPS_SERVER_HOST: "127.0.0.1",
    IAPPS_SERVER_PORT: String(port),
    IAPPS_STORAGE_ROOT: storageRoot,
    DENO_DIR: denoDir,
    DENO_NO_UPDATE_CHECK: "1",
    ...extra,
  };
}

const serviceToken = token("_UCloud", "SERVICE");

async function call(base: string, op: string, body: unknown): Promise<Response> {
  return fetch(`${base}/ucloud/k8s/iapps/syncthing/${op}`, {
    method: "POST",
    headers: { authorization: `Bearer ${await serviceToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Waits until the process answers a retrieve (or fails with its output). */
async function ready(child: Child, base: string, seconds: number) {
  await eventually(
    async () => {
      if (child.process.exitCode !== null) throw new Error(`the API exited (${child.process.exitCode}):\n${child.output()}`);
      const response = await call(base, "retrieve", { principal: { createdBy: "probe", project: null } }).catch(() => null);
      return response?.status === 200;
    },
    seconds,
    "the API answering",
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${child.output()}`);
  });
}

/** Connections to the test Redis other than the admin's own. */
async function otherClients(): Promise<string[]> {
  const own = await redis.admin.client("ID");
  const list = (await redis.admin.client("LIST")) as string;
  return list
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith(`id=${own} `));
}

describe("the API serves from the same entry module under every runtime (issue 7, item 2)", () => {
  for (const runtime of RUNTIMES) {
    const stops = runtime.drains === false ? "" : "; SIGTERM closes Redis and exits 0";
    test(`${runtime.name}: retrieve, update, a 409 for a stale ETag, retrieve${stops}`, async () => {
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      const child = runtime.start(port, environment(port, { IAPPS_LOG_LEVEL: "info" }));
      await ready(child, base, 90);
      const principal = { createdBy: "alice", project: null };

      const first = await call(base, "retrieve", { principal });
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ etag: "initial", config: { folders: [], devices: [] } });

      const updated = await call(base, "update", { principal, config: syncthingConfig(1), expectedETag: "initial" });
      expect(updated.status).toBe(200);
      const newEtag = updated.headers.get("etag")?.replaceAll('"', "");
      expect(newEtag).toMatch(/^[0-9a-f]{32}$/);

      const stale = await call(base, "update", { principal, config: syncthingConfig(2), expectedETag: "initial" });
      expect(stale.status).toBe(409);
      expect(((await stale.json()) as { errorCode: string }).errorCode).toBe("ETAG_MISMATCH");

      const after = await call(base, "retrieve", { principal });
      expect(await after.json()).toEqual({ etag: newEtag, config: syncthingConfig(1) });

      if (runtime.drains === false) return;
      expect((await otherClients()).length).toBeGreaterThan(0);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      expect(child.output()).toContain("API stopped");
      await eventually(async () => (await otherClients()).length === 0, 10, "the API's Redis connections closed");
    }, RUNTIME_TEST_TIMEOUT_MS);
  }
});

interface Outcome {
  loop: number;
  kind: "update" | "retrieve";
  sentAt: number;
  answeredAt: number;
  /** A complete, valid answer: status 200 and the body the route promises. */
  ok: boolean;
  /** The HTTP status, or null when the request failed below HTTP (refused, reset, cut off). */
  status: number | null;
  detail: string;
}

/** Connects to the port: true when the connection is refused (nothing listens any more). */
async function refused(port: number): Promise<boolean> {
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
  });
}

describe("SIGTERM under load: no request in flight is cut off (issue 7, item 6)", () => {
  const LOOPS = 24;

  for (const runtime of RUNTIMES.filter((r) => r.drains !== false)) {
    test(`${runtime.name}: every request sent before SIGTERM is answered in full, new connections are refused, Redis is closed, exit 0`, async () => {
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      // Requests will wait on a frozen Redis across the SIGTERM: far longer timeouts than that.
      const child = runtime.start(
        port,
        environment(port, { IAPPS_LOG_LEVEL: "info", IAPPS_REDIS_COMMAND_TIMEOUT: "30s", IAPPS_SERVER_SHUTDOWN_TIMEOUT: "60s" }),
      );
      await ready(child, base, 90);

      const outcomes: Outcome[] = [];
      const outstanding = new Set<number>();
      let sigtermAt = Number.POSITIVE_INFINITY;
      let running = true;
      const loop = async (loop: number) => {
        const principal = { createdBy: `load-${loop}`, project: null };
        for (let n = 0; running; n++) {
          const kind = n % 2 === 0 ? "update" : "retrieve";
          const body = kind === "update" ? { principal, config: syncthingConfig(n), expectedETag: null } : { principal };
          const sentAt = performance.now();
          outstanding.add(loop);
          try {
            const response = await call(base, kind, body);
            const text = await response.text();
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {}
            const valid =
              kind === "update"
                ? JSON.stringify(parsed) === "{}" && /^"[0-9a-f]{32}"$/.test(response.headers.get("etag") ?? "")
                : typeof (parsed as { etag?: unknown } | undefined)?.etag === "string";
            outcomes.push({ loop, kind, sentAt, answeredAt: performance.now(), ok: response.status === 200 && valid, status: response.status, detail: text.slice(0, 200) });
          } catch (e) {
            outcomes.push({ loop, kind, sentAt, answeredAt: performance.now(), ok: false, status: null, detail: String(e) });
            return; // refused or cut off: this loop has nowhere to send to any more
          } finally {
            outstanding.delete(loop);
          }
        }
      };

      // A steady stream first, then Redis frozen: every loop's request is now inside the API,
      // waiting on Redis, when SIGTERM arrives. Not a SIGTERM into the running stream: there a
      // request written onto an idle keep-alive connection an instant before the signal, not yet
      // read by the server, can be reset when the server closes that idle connection (seen under
      // Bun and deno serve; see docs/operations.md, Runtimes). That race is HTTP/1.1's, not the drain's.
      const loops = Array.from({ length: LOOPS }, (_, i) => loop(i));
      await eventually(async () => outcomes.length >= 20 * LOOPS, 60, "a steady stream of answers");
      await redis.pause();
      try {
        await eventually(async () => outstanding.size === LOOPS, 10, "every loop with a request outstanding");
        // Requests already written but not yet read by the server would be in flight but not
        // yet the server's: give its (idle) event loop a moment to read them (the server tells
        // nobody when it has).
        await new Promise((r) => setTimeout(r, 300));
        expect(outstanding.size).toBe(LOOPS);

        sigtermAt = performance.now();
        child.kill("SIGTERM");
        await eventually(async () => child.output().includes("API stopping"), 10, "the API saying it stops");
        await eventually(() => refused(port), 10, "new connections refused");
        expect(child.output()).not.toContain("API stopped");
      } finally {
        redis.resume();
      }

      const exitCode = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r("still running after 60 s"), 60_000))]);
      running = false;
      await Promise.all(loops);
      expect(exitCode).toBe(0);
      expect(child.output()).toContain("API stopped");

      const before = outcomes.filter((o) => o.sentAt < sigtermAt);
      const after = outcomes.filter((o) => o.sentAt >= sigtermAt);
      const failedBefore = before.filter((o) => !o.ok);
      expect(failedBefore.map((o) => `${o.kind} #${o.loop}: ${o.status ?? "no answer"} ${o.detail}`)).toEqual([]);
      // The drain was really exercised: each loop had its request in flight across the SIGTERM.
      expect(before.filter((o) => o.answeredAt > sigtermAt).length).toBe(LOOPS);
      // Sent after SIGTERM: answered in full, or refused at connect. Never an HTTP error (a 503
      // would be a request served after Redis was closed), nor a reset: answers given while
      // draining close their connection, so no client sends more on one the server then drops.
      expect(after.filter((o) => !o.ok && !o.detail.includes("ECONNREFUSED")).map((o) => `${o.status ?? "no answer"} ${o.detail}`)).toEqual([]);
      expect(after.filter((o) => !o.ok).length).toBeGreaterThan(0);
      await eventually(async () => (await otherClients()).length === 0, 10, "the API's Redis connections closed");
    }, RUNTIME_TEST_TIMEOUT_MS);
  }
});

describe("SIGTERM waits at most [server] shutdown_timeout (issue 7, item 6)", () => {
  for (const runtime of RUNTIMES.filter((r) => r.drains !== false)) {
    test(`${runtime.name}: a request stuck on a frozen Redis is cut off after the timeout, and the process exits 0`, async () => {
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      const child = runtime.start(
        port,
        environment(port, { IAPPS_LOG_LEVEL: "info", IAPPS_REDIS_COMMAND_TIMEOUT: "60s", IAPPS_SERVER_SHUTDOWN_TIMEOUT: "1s" }),
      );
      await ready(child, base, 90);
      await redis.pause();
      try {
        const principal = { createdBy: "stuck", project: null };
        const stuck = call(base, "update", { principal, config: syncthingConfig(1), expectedETag: null }).then(
          async (response) => `answered ${response.status} ${await response.text()}`,
          (e: Error) => `no answer: ${e.message}`,
        );
        // Give the idle server a moment to read the request; the log below says it did.
        await new Promise((r) => setTimeout(r, 300));
        child.kill("SIGTERM");
        const exitCode = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r("still running after 30 s"), 30_000))]);
        expect(exitCode).toBe(0);
        expect(child.output()).toMatch(/cutting them off","inFlight":1,/);
        expect(await stuck).toStartWith("no answer");
      } finally {
        redis.resume();
      }
    }, RUNTIME_TEST_TIMEOUT_MS);
  }
});
