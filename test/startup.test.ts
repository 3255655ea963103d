// A role that cannot start says so in one line and exits (issue 17, "an operator's first day"):
// `bun src/main.ts <role>` as a real process, with a port the test holds, or a configuration no
// part of the role can run with. The line names the cause and the setting to change; no stack
// trace; the exit code is 2 within seconds; and nothing started before the configuration was
// checked whole.

import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createServer, type Server } from "node:net";
import { BUN, ROOT } from "./support/processes.ts";
import { freePort } from "./support/redis-server.ts";

/** A role that fails to start exits well within this; one that wrongly starts is killed after it. */
const WITHIN_MS = 10_000;

const held: Server[] = [];
afterEach(async () => {
  await Promise.all(held.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A port this test listens on, as another program would. */
async function busyPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  held.push(server);
  return (server.address() as { port: number }).port;
}

/**
 * `bun src/main.ts <args>` with the repository's config.toml and `variables`, none of this
 * process's IAPPS_ variables. Redis is never reached: what is checked fails before it matters.
 */
function start(args: string[], variables: Record<string, string>) {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("IAPPS_")));
  const environment = { ...inherited, IAPPS_LOG_LEVEL: "warn", IAPPS_REDIS_URL: "redis://127.0.0.1:1", IAPPS_SERVER_HOST: "127.0.0.1", ...variables };
  const startedAt = Date.now();
  const result = spawnSync(BUN, ["src/main.ts", ...args], { cwd: ROOT, env: environment, encoding: "utf8", timeout: WITHIN_MS });
  return { status: result.status, stderr: result.stderr, stdout: result.stdout, ms: Date.now() - startedAt };
}

/** Failed at once, with `line` as the only thing on stderr, and no stack trace. */
function expectOneLineFailure(result: ReturnType<typeof start>, line: string) {
  expect(result.status).toBe(2);
  expect(result.ms).toBeLessThan(WITHIN_MS);
  expect(result.stderr.trim()).toBe(line);
  expect(result.stderr).not.toContain("Failed to start server");
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

describe("a port in use: one line naming the port and its setting, exit 2", () => {
  test("the simulator's port (role kube-sim)", async () => {
    const port = await busyPort();
    const result = start(["kube-sim"], { IAPPS_KUBERNETES_SIMULATOR_PORT: String(port) });
    expectOneLineFailure(result, `Kubernetes simulator: port ${port} is in use: set IAPPS_KUBERNETES_SIMULATOR_PORT or [kubernetes] simulator_port`);
  });

  test("the simulator's port under role all: the API never starts", async () => {
    const port = await busyPort();
    const result = start(["all"], { IAPPS_KUBERNETES_SIMULATOR_PORT: String(port), IAPPS_SERVER_PORT: String(await freePort()) });
    expectOneLineFailure(result, `Kubernetes simulator: port ${port} is in use: set IAPPS_KUBERNETES_SIMULATOR_PORT or [kubernetes] simulator_port`);
  });

  test("the API's port (role api)", async () => {
    const port = await busyPort();
    const result = start(["api"], { IAPPS_SERVER_PORT: String(port) });
    expectOneLineFailure(result, `API: port ${port} is in use: set IAPPS_SERVER_PORT or [server] port`);
  });

  test("the API's port under role all, after the simulator started", async () => {
    const port = await busyPort();
    const result = start(["all"], { IAPPS_SERVER_PORT: String(port), IAPPS_KUBERNETES_SIMULATOR_PORT: "0" });
    expectOneLineFailure(result, `API: port ${port} is in use: set IAPPS_SERVER_PORT or [server] port`);
  });

  test("the worker's metrics port (role worker)", async () => {
    const port = await busyPort();
    const result = start(["worker"], { IAPPS_WORKER_METRICS_PORT: String(port) });
    expectOneLineFailure(result, `worker metrics: port ${port} is in use: set IAPPS_WORKER_METRICS_PORT or [worker] metrics_port`);
  });

  test("a host that is not this machine's names [server] host", async () => {
    const result = start(["api"], { IAPPS_SERVER_HOST: "192.0.2.1", IAPPS_SERVER_PORT: "0" });
    expectOneLineFailure(result, "API: 192.0.2.1 is not an address of this machine: set IAPPS_SERVER_HOST or [server] host");
  });
});

describe("the configuration is checked whole before any part of a role starts", () => {
  test("--env production without a JWT key: role all fails before its simulator listens", async () => {
    // Were the simulator started first, it would fail on this port instead, and say so.
    const simulatorPort = await busyPort();
    const result = start(["all", "--env", "production"], { IAPPS_KUBERNETES_SIMULATOR_PORT: String(simulatorPort), IAPPS_LOG_LEVEL: "info" });
    expect(result.status).toBe(2);
    expect(result.ms).toBeLessThan(WITHIN_MS);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("no JWT key");
    expect(result.stderr).toContain("IAPPS_AUTH_JWT_PUBLIC_KEY or [auth] jwt_public_key");
    expect(result.stderr).toContain("IAPPS_AUTH_JWT_SECRET or [auth] jwt_secret");
    expect(result.stderr).not.toContain("listening");
    expect(result.stderr).not.toContain(String(simulatorPort));
  });

  test("--env production without a JWT key: role api", () => {
    const result = start(["api", "--env", "production"], { IAPPS_SERVER_PORT: "0" });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("no JWT key");
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });

  test("the API and the simulator on one port under role all", () => {
    const result = start(["all"], { IAPPS_SERVER_PORT: "6999", IAPPS_KUBERNETES_SIMULATOR_PORT: "6999" });
    expectOneLineFailure(
      result,
      "the API and the Kubernetes simulator both want port 6999: set IAPPS_SERVER_PORT or [server] port, or IAPPS_KUBERNETES_SIMULATOR_PORT or [kubernetes] simulator_port",
    );
  });

  test("a worker in kubeconfig mode without a readable kubeconfig", () => {
    const result = start(["worker"], { IAPPS_KUBERNETES_MODE: "kubeconfig", IAPPS_KUBERNETES_KUBECONFIG: "/nonexistent/kubeconfig" });
    expect(result.status).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("/nonexistent/kubeconfig");
    expect(result.stderr).toContain("IAPPS_KUBERNETES_KUBECONFIG or [kubernetes] kubeconfig");
  });

  test("a worker in embedded mode with simulator_port 0 (it cannot find the simulator)", () => {
    const result = start(["worker"], { IAPPS_KUBERNETES_SIMULATOR_PORT: "0" });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("IAPPS_KUBERNETES_SIMULATOR_PORT or [kubernetes] simulator_port");
  });
});
