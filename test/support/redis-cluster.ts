// A real Redis Cluster for tests: six `redis-server --cluster-enabled yes` processes on free
// ports, joined by `redis-cli --cluster create` with one replica per master, with the faults an
// operator meets: a manual failover (`CLUSTER FAILOVER` on a replica) and a master killed.
// With `{ password }` every node requires it (`requirepass`, and `masterauth` for its replica
// links), and `urls` carry it; with `{ user }` too, every node also has that ACL user, same password.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster, Redis } from "ioredis";
import { hashSlot } from "../../src/store/slots.ts";
import { createServer } from "node:net";
import { eventually } from "./eventually.ts";
import { spawnRedisServer } from "./redis-server.ts";

interface Node {
  port: number;
  process: ChildProcess | null;
  dir: string;
}

export interface ClusterOptions {
  /** `requirepass` and `masterauth` of every node (none by default). */
  password?: string;
  /** An ACL user on every node, with all permissions and `password` (needs `password`). */
  user?: string;
}

interface ClusterNodeLine {
  id: string;
  port: number;
  role: "master" | "slave";
  masterId: string | null;
  failed: boolean;
  slots: [number, number][];
}

const NODE_TIMEOUT_MS = 1000;

export class TestRedisCluster {
  private readonly dir = mkdtempSync(join(tmpdir(), "iapps-cluster-"));
  private readonly nodes: Node[] = [];
  /** A cluster client for assertions (single-key commands; see `flushall` and `keys`). */
  admin!: Cluster;

  private constructor(private readonly options: ClusterOptions) {}

  /** Every node's URL: the seed list for `[redis] cluster` (with the default user's password, if any). */
  get urls(): string[] {
    return this.urlsAs("");
  }

  /** Every node's URL with `user`'s credentials (`""`: the default user). */
  urlsAs(user: string): string[] {
    const { password } = this.options;
    const credentials = password === undefined ? "" : `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
    return this.nodes.map((n) => `redis://${credentials}127.0.0.1:${n.port}`);
  }

  /** Connection options for the helper's own clients. */
  private get auth(): { password?: string } {
    return this.options.password === undefined ? {} : { password: this.options.password };
  }

  static async start(options: ClusterOptions = {}): Promise<TestRedisCluster> {
    if (options.user !== undefined && options.password === undefined) throw new Error("a cluster user needs a password");
    const cluster = new TestRedisCluster(options);
    for (let i = 0; i < 6; i++) {
      const dir = join(cluster.dir, String(i));
      mkdirSync(dir);
      cluster.nodes.push({ port: await clusterPort(cluster.nodes.map((n) => n.port)), process: null, dir });
    }
    await Promise.all(cluster.nodes.map((node) => cluster.startNode(node)));
    const auth = options.password === undefined ? [] : ["-a", options.password, "--no-auth-warning"];
    await run("redis-cli", [...auth, "--cluster", "create", ...cluster.nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "1", "--cluster-yes"]);
    await cluster.waitHealthy();
    cluster.admin = new Cluster(
      cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
      { redisOptions: { maxRetriesPerRequest: 3, ...cluster.auth }, retryDelayOnFailover: 100, retryDelayOnClusterDown: 100 },
    );
    cluster.admin.on("error", () => {});
    await cluster.admin.ping();
    return cluster;
  }

  private async startNode(node: Node) {
    const { password, user } = this.options;
    node.process = await spawnRedisServer([
      ...["--port", String(node.port), "--bind", "127.0.0.1", "--dir", node.dir, "--save", "", "--appendonly", "no"],
      ...["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", String(NODE_TIMEOUT_MS)],
      ...(password === undefined ? [] : ["--requirepass", password, "--masterauth", password]),
      ...(user === undefined ? [] : ["--user", user, "on", `>${password}`, "~*", "&*", "+@all"]),
    ]);
  }

  /** One short-lived connection to a node. */
  async onNode<T>(port: number, body: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true, ...this.auth });
    redis.on("error", () => {});
    try {
      await redis.connect();
      return await body(redis);
    } finally {
      redis.disconnect();
    }
  }

  /** The cluster as a live node sees it. */
  async topology(): Promise<ClusterNodeLine[]> {
    for (const node of this.nodes) {
      if (!node.process || node.process.exitCode !== null) continue;
      try {
        const text = (await this.onNode(node.port, (r) => r.cluster("NODES"))) as string;
        return parseNodes(text);
      } catch {
        // try the next node
      }
    }
    throw new Error("no cluster node answers");
  }

  /**
   * Waits until every slot is served, every node agrees the cluster is ok and which nodes are its
   * masters (after a failover, a node may list the old master a moment longer), and every master
   * has a replica in sync.
   */
  async waitHealthy(timeoutMs = 30_000) {
    const healthy = async () => {
      const live = this.nodes.filter((n) => n.process && n.process.exitCode === null);
      const states = await Promise.all(
        live.map((n) => this.onNode(n.port, async (r) => [await r.cluster("INFO"), await r.info("replication"), await r.cluster("NODES")] as const)),
      );
      const mastersSeen = states.map(([, , nodes]) => mastersOf(parseNodes(String(nodes))));
      if (mastersSeen.some((masters) => masters !== mastersSeen[0])) return false;
      const ok = states.every(([info]) => String(info).includes("cluster_state:ok"));
      const replicasInSync = states.filter(([, repl]) => repl.includes("role:slave")).every(([, repl]) => repl.includes("master_link_status:up"));
      const masters = (await this.topology()).filter((n) => n.role === "master" && !n.failed && n.slots.length > 0);
      return ok && replicasInSync && masters.length === 3;
    };
    await eventually(() => healthy().catch(() => false), timeoutMs / 1000, "the test cluster becomes healthy", 100);
  }

  /** The port of the master serving `key`, and of its replica. */
  async nodesOf(key: string): Promise<{ master: number; replica: number | null }> {
    const slot = hashSlot(key);
    const topology = await this.topology();
    const master = topology.find((n) => n.role === "master" && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!master) throw new Error(`no master serves slot ${slot}`);
    const replica = topology.find((n) => n.role === "slave" && n.masterId === master.id && !n.failed);
    return { master: master.port, replica: replica?.port ?? null };
  }

  /** `CLUSTER FAILOVER` on the replica: it takes over from its master (which becomes its replica). */
  async manualFailover(replicaPort: number) {
    await this.onNode(replicaPort, (r) => r.cluster("FAILOVER"));
    await eventually(
      async () => (await this.onNode(replicaPort, (r) => r.role()).catch(() => null))?.[0] === "master",
      15,
      `node ${replicaPort} becomes master`,
      50,
    );
    await this.waitHealthy();
  }

  /** SIGKILL of a node: its replica takes over after the node timeout. */
  async kill(port: number) {
    const node = this.nodes.find((n) => n.port === port);
    const child = node?.process;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    node.process = null;
  }

  /** Waits until `port`'s slots are served by another, live master. */
  async waitTakenOver(port: number, timeoutMs = 30_000) {
    const coveredElsewhere = async () => {
      const topology = await this.topology();
      const live = topology.filter((n) => n.role === "master" && !n.failed && n.port !== port && n.slots.length > 0);
      return live.reduce((sum, n) => sum + n.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0) === 16384;
    };
    await eventually(() => coveredElsewhere().catch(() => false), timeoutMs / 1000, `another master takes over from node ${port}`, 100);
  }

  /** `body` on every live node (or every master), in parallel. */
  async onEveryNode<T>(body: (redis: Redis) => Promise<T>, which: "all" | "masters"): Promise<T[]> {
    const topology = await this.topology();
    const ports = topology.filter((n) => !n.failed && (which === "all" || n.role === "master")).map((n) => n.port);
    return Promise.all(ports.map((port) => this.onNode(port, body)));
  }

  /** FLUSHALL on every master. */
  async flushall() {
    const masters = (await this.topology()).filter((n) => n.role === "master" && !n.failed && n.slots.length > 0);
    await Promise.all(masters.map((m) => this.onNode(m.port, (r) => r.flushall())));
  }

  /** KEYS on every master, merged. */
  async keys(pattern: string): Promise<string[]> {
    const masters = (await this.topology()).filter((n) => n.role === "master" && !n.failed && n.slots.length > 0);
    const lists = await Promise.all(masters.map((m) => this.onNode(m.port, (r) => r.keys(pattern))));
    return lists.flat().sort();
  }

  async close() {
    this.admin?.disconnect();
    for (const node of this.nodes) {
      const child = node.process;
      if (!child || child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The ports of the masters serving slots in `nodes`, as one comparable string. */
function mastersOf(nodes: ClusterNodeLine[]): string {
  return nodes
    .filter((n) => n.role === "master" && !n.failed && n.slots.length > 0)
    .map((n) => n.port)
    .sort((a, b) => a - b)
    .join(",");
}

function parseNodes(text: string): ClusterNodeLine[] {
  return text
    .trim()
    .split("\n")
    .map((line) => {
      const [id, address, flags, master, , , , , ...slots] = line.split(" ");
      const port = Number(address!.split("@")[0]!.split(":").pop());
      return {
        id: id!,
        port,
        role: flags!.includes("master") ? ("master" as const) : ("slave" as const),
        masterId: master === "-" ? null : master!,
        failed: flags!.split(",").some((flag) => flag === "fail" || flag === "fail?"),
        slots: slots
          .filter((s) => !s.startsWith("["))
          .map((s) => {
            const [a, b] = s.split("-");
            return [Number(a), Number(b ?? a)] as [number, number];
          }),
      };
    });
}

/**
 * A port for a cluster node: free, and with its cluster bus port (port + 10000) free too, so
 * below 55536 (an ephemeral port from the OS is often above).
 */
async function clusterPort(taken: number[]): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if (taken.includes(port) || taken.includes(port + 10_000) || taken.includes(port - 10_000)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) return port;
  }
  throw new Error("no free port pair for a cluster node");
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited ${code}:\n${output}`))));
  });
}

