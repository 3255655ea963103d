// The entry point: `bun src/main.ts <role> [--config FILE] [--env NAME]` (without them:
// IAPPS_CONFIG, else ./config.toml, and IAPPS_ENV).
//
//   api       the HTTP API (run as many replicas as you like)
//   worker    the task worker: the reconciler, the pod watch and the periodic resync
//   kube-sim  the embedded Kubernetes API simulator alone
//   all       everything a newcomer needs in one process: simulator (embedded mode), API, worker
//   queue    operator commands: `queue stats | dead | replay <id> | purge-dead`
//   audit    the audit stream as JSON lines: `audit [--owner NAME] [--app APP] [--follow]`
//   drive    operator commands for drives' metadata: `drive list | show | create | share | lock | mark | import ...`
//   config   print the resolved configuration (tokens and URL passwords hidden), or one value: `config redis.url`
//   token    mint a development token with [auth] jwt_secret: `token <username> [USER|ADMIN|SERVICE]`
//
// A long-running role checks its whole configuration before any part of it starts, and a part that
// cannot start (a port in use) ends the process with one line saying why and which setting to
// change (src/runtimes/preflight.ts); exit code 2, as for a configuration that does not parse.
// Long-running roles stop on SIGTERM or SIGINT (src/runtimes/signals.ts), their parts in order.
// Imports hono/jwt, src/runtimes (the API, its Bun listener, signals), src/cli, src/http/ops-listener.ts,
// src/worker/start.ts, src/service (context, health), src/kubernetes/simulator.ts, src/settings
// and src/base.

import { sign } from "hono/jwt";
import { type Api, createApi, stopApi } from "./runtimes/api.ts";
import { AuditCommandError, auditCommand } from "./cli/audit.ts";
import { DriveCommandError, driveCommand } from "./cli/drive.ts";
import { asWritten, type Config, ConfigError, configSource, loadConfig, redacted } from "./settings/config.ts";
import { maskSecrets } from "./base/secrets.ts";
import { listenOps } from "./http/ops-listener.ts";
import { configureLog, log } from "./base/log.ts";
import { startSimulator } from "./kubernetes/simulator.ts";
import { listenWithBun } from "./runtimes/bun.ts";
import { cannotListen, type ServiceRole, whyRoleCannotStart } from "./runtimes/preflight.ts";
import { onStopSignal } from "./runtimes/signals.ts";
import { createContext } from "./service/context.ts";
import { opsFor } from "./service/health.ts";
import { type ReconcilingWorker, startReconcilingWorker } from "./worker/start.ts";

const USAGE = "usage: bun src/main.ts <api|worker|kube-sim|all|queue|audit|drive|config|token> [--config FILE] [--env NAME]";

interface Arguments {
  role: string;
  rest: string[];
  configFile?: string;
  env?: string;
}

function parseArguments(argv: string[]): Arguments {
  const positional: string[] = [];
  let configFile: string | undefined;
  let env: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--config" || arg === "--env") {
      const value = argv[++i];
      if (value === undefined) fail(`${arg} needs a value\n${USAGE}`);
      if (arg === "--config") configFile = value;
      else env = value;
    } else if (arg.startsWith("--config=")) configFile = arg.slice("--config=".length);
    else if (arg.startsWith("--env=")) env = arg.slice("--env=".length);
    else positional.push(arg);
  }
  const [role, ...rest] = positional;
  if (role === undefined) fail(USAGE);
  // Without --config and --env: IAPPS_CONFIG, else ./config.toml; IAPPS_ENV (as src/runtimes/serve.ts).
  const fromEnvironment = configSource();
  return { role, rest, configFile: configFile ?? fromEnvironment.file, env: env ?? fromEnvironment.env };
}

function fail(message: string): never {
  // Messages quote configuration and errors of libraries, either of which may carry a URL's password.
  process.stderr.write(`${maskSecrets(message)}\n`);
  process.exit(2);
}

function readConfig(args: Arguments): Config {
  try {
    return loadConfig({ file: args.configFile, env: args.env });
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
}

/** Parts of a role that must stop, in order, when it is told to. */
type Stopper = () => Promise<unknown>;

/** SIGTERM or SIGINT: run the stoppers in order (one that fails does not keep the next from running), exit 0. */
function stopOnSignal(stoppers: Stopper[]) {
  onStopSignal(async (signal) => {
    log("info", "shutting down", { signal });
    for (const stop of stoppers) await stop().catch((e) => log("warn", "while shutting down", { error: String(e) }));
    process.exit(0);
  });
}

/** The API on Bun; its stopper drains the requests in flight, then closes Redis. */
function serveApi(config: Config, role: string): Stopper {
  let api: Api;
  try {
    api = createApi(config);
  } catch (e) {
    fail((e as Error).message);
  }
  const { host, port } = config.server;
  let started: ReturnType<typeof listenWithBun>;
  try {
    started = listenWithBun(api);
  } catch (e) {
    fail(cannotListen(e, { what: "API", host, port, portSetting: "server.port", hostSetting: "server.host" }));
  }
  const { url, listener } = started;
  log("info", `ucloud-iapps ${role} listening`, { url, redis: redisShown(config), provider: config.ucloud.provider_id });
  return () => stopApi(api, listener);
}

/** Where this process finds Redis, passwords masked: the cluster's seed nodes, else `[redis] url`. */
function redisShown(config: Config): string {
  return maskSecrets(config.redis.cluster.length > 0 ? config.redis.cluster.join(", ") : config.redis.url);
}

async function runSimulator(config: Config): Promise<{ url: string; stop: Stopper }> {
  const port = config.kubernetes.simulator_port;
  let simulator: Awaited<ReturnType<typeof startSimulator>>;
  try {
    simulator = await startSimulator({ port, startDelayMs: config.kubernetes.simulator_start_delay });
  } catch (e) {
    fail(cannotListen(e, { what: "Kubernetes simulator", host: "127.0.0.1", port, portSetting: "kubernetes.simulator_port" }));
  }
  log("info", "Kubernetes simulator listening", {
    url: simulator.url,
    try: `kubectl --server ${simulator.url} get pods -n ${config.kubernetes.namespace}`,
  });
  return { url: simulator.url, stop: () => simulator.stop() };
}

/** `withListener`: serve /healthz, /readyz and /metrics on `[worker] metrics_port` (role worker; under `all` the API serves them). */
async function runWorker(config: Config, simulatorUrl: string | undefined, withListener: boolean): Promise<Stopper> {
  // The worker reads records straight from Redis: a cache would only add a way to be stale.
  const context = createContext(config, { cache: false });
  // The listener first: a port in use ends the process before the worker took any task.
  let reconciling: ReconcilingWorker | null = null;
  let listener: Awaited<ReturnType<typeof listenOps>> | null = null;
  if (withListener && config.worker.metrics_port !== 0) {
    const { host } = config.server;
    const port = config.worker.metrics_port;
    const caches = () => ({ kubernetes: reconciling?.gateway.synced ? null : "the watch caches of pods, services and policies have not synced yet" });
    try {
      listener = await listenOps(host, port, opsFor(context, caches));
    } catch (e) {
      fail(cannotListen(e, { what: "worker metrics", host, port, portSetting: "worker.metrics_port", hostSetting: "server.host" }));
    }
    log("info", "worker metrics listening", { url: `http://${host}:${listener.port}/metrics` });
  }
  const started = startReconcilingWorker(context, simulatorUrl);
  reconciling = started;
  return async () => {
    await listener?.close();
    await started.stop();
    await context.close();
  };
}

/** Where a worker alone finds the simulator (its port is not 0: whyRoleCannotStart checked). */
function embeddedSimulatorUrl(config: Config): string | undefined {
  if (config.kubernetes.mode !== "embedded") return undefined;
  return `http://127.0.0.1:${config.kubernetes.simulator_port}`;
}

const SERVICE_ROLES: readonly string[] = ["api", "worker", "kube-sim", "all"] satisfies ServiceRole[];

async function queueCommand(config: Config, [command, id]: string[]) {
  const context = createContext(config, { cache: false });
  try {
    const { queue } = context;
    const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    switch (command) {
      case "stats":
        print(await queue.stats());
        break;
      case "dead":
        print(await queue.deadLetters());
        break;
      case "replay":
        if (!id) fail("usage: bun src/main.ts queue replay <task id>   (ids: bun src/main.ts queue dead)");
        if (!(await queue.replay(id))) fail(`queue replay: no dead letter ${id}`);
        process.stdout.write(`replayed ${id}\n`);
        break;
      case "purge-dead":
        process.stdout.write(`purged ${await queue.purgeDead()} dead letters\n`);
        break;
      default:
        fail("usage: bun src/main.ts queue <stats|dead|replay <id>|purge-dead>");
    }
  } catch (e) {
    fail(`queue ${command}: ${(e as Error).message} (is Redis reachable at ${redisShown(config)}?)`);
  } finally {
    await context.close();
  }
}

async function main() {
  const args = parseArguments(process.argv.slice(2));
  const config = readConfig(args);
  configureLog(config.log);
  if (SERVICE_ROLES.includes(args.role)) {
    const problem = whyRoleCannotStart(config, args.role as ServiceRole);
    if (problem !== null) fail(problem);
  }
  switch (args.role) {
    case "api":
      stopOnSignal([serveApi(config, args.role)]);
      return;
    case "worker":
      stopOnSignal([await runWorker(config, embeddedSimulatorUrl(config), true)]);
      return;
    case "kube-sim": {
      const simulator = await runSimulator(config);
      stopOnSignal([simulator.stop]);
      return;
    }
    case "all": {
      // In embedded mode the simulator comes first: the worker reaches it over HTTP like a cluster.
      const simulator = config.kubernetes.mode === "embedded" ? await runSimulator(config) : null;
      const api = serveApi(config, args.role);
      const worker = await runWorker(config, simulator?.url, false);
      stopOnSignal([api, worker, ...(simulator ? [simulator.stop] : [])]);
      return;
    }
    case "queue":
      await queueCommand(config, args.rest);
      return;
    case "audit": {
      const context = createContext(config, { cache: false });
      let stopping = false;
      onStopSignal(async () => {
        stopping = true;
      });
      try {
        const blockMs = Math.max(Math.floor(config.redis.command_timeout / 2), 1);
        await auditCommand(context.commands, args.rest, (line) => process.stdout.write(`${line}\n`), blockMs, () => stopping);
      } catch (e) {
        if (e instanceof AuditCommandError) fail(e.message);
        fail(`audit: ${(e as Error).message} (is Redis reachable at ${redisShown(config)}?)`);
      } finally {
        await context.close();
      }
      return;
    }
    case "drive": {
      const context = createContext(config, { cache: false });
      try {
        await driveCommand(context, args.rest, (line) => process.stdout.write(`${line}\n`));
      } catch (e) {
        if (e instanceof DriveCommandError) fail(e.message);
        fail(`drive ${args.rest[0] ?? ""}: ${(e as Error).message}`);
      } finally {
        await context.close();
      }
      return;
    }
    case "config": {
      // Secrets hidden; durations as they are written ("25s"), not in ms.
      const shown = asWritten(redacted(config));
      const path = args.rest[0];
      if (path === undefined) {
        process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
        return;
      }
      const at = (tree: unknown) => path.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], tree);
      const value = at(shown);
      if (value === undefined) fail(`config: no key ${path}`);
      // A string prints bare (scripts read `config redis.url`); a duration as written in the file: "25s".
      const duration = typeof at(config) === "number" && typeof value === "string";
      process.stdout.write(`${typeof value === "string" && !duration ? value : JSON.stringify(value)}\n`);
      return;
    }
    case "token": {
      const [username, role = "USER"] = args.rest;
      if (!username || !["USER", "ADMIN", "SERVICE"].includes(role)) fail("usage: bun src/main.ts token <username> [USER|ADMIN|SERVICE]");
      if (config.auth.jwt_secret === "") fail("token: [auth] jwt_secret is not set; tokens for a public key are minted by UCloud");
      const exp = Math.floor(Date.now() / 1000) + 24 * 3600;
      process.stdout.write(`${await sign({ sub: username, role, exp }, config.auth.jwt_secret, "HS256")}\n`);
      return;
    }
    default:
      fail(`unknown role '${args.role}'\n${USAGE}`);
  }
}

await main();
