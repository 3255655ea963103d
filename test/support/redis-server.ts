// A real redis-server for tests: started on a free port in a temporary directory, stopped and
// started again on the same port for outage tests, and killed by its PID at the end.
//
// With IAPPS_TEST_REDIS=cluster, `TestRedis.start()` starts a six-node Redis Cluster instead
// (test/support/redis-cluster.ts), and sets IAPPS_REDIS_CLUSTER for the test's configurations and
// child processes: the store, cache and queue suites run against it (see .ci/run). Tests of
// single-server faults (stopping or freezing the server) are skipped there (`CLUSTER_MODE`).

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { eventually } from "./eventually.ts";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The suites run against a Redis Cluster (IAPPS_TEST_REDIS=cluster). */
export const CLUSTER_MODE = process.env.IAPPS_TEST_REDIS === "cluster";

/** Starts `redis-server` with `args` and waits until it accepts connections (10 s at most). */
export async function spawnRedisServer(args: string[]): Promise<ChildProcess> {
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  return eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`redis-server ${args.join(" ")} exited at start`);
      return output.includes("Ready to accept connections") && child;
    },
    10,
    "redis-server starts",
    20,
  ).catch((e: Error) => {
    throw new Error(`${e.message}:\n${output}`);
  });
}

/** The environment a test's configuration resolves with: the cluster's seed nodes in cluster mode. */
export function redisEnvironment(): Record<string, string | undefined> {
  return CLUSTER_MODE ? { IAPPS_REDIS_CLUSTER: process.env.IAPPS_REDIS_CLUSTER } : {};
}

export class TestRedis {
  private process: ChildProcess | null = null;
  private readonly dir = mkdtempSync(join(tmpdir(), "iapps-redis-"));
  /** An admin connection for assertions and fault injection (CLIENT KILL, FLUSHALL, ...). */
  admin!: Redis;

  private constructor(
    readonly port: number,
    /** Append-only file fsynced on every write: what was acknowledged survives a SIGKILL. */
    private readonly persistent: boolean,
  ) {}

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(options: { persistent?: boolean } = {}): Promise<TestRedis> {
    if (CLUSTER_MODE) return TestRedis.startCluster();
    const redis = new TestRedis(await freePort(), options.persistent ?? false);
    await redis.startServer();
    redis.admin = new Redis(redis.url, { maxRetriesPerRequest: 3, retryStrategy: (n) => Math.min(n * 50, 500) });
    redis.admin.on("error", () => {});
    await redis.admin.ping();
    return redis;
  }

  private clusterClose: (() => Promise<void>) | null = null;

  /**
   * A cluster that looks like one server to the tests: `url` is a seed node, `admin` a cluster
   * client whose FLUSHALL, KEYS, INFO and CLIENT go to every node and merge what they answer.
   */
  private static async startCluster(): Promise<TestRedis> {
    const { TestRedisCluster } = await import("./redis-cluster.ts");
    const cluster = await TestRedisCluster.start();
    process.env.IAPPS_REDIS_CLUSTER = JSON.stringify(cluster.urls);
    const redis = new TestRedis(Number(new URL(cluster.urls[0]!).port), false);
    const admin = cluster.admin as unknown as Redis & Record<string, unknown>;
    admin.flushall = (() => cluster.flushall().then(() => "OK")) as never;
    admin.keys = ((pattern: string) => cluster.keys(pattern)) as never;
    admin.info = ((section: string) => cluster.onEveryNode((node) => node.info(section), "masters").then((all) => all.join("\n"))) as never;
    admin.client = ((...args: string[]) =>
      cluster.onEveryNode((node) => node.call("CLIENT", ...args), "all").then((all) => all.reduce((n: number, k) => n + Number(k), 0))) as never;
    redis.admin = admin;
    redis.clusterClose = () => cluster.close();
    return redis;
  }

  /** Starts redis-server again (after `stop`), on the same port. */
  async startServer() {
    this.process = await spawnRedisServer([
      ...["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--dir", this.dir],
      ...(this.persistent ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
    ]);
  }

  /** Kills the server (SIGKILL: an outage, not a shutdown) and waits until it is gone. */
  async stop() {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    this.process = null;
  }

  /**
   * Freezes the server (SIGSTOP): connections stay open, nothing answers. Resolves once the
   * kernel shows it stopped: a signal is delivered asynchronously, and a command sent in between
   * would still be answered.
   */
  async pause() {
    const pid = this.process?.pid;
    this.process?.kill("SIGSTOP");
    if (pid === undefined) return;
    await eventually(
      () => {
        const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
        return state === "T" || state === "t";
      },
      2,
      "redis-server stops on SIGSTOP",
      2,
    );
  }

  resume() {
    this.process?.kill("SIGCONT");
  }

  async close() {
    if (this.clusterClose) return this.clusterClose();
    this.resume();
    this.admin?.disconnect();
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
