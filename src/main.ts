// The entry point: `bun src/main.ts <role> [--config FILE] [--env NAME]`.
//
//   api      the HTTP API (run as many replicas as you like)
//   all      everything a newcomer needs in one process (today: the API; the worker and the
//            Kubernetes simulator join it when they exist)
//   worker   the task worker (refuses to start until the reconciler exists: see below)
//   queue    operator commands: `queue stats | dead | replay <id> | purge-dead`
//   config   print the resolved configuration (secrets hidden), or one value: `config redis.url`
//   token    mint a development token with [auth] jwt_secret: `token <username> [USER|ADMIN|SERVICE]`

import { existsSync } from "node:fs";
import { sign } from "hono/jwt";
import { type Config, ConfigError, loadConfig, redacted } from "./config/config.ts";
import { httpAppFor } from "./http/server.ts";
import { log } from "./log.ts";
import { createContext } from "./service/context.ts";

const USAGE = "usage: bun src/main.ts <api|all|worker|queue|config|token> [--config FILE] [--env NAME]";

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
  if (configFile === undefined && existsSync("config.toml")) configFile = "config.toml";
  return { role, rest, configFile, env };
}

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
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

async function serveApi(config: Config, role: string) {
  const context = createContext(config);
  let app: ReturnType<typeof httpAppFor>;
  try {
    app = httpAppFor(context);
  } catch (e) {
    await context.close();
    fail((e as Error).message);
  }
  const server = Bun.serve({ hostname: config.server.host, port: config.server.port, fetch: app.fetch });
  log("info", `ucloud-iapps ${role} listening`, {
    url: `http://${config.server.host}:${server.port}`,
    redis: config.redis.url,
    provider: config.ucloud.provider_id,
  });
  const shutdown = async (signal: string) => {
    log("info", "shutting down", { signal });
    await server.stop();
    await context.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

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
    fail(`queue ${command}: ${(e as Error).message} (is Redis reachable at ${config.redis.url}?)`);
  } finally {
    await context.close();
  }
}

async function main() {
  const args = parseArguments(process.argv.slice(2));
  const config = readConfig(args);
  switch (args.role) {
    case "api":
    case "all":
      await serveApi(config, args.role);
      return;
    case "worker":
      // The worker's heart is the reconciler of the Kubernetes issue. Until it exists a worker
      // would take tasks and do nothing with them, so it does not start (tests run workers with
      // their own handlers: test/support/worker-process.ts).
      fail("worker: there is no reconciler yet (it arrives with the Kubernetes issue), so no worker runs; tasks wait in the queue");
    case "queue":
      await queueCommand(config, args.rest);
      return;
    case "config": {
      const shown = redacted(config);
      const path = args.rest[0];
      if (path === undefined) {
        process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
        return;
      }
      const value = path.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], shown);
      if (value === undefined) fail(`config: no key ${path}`);
      process.stdout.write(`${typeof value === "string" ? value : JSON.stringify(value)}\n`);
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
