// One way to run the service for a test file: Redis (a TestRedis, or a six-node TestRedisCluster)
// and, as the file asks, the embedded Kubernetes simulator, a temporary storage root, an API
// instance, and reconciling workers, in this process or each in a process of its own. A file
// starts it at its top level, before it declares its tests:
//
//   const h = await startHarness({ simulator: { namespace: "iapps-test" }, storage: { folders: ["home-alice/A"] } });
//   const { redis, api, kubernetes } = h;
//
// and the harness registers the file's hooks: before each test Redis and the instances' caches
// are emptied, the simulator's pods deleted and the storage root made anew (`resetEach: false`
// leaves that to the file); after each test the workers and child processes the test started are
// stopped (those of a `beforeAll` live on); after the file, everything.
//
// It also sets the file's default test timeout. Bun keeps `setDefaultTimeout` per file, and the
// one a preload sets reaches only the first file of a run (oven-sh/bun#43787); the harness runs
// in every file that starts real processes, before its tests are declared.

import { afterAll, afterEach, beforeEach, setDefaultTimeout } from "bun:test";
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubernetesGateway } from "../../src/kubernetes/gateway.ts";
import { type RunningSimulator, startSimulator } from "../../src/kubernetes/simulator.ts";
import { type ContextOptions, createContext, type ServiceContext } from "../../src/service/context.ts";
import { type Config, resolveConfig } from "../../src/settings/config.ts";
import { type ReconcilingWorker, startReconcilingWorker } from "../../src/worker/start.ts";
import { type Child, killAll, runningChildren, startProcess } from "./processes.ts";
import { type ClusterOptions, TestRedisCluster } from "./redis-cluster.ts";
import { redisEnvironment, TestRedis } from "./redis-server.ts";
import { type Instance, type InstanceOptions, startInstance } from "./service.ts";

/**
 * A test's budget unless it names its own: real processes on a shared machine, so generous that
 * a slow moment is no failure (nor does bun kill a test's child processes for overrunning). The
 * longest tests take a few seconds.
 */
export const TEST_TIMEOUT_MS = 30_000;

/** Configuration as a file would give it (`resolveConfig`'s input). */
export type Settings = Record<string, unknown>;

export interface HarnessOptions {
  /** One redis-server (the default; `persistent`: fsynced on every write, survives a SIGKILL), or a Redis Cluster. */
  redis?: { persistent?: boolean } | { cluster: ClusterOptions };
  /** Start the embedded Kubernetes simulator; workers and `kubernetes` work in `namespace`. */
  simulator?: { namespace: string; startDelayMs?: number };
  /** A temporary `[storage] root`, with these folders in it (made anew before each test). */
  storage?: { folders?: string[] };
  /** Settings of the API instance, of `instance()` and of the workers, over the harness's own (Redis, storage, simulator). A function is called once the harness has started (for values known only then). */
  settings?: Settings | (() => Settings);
  /** Start the API instance `api` (default true). */
  api?: boolean;
  /** Reset Redis, caches, pods and storage before each test (default true). */
  resetEach?: boolean;
}

/** A reconciling worker in this process, with its own service context. */
export interface RunningWorker {
  worker: ReconcilingWorker;
  context: ServiceContext;
  /** Stops the worker and closes its context (also done after each test). */
  stop(): Promise<void>;
}

const DEFAULT_START_DELAY_MS = 20;

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  setDefaultTimeout(TEST_TIMEOUT_MS);
  const harness = new Harness(options);
  await harness.start();
  afterAll(() => harness.stop());
  // What a beforeAll started lives on; what a test started is stopped after it.
  let before = { workers: new Set<RunningWorker>(), children: new Set<Child>() };
  beforeEach(async () => {
    if (options.resetEach !== false) await harness.reset();
    before = { workers: new Set(harness.runningWorkers()), children: new Set(runningChildren()) };
  });
  afterEach(() =>
    harness.stopWorkers(
      harness.runningWorkers().filter((worker) => !before.workers.has(worker)),
      runningChildren().filter((child) => !before.children.has(child)),
    ),
  );
  return harness;
}

export class Harness {
  private server: TestRedis | null = null;
  private redisCluster: TestRedisCluster | null = null;
  private runningSimulator: RunningSimulator | null = null;
  private gateway: KubernetesGateway | null = null;
  private storageRoot: string | null = null;
  private apiInstance: Instance | null = null;
  private fileSettings: Settings = {};
  private readonly instances = new Set<Instance>();
  private readonly contexts = new Set<ServiceContext>();
  private readonly workers = new Set<RunningWorker>();

  constructor(private readonly options: HarnessOptions) {}

  /** The redis-server, with an admin connection for assertions and faults. */
  get redis(): TestRedis {
    return this.server ?? missing("a redis-server", "redis");
  }

  get cluster(): TestRedisCluster {
    return this.redisCluster ?? missing("a Redis Cluster", "redis: { cluster }");
  }

  get simulator(): RunningSimulator {
    return this.runningSimulator ?? missing("the simulator", "simulator");
  }

  /** A gateway to the simulator, in the harness's namespace: what the tests look at pods with. */
  get kubernetes(): KubernetesGateway {
    return this.gateway ?? missing("the simulator", "simulator");
  }

  /** The storage root. */
  get root(): string {
    return this.storageRoot ?? missing("a storage root", "storage");
  }

  /** The API instance (requests through the fetch handler the server runs). */
  get api(): Instance {
    return this.apiInstance ?? missing("an API instance", "api");
  }

  async start() {
    try {
      await this.startParts();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private async startParts() {
    const { redis, simulator, storage } = this.options;
    if (redis && "cluster" in redis) this.redisCluster = await TestRedisCluster.start(redis.cluster);
    else this.server = await TestRedis.start({ persistent: redis?.persistent ?? false });
    if (simulator) {
      this.runningSimulator = await startSimulator({ port: 0, startDelayMs: simulator.startDelayMs ?? DEFAULT_START_DELAY_MS });
      this.gateway = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: simulator.namespace, simulatorUrl: this.runningSimulator.url });
    }
    if (storage) {
      // Its real path: the storage code compares paths it resolved without following links.
      this.storageRoot = realpathSync(mkdtempSync(join(tmpdir(), "iapps-test-storage-")));
      this.makeFolders();
    }
    this.fileSettings = typeof this.options.settings === "function" ? this.options.settings() : (this.options.settings ?? {});
    if (this.options.api !== false) this.apiInstance = this.instance();
  }

  /** The harness's settings (Redis, storage root, simulator), the file's over them, and `extra` over both. */
  settings(extra: Settings = {}): Settings {
    const own: Settings = {};
    if (this.server) own.redis = { url: this.server.url };
    if (this.storageRoot) own.storage = { root: this.storageRoot };
    const { simulator } = this.options;
    if (simulator && this.runningSimulator) {
      own.kubernetes = {
        mode: "embedded",
        namespace: simulator.namespace,
        simulator_port: this.runningSimulator.port,
        simulator_start_delay: `${simulator.startDelayMs ?? DEFAULT_START_DELAY_MS}ms`,
      };
    }
    return merged(merged(own, this.fileSettings), extra);
  }

  /** `settings(extra)` resolved, as a worker loads it (in cluster mode, with the cluster's seeds). */
  config(extra: Settings = {}): Config {
    return resolveConfig(this.settings(extra), { source: "test", environment: redisEnvironment() });
  }

  /** Another API instance with `settings(extra)`; closed after the file if the test does not close it. */
  instance(extra: Settings = {}, options: InstanceOptions = {}): Instance {
    const url = this.server?.url ?? this.cluster.urls[0]!;
    const instance = startInstance(url, this.settings(extra), options);
    this.instances.add(instance);
    return {
      ...instance,
      close: async () => {
        this.instances.delete(instance);
        await instance.close();
      },
    };
  }

  /** A service context with `config(extra)`, by default without a record cache (a worker's); closed with the harness unless the test closes it. */
  context(extra: Settings = {}, options: ContextOptions = { cache: false }): ServiceContext {
    const context = createContext(this.config(extra), options);
    this.contexts.add(context);
    return {
      ...context,
      close: async () => {
        this.contexts.delete(context);
        await context.close();
      },
    };
  }

  /** A reconciling worker in this process with `settings(extra)`, watching the simulator (or what `simulatorUrl` names). */
  startWorker(extra: Settings = {}, simulatorUrl = this.simulator.url): RunningWorker {
    const context = createContext(this.config(extra), { cache: false });
    const worker = startReconcilingWorker(context, simulatorUrl);
    const running: RunningWorker = {
      worker,
      context,
      stop: async () => {
        if (!this.workers.delete(running)) return;
        await worker.stop();
        await context.close();
      },
    };
    this.workers.add(running);
    return running;
  }

  /**
   * A reconciling worker in a process of its own (test/support/reconciler-process.ts), on the
   * harness's Redis, storage root and simulator; `env` adds IAPPS_* (and TEST_*) variables.
   */
  startWorkerProcess(env: Record<string, string> = {}): Child {
    const own: Record<string, string> = { IAPPS_REDIS_URL: this.redis.url };
    if (this.storageRoot) own.IAPPS_STORAGE_ROOT = this.storageRoot;
    if (this.options.simulator && this.runningSimulator) {
      own.IAPPS_KUBERNETES_NAMESPACE = this.options.simulator.namespace;
      own.IAPPS_KUBERNETES_SIMULATOR_PORT = String(this.runningSimulator.port);
      own.TEST_SIMULATOR_URL = this.runningSimulator.url;
    }
    return startProcess(["test/support/reconciler-process.ts"], { ...own, ...env });
  }

  /** Empty Redis, the instances' caches, the simulator's pods and the storage root. */
  async reset() {
    if (this.server) {
      this.server.resume();
      await this.server.admin.flushall();
    }
    if (this.redisCluster) {
      await this.redisCluster.waitHealthy();
      await this.redisCluster.flushall();
    }
    for (const instance of this.instances) instance.forgetCache();
    if (this.gateway) for (const pod of await this.gateway.listPods("ucloud.dk/iapp-name")) await this.gateway.deletePod(pod.metadata!.name!);
    if (this.storageRoot) {
      rmSync(this.storageRoot, { recursive: true, force: true });
      this.makeFolders();
    }
  }

  /** The workers in this process still running. */
  runningWorkers(): RunningWorker[] {
    return [...this.workers];
  }

  /** Stops `workers` and kills `children` (by default all of them). */
  async stopWorkers(workers: RunningWorker[] = this.runningWorkers(), children: Child[] = runningChildren()) {
    for (const worker of workers) await worker.stop();
    await killAll(children);
  }

  async stop() {
    await this.stopWorkers();
    for (const instance of [...this.instances]) await instance.close();
    this.instances.clear();
    for (const context of [...this.contexts]) await context.close();
    this.contexts.clear();
    await this.runningSimulator?.stop();
    await this.server?.close();
    await this.redisCluster?.close();
    if (this.storageRoot) rmSync(this.storageRoot, { recursive: true, force: true });
  }

  private makeFolders() {
    const root = this.storageRoot!;
    mkdirSync(root, { recursive: true });
    for (const folder of this.options.storage?.folders ?? []) mkdirSync(join(root, folder), { recursive: true });
  }
}

function missing(what: string, option: string): never {
  throw new Error(`the harness was started without ${what} (its option ${option})`);
}

const isObject = (value: unknown): value is Settings => typeof value === "object" && value !== null && !Array.isArray(value);

/** `over` over `base`: sections merge key by key, anything else (arrays too) is replaced. */
function merged(base: Settings, over: Settings): Settings {
  const result: Settings = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const below = result[key];
    result[key] = isObject(below) && isObject(value) ? merged(below, value) : value;
  }
  return result;
}
