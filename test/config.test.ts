// config.toml (architecture.md, "config.toml"): defaults, [env.<name>] overlays, IAPPS_<SECTION>_<KEY>
// overrides, durations, and a bad file failing at start with the key path and the reason.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { asWritten, type Config, ConfigError, loadConfig, resolveConfig } from "../src/settings/config.ts";
import { durationMs, durationText } from "../src/settings/duration.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = join(ROOT, "node_modules/.bin/bun");

let dir: string;
let fileCount = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iapps-config-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `text` to a fresh config file and answers its path. */
function configFile(text: string): string {
  const path = join(dir, `config-${++fileCount}.toml`);
  writeFileSync(path, text);
  return path;
}

/** Loads `text` as config.toml, with no environment variables unless given. */
function load(text: string, options: { env?: string; environment?: Record<string, string> } = {}): Config {
  return loadConfig({ file: configFile(text), env: options.env, environment: options.environment ?? {} });
}

/** The ConfigError that `run` throws (fails the test when it throws nothing or something else). */
function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError, but the configuration was accepted");
}

describe("with no file and no environment, every key has its default", () => {
  test("resolveConfig of an empty table answers the documented defaults", () => {
    const config = resolveConfig({}, { source: "test", environment: {} });
    expect(config.server).toEqual({ host: "0.0.0.0", port: 8080, shutdown_timeout: 25_000, public_url: "" });
    expect(config.redis).toEqual({ url: "redis://127.0.0.1:6379", cluster: [], wait_replicas: 0, pool_size: 16, pool_wait: 5000, command_timeout: 1000 });
    expect(config.auth).toEqual({ jwt_secret: "", jwt_public_key: "", jwt_algorithm: "RS256" });
    expect(config.api).toEqual({ require_etag: false, body_limit: 1048576, cache_max_entries: 100_000, cache_max_bytes: 268_435_456, job_claim_wait: 10_000, history_length: 20, audit_max_length: 1_000_000 });
    expect(config.worker).toEqual({
      concurrency: 32,
      lease: 30_000,
      max_attempts: 8,
      backoff_base: 200,
      backoff_max: 300_000,
      resync_interval: 30_000,
      shutdown_timeout: 25_000,
      metrics_port: 0,
    });
    expect(config.log).toEqual({ level: "info", format: "auto" });
    expect(config.ucloud).toEqual({ provider_id: "k8s", mode: "embedded", core_url: "", refresh_token: "", core_timeout: 10_000 });
    expect(config.apps).toEqual({
      syncthing: {
        enabled: true,
        image: "dreg.cloud.sdu.dk/ucloud/syncthing-go",
        image_version: "1.0.0",
        port_min: 21000,
        port_max: 21100,
        ip_address: "127.0.0.1",
        relays: true,
      },
      terminal: { enabled: true, image: "docker.io/library/alpine", image_version: "3", inactivity: 900_000, shell_session_ttl: 3_600_000, shell_sessions_per_user: 16 },
    });
    expect(config.storage).toEqual({ root: "./var/storage", host_path: "", volume_claim: "" });
    expect(config.kubernetes).toEqual({
      mode: "embedded",
      kubeconfig: "~/.kube/config",
      namespace: "ucloud-apps",
      simulator_port: 6443,
      simulator_start_delay: 200,
    });
    expect(config.vars).toEqual({});
  });

  test("loadConfig without a file answers the same defaults", () => {
    expect(loadConfig({ environment: {} })).toEqual(resolveConfig({}, { source: "test", environment: {} }));
  });

  test("an empty file answers the same defaults", () => {
    expect(load("")).toEqual(resolveConfig({}, { source: "test", environment: {} }));
  });

  test("a file that sets some keys of a section keeps the defaults of the others", () => {
    const config = load(`[redis]\npool_size = 4\n`);
    expect(config.redis).toEqual({ url: "redis://127.0.0.1:6379", cluster: [], wait_replicas: 0, pool_size: 4, pool_wait: 5000, command_timeout: 1000 });
    expect(config.server.port).toBe(8080);
  });

  test("the top-level wrangler keys and [vars] are read", () => {
    const config = load(`name = "iapps-test"\nmain = "src/main.ts"\ncompatibility_date = "2026-01-01"\n[vars]\ngreeting = "hi"\nanswer = 42\nflag = true\n`);
    expect(config.name).toBe("iapps-test");
    expect(config.compatibility_date).toBe("2026-01-01");
    expect(config.vars).toEqual({ greeting: "hi", answer: 42, flag: true });
  });

  test("the shipped config.toml is valid", () => {
    const config = loadConfig({ file: join(ROOT, "config.toml"), environment: {} });
    expect(config.ucloud.provider_id).toBe("k8s");
    expect(config.auth.jwt_secret).not.toBe("");
  });
});

describe("[env.<name>] overlays deep-merge over the file when started with --env <name>", () => {
  const file = `
[server]
host = "127.0.0.1"
port = 8080

[redis]
url = "redis://10.0.0.1:6379"
pool_size = 8
command_timeout = "1s"

[apps.syncthing]
enabled = true

[env.production]
server = { host = "0.0.0.0" }
redis = { pool_size = 32 }

[env.production.apps.syncthing]
enabled = false

[env.staging.server]
port = 9090
`;

  test("without --env the overlays are ignored", () => {
    const config = load(file);
    expect(config.server).toEqual({ host: "127.0.0.1", port: 8080, shutdown_timeout: 25_000, public_url: "" });
    expect(config.redis.pool_size).toBe(8);
    expect(config.apps.syncthing.enabled).toBe(true);
  });

  test("an overlay replaces only the keys it names; sibling keys of the same table survive", () => {
    const config = load(file, { env: "production" });
    expect(config.server).toEqual({ host: "0.0.0.0", port: 8080, shutdown_timeout: 25_000, public_url: "" });
    expect(config.redis).toEqual({ url: "redis://10.0.0.1:6379", cluster: [], wait_replicas: 0, pool_size: 32, pool_wait: 5000, command_timeout: 1000 });
  });

  test("an overlay reaches nested tables ([env.production.apps.syncthing])", () => {
    const config = load(file, { env: "production" });
    expect(config.apps.syncthing.enabled).toBe(false);
    expect(config.apps.terminal.enabled).toBe(true);
  });

  test("only the named overlay applies", () => {
    const config = load(file, { env: "staging" });
    expect(config.server).toEqual({ host: "127.0.0.1", port: 9090, shutdown_timeout: 25_000, public_url: "" });
    expect(config.redis.pool_size).toBe(8);
    expect(config.apps.syncthing.enabled).toBe(true);
  });

  test("the shipped config.toml's production overlay changes the host and clears the secret, keeping the rest", () => {
    const base = loadConfig({ file: join(ROOT, "config.toml"), environment: {} });
    const production = loadConfig({ file: join(ROOT, "config.toml"), env: "production", environment: {} });
    expect(production.server).toEqual({ ...base.server, host: "0.0.0.0" });
    expect(production.auth).toEqual({ ...base.auth, jwt_secret: "" });
    expect(production.redis).toEqual(base.redis);
  });

  test("an unknown --env name is an error that names it", () => {
    const error = configError(() => load(file, { env: "qa" }));
    expect(error.message).toContain("qa");
    expect(error.message).toContain("[env.qa]");
  });

  test("an --env name with no [env] tables at all is an error that names it", () => {
    const error = configError(() => load(`[server]\nport = 1\n`, { env: "production" }));
    expect(error.message).toContain("production");
  });

  test("a bad value inside an overlay names the key path it lands on", () => {
    const error = configError(() => load(`[env.production]\nredis = { pool_size = "lots" }\n`, { env: "production" }));
    expect(error.message).toContain("redis.pool_size");
  });
});

describe("IAPPS_<SECTION>_<KEY> environment variables override the file and the overlay", () => {
  const file = `
[server]
port = 8081

[redis]
command_timeout = "2s"

[api]
require_etag = false

[apps.syncthing]
enabled = true

[env.production]
server = { port = 8082 }
redis = { command_timeout = "3s" }
api = { require_etag = false }
apps = { syncthing = { enabled = true } }
`;

  test("IAPPS_SERVER_PORT sets server.port as a number", () => {
    expect(load(file, { environment: { IAPPS_SERVER_PORT: "9000" } }).server.port).toBe(9000);
  });

  test("IAPPS_SERVER_PORT beats the file and the env overlay", () => {
    expect(load(file, { env: "production" }).server.port).toBe(8082);
    expect(load(file, { env: "production", environment: { IAPPS_SERVER_PORT: "9001" } }).server.port).toBe(9001);
  });

  test("IAPPS_API_REQUIRE_ETAG=true turns require_etag on over the file and the overlay", () => {
    expect(load(file, { environment: { IAPPS_API_REQUIRE_ETAG: "true" } }).api.require_etag).toBe(true);
    expect(load(file, { env: "production", environment: { IAPPS_API_REQUIRE_ETAG: "true" } }).api.require_etag).toBe(true);
  });

  test("IAPPS_API_REQUIRE_ETAG=false turns it off where the file turned it on", () => {
    expect(load(`[api]\nrequire_etag = true\n`, { environment: { IAPPS_API_REQUIRE_ETAG: "false" } }).api.require_etag).toBe(false);
  });

  test("IAPPS_REDIS_COMMAND_TIMEOUT is a duration that beats the file and the overlay", () => {
    expect(load(file).redis.command_timeout).toBe(2000);
    expect(load(file, { env: "production" }).redis.command_timeout).toBe(3000);
    expect(load(file, { env: "production", environment: { IAPPS_REDIS_COMMAND_TIMEOUT: "250ms" } }).redis.command_timeout).toBe(250);
  });

  test("IAPPS_APPS_SYNCTHING_ENABLED=false disables syncthing over the file and the overlay (nested tables join with _)", () => {
    const config = load(file, { env: "production", environment: { IAPPS_APPS_SYNCTHING_ENABLED: "false" } });
    expect(config.apps.syncthing.enabled).toBe(false);
    expect(config.apps.terminal.enabled).toBe(true);
  });

  test("overrides apply with no file at all", () => {
    const config = loadConfig({ environment: { IAPPS_SERVER_PORT: "7000", IAPPS_REDIS_URL: "redis://cache:6380" } });
    expect(config.server.port).toBe(7000);
    expect(config.redis.url).toBe("redis://cache:6380");
  });

  test("variables of other programs and unknown IAPPS_ variables are ignored", () => {
    const config = load(file, { environment: { PORT: "1", SERVER_PORT: "2", IAPPS_SERVER_PROT: "3" } });
    expect(config.server.port).toBe(8081);
  });

  test("a variable that is not a number where a number belongs names the key path", () => {
    const error = configError(() => load(file, { environment: { IAPPS_SERVER_PORT: "eighty" } }));
    expect(error.message).toContain("server.port");
    expect(error.message).toContain("expected a number");
  });

  test("a variable that is not true or false where a boolean belongs names the key path", () => {
    const error = configError(() => load(file, { environment: { IAPPS_API_REQUIRE_ETAG: "yes" } }));
    expect(error.message).toContain("api.require_etag");
    expect(error.message).toContain("expected true or false");
  });

  test("a variable that is not a duration names the key path", () => {
    const error = configError(() => load(file, { environment: { IAPPS_REDIS_COMMAND_TIMEOUT: "soon" } }));
    expect(error.message).toContain("redis.command_timeout");
    expect(error.message).toContain("duration");
  });
});

describe("[redis] cluster and wait_replicas", () => {
  const resolve = (raw: Record<string, unknown>, environment: Record<string, string> = {}) =>
    resolveConfig(raw, { source: "config.toml", environment });

  test("IAPPS_REDIS_CLUSTER takes a comma-separated or JSON list of seed nodes", () => {
    expect(resolve({}, { IAPPS_REDIS_CLUSTER: "redis://10.0.0.1:7000, redis://10.0.0.2:7001" }).redis.cluster).toEqual([
      "redis://10.0.0.1:7000",
      "redis://10.0.0.2:7001",
    ]);
    expect(resolve({}, { IAPPS_REDIS_CLUSTER: '["redis://a:1"]', IAPPS_REDIS_WAIT_REPLICAS: "1" }).redis).toMatchObject({
      cluster: ["redis://a:1"],
      wait_replicas: 1,
    });
  });

  test("a seed node without a port, or not redis://, and a negative wait_replicas are refused by key path", () => {
    expect(() => resolve({ redis: { cluster: ["redis://a"] } })).toThrow(/redis\.cluster\.0: expected redis:\/\/host:port/);
    expect(() => resolve({ redis: { cluster: ["http://a:1"] } })).toThrow(/redis\.cluster\.0/);
    expect(() => resolve({ redis: { wait_replicas: -1 } })).toThrow(/redis\.wait_replicas/);
  });

  test("seed nodes may carry user:password@ and be rediss://, like redis.url", () => {
    const seeds = ["redis://:hunter2@10.0.0.1:7000", "redis://10.0.0.2:7001", "redis://:hunter2@10.0.0.3:7002/"];
    expect(resolve({ redis: { cluster: seeds } }).redis.cluster).toEqual(seeds);
    expect(resolve({}, { IAPPS_REDIS_CLUSTER: '["rediss://app:p%40ss@[::1]:7000"]' }).redis.cluster).toEqual(["rediss://app:p%40ss@[::1]:7000"]);
  });

  test("seed nodes of one cluster share their scheme; a refusal never shows the password", () => {
    const refusal = (cluster: string[]) => {
      try {
        resolve({ redis: { cluster } });
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("accepted");
    };
    expect(refusal(["rediss://a:1", "redis://b:2"])).toMatch(/redis\.cluster: expected every seed node with the same scheme/);
    expect(refusal(["redis://:50%off@a:1"])).toMatch(/redis\.cluster\.0: .*percent-encoded/);
    expect(refusal(["redis://a:99999"])).toMatch(/redis\.cluster\.0/);
    expect(refusal(["redis://:50%off@a:1"])).not.toContain("50%off");
  });
});

describe("durations are strings such as \"200ms\", \"30s\", \"15m\", \"1h30m\"", () => {
  test.each([
    ["200ms", 200],
    ["30s", 30_000],
    ["15m", 900_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["2m30s", 150_000],
    ["1s500ms", 1_500],
    ["0s", 0],
  ])("%p is %p milliseconds", (text, ms) => {
    expect(durationMs(text)).toBe(ms);
  });

  test.each(["", " ", "30", "s", "ms", "30x", "-1s", "1 h", "1h 30m", "h1", "1.5.s", "30s!", "thirty seconds"])(
    "%p is not a duration",
    (text) => {
      expect(durationMs(text)).toBeNull();
    },
  );

  test("durations in the file are read as milliseconds", () => {
    const config = load(`[redis]\ncommand_timeout = "200ms"\n[api]\njob_claim_wait = "1h30m"\n`);
    expect(config.redis.command_timeout).toBe(200);
    expect(config.api.job_claim_wait).toBe(5_400_000);
  });

  test("a duration that is not one names the key path and says what a duration looks like", () => {
    const error = configError(() => load(`[api]\njob_claim_wait = "10 seconds"\n`));
    expect(error.message).toContain("api.job_claim_wait");
    expect(error.message).toContain("30s");
  });

  test("a bare number where a duration belongs is refused, naming the key path", () => {
    const error = configError(() => load(`[redis]\ncommand_timeout = 30\n`));
    expect(error.message).toContain("redis.command_timeout");
    expect(error.message).toContain("duration");
  });
});

describe("durations are shown as they are written: the shortest exact form, in the largest whole unit", () => {
  test.each([
    [200, "200ms"],
    [1_000, "1s"],
    [25_000, "25s"],
    [900_000, "15m"],
    [3_600_000, "1h"],
    [5_400_000, "90m"],
    [1_500, "1500ms"],
    [0, "0s"],
  ])("%p ms is %p", (ms, text) => {
    expect(durationText(ms)).toBe(text);
    expect(durationMs(text)).toBe(ms);
  });

  test("every whole number of milliseconds reads back as itself", () => {
    for (const ms of [1, 999, 1_001, 59_999, 60_001, 86_400_000, 2 ** 31 - 1, 123_456_789]) expect(durationMs(durationText(ms))).toBe(ms);
  });

  test("asWritten turns every duration setting into its string and leaves the rest, and the configuration, as they are", () => {
    const config = load(`[server]\nshutdown_timeout = "25s"\nport = 9000\n[api]\njob_claim_wait = "1h30m"\n`);
    const shown = asWritten(config) as Record<string, Record<string, unknown>>;
    expect(shown.server).toMatchObject({ shutdown_timeout: "25s", port: 9000 });
    expect(shown.api).toMatchObject({ job_claim_wait: "90m", body_limit: 1024 * 1024 });
    expect((shown.apps as Record<string, Record<string, unknown>>).terminal).toMatchObject({ inactivity: "15m" });
    expect(shown.worker).toMatchObject({ backoff_base: "200ms", backoff_max: "5m", metrics_port: 0 });
    expect(config.server.shutdown_timeout).toBe(25_000);
    // Shown again, they read as the same configuration.
    expect(resolveConfig(shown, { source: "shown", environment: {} })).toEqual(config);
  });
});

describe("a bad file fails with a ConfigError naming the key path and the reason", () => {
  test("a mistake in an overlay is reported even when another overlay (or none) is selected", () => {
    const text = `[env.production]\nsever = { host = "0.0.0.0" }\n[env.staging]\nserver = { port = 9000 }\n`;
    for (const env of [undefined, "staging"]) {
      const error = configError(() => load(text, { env }));
      expect(error.message).toContain("[env.production]");
      expect(error.message).toContain("sever");
    }
  });

  test("a duration longer than a timer can hold (24 days) is refused", () => {
    const error = configError(() => load(`[redis]\ncommand_timeout = "600h"\n`));
    expect(error.message).toContain("redis.command_timeout");
  });

  test("a value of the wrong type: the key path and what was expected", () => {
    const error = configError(() => load(`[redis]\npool_size = "many"\n`));
    expect(error.message).toContain("redis.pool_size");
    expect(error.message).toContain("expected a number");
  });

  test("a boolean key given a string", () => {
    const error = configError(() => load(`[apps.syncthing]\nenabled = "yes"\n`));
    expect(error.message).toContain("apps.syncthing.enabled");
    expect(error.message).toContain("expected true or false");
  });

  test("an unknown key in a section: its key path and 'unknown key'", () => {
    const error = configError(() => load(`[redis]\npoolsize = 4\n`));
    expect(error.message).toContain("redis.poolsize");
    expect(error.message).toContain("unknown key");
  });

  test("an unknown top-level section", () => {
    const error = configError(() => load(`[databse]\nurl = "x"\n`));
    expect(error.message).toContain("databse");
    expect(error.message).toContain("unknown key");
  });

  test("an unknown app under [apps]", () => {
    const error = configError(() => load(`[apps.chat]\nenabled = true\n`));
    expect(error.message).toContain("apps.chat");
    expect(error.message).toContain("unknown key");
  });

  test("a port above 65535 is out of range", () => {
    const error = configError(() => load(`[server]\nport = 70000\n`));
    expect(error.message).toContain("server.port");
    expect(error.message).toContain("65535");
  });

  test("a negative port is out of range", () => {
    const error = configError(() => load(`[server]\nport = -1\n`));
    expect(error.message).toContain("server.port");
  });

  test("a fractional port is not an integer", () => {
    const error = configError(() => load(`[server]\nport = 80.5\n`));
    expect(error.message).toContain("server.port");
    expect(error.message).toContain("integer");
  });

  test("a pool size of zero is out of range", () => {
    const error = configError(() => load(`[redis]\npool_size = 0\n`));
    expect(error.message).toContain("redis.pool_size");
  });

  test("a Redis URL that is not redis:// or rediss://", () => {
    const error = configError(() => load(`[redis]\nurl = "http://127.0.0.1:6379"\n`));
    expect(error.message).toContain("redis.url");
    expect(error.message).toContain("redis://");
  });

  test("a provider id with characters a route cannot carry", () => {
    const error = configError(() => load(`[ucloud]\nprovider_id = "k8s/prod"\n`));
    expect(error.message).toContain("ucloud.provider_id");
  });

  test("every problem of the file is listed, each with its key path", () => {
    const error = configError(() => load(`[server]\nport = 70000\n[redis]\npool_size = "many"\n`));
    expect(error.message).toContain("server.port");
    expect(error.message).toContain("redis.pool_size");
  });

  test("the message names the file", () => {
    const path = configFile(`[redis]\npool_size = "many"\n`);
    const error = configError(() => loadConfig({ file: path, environment: {} }));
    expect(error.message).toContain(path);
  });

  test("a TOML syntax error names the file, says it is not valid TOML, and shows the line", () => {
    const path = configFile(`[server]\nport = = 3\n`);
    const error = configError(() => loadConfig({ file: path, environment: {} }));
    expect(error.message).toContain(path);
    expect(error.message).toContain("not valid TOML");
    expect(error.message).toContain("port = = 3");
  });

  test("a file that cannot be read names the file", () => {
    const path = join(dir, "does-not-exist.toml");
    const error = configError(() => loadConfig({ file: path, environment: {} }));
    expect(error.message).toContain(path);
  });
});

describe("the CLI refuses to start with a bad configuration: exit code 2 and the key path on stderr", () => {
  /** Runs `bun src/main.ts <args>` in the project, without any IAPPS_ variables of this process. */
  function cli(args: string[]) {
    const environment = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("IAPPS_")));
    // The timeout only keeps a wrongly started server from hanging the run; it asserts nothing.
    return spawnSync(BUN, ["src/main.ts", ...args], { cwd: ROOT, env: environment, encoding: "utf8", timeout: 20_000 });
  }

  // Each bad file also asks for port 0, so that a server that wrongly starts cannot take a real port.
  test("a value of the wrong type", () => {
    const result = cli(["api", "--config", configFile(`[server]\nport = 0\n[redis]\npool_size = "many"\n`)]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("redis.pool_size");
    expect(result.stderr).toContain("expected a number");
    expect(result.stderr).not.toContain("listening");
  }, 30_000);

  test("an unknown key", () => {
    const result = cli(["api", "--config", configFile(`[server]\nport = 0\nhots = "x"\n`)]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("server.hots");
    expect(result.stderr).toContain("unknown key");
  }, 30_000);

  test("an out-of-range port", () => {
    const result = cli(["api", "--config", configFile(`[server]\nport = 70000\n`)]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("server.port");
  }, 30_000);

  test("a TOML syntax error", () => {
    const path = configFile(`[server]\nport = 0\n[redis\n`);
    const result = cli(["api", "--config", path]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(path);
    expect(result.stderr).toContain("not valid TOML");
  }, 30_000);

  test("an unknown --env name", () => {
    const result = cli(["api", "--config", configFile(`[server]\nport = 0\n[env.production]\nserver = { host = "0.0.0.0" }\n`), "--env", "prodution"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("prodution");
  }, 30_000);
});

describe("bun src/main.ts config shows durations as they are written", () => {
  /** Runs `bun src/main.ts config <args>` without any IAPPS_ variables of this process. */
  function config(args: string[], variables: Record<string, string> = {}) {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("IAPPS_")));
    return spawnSync(BUN, ["src/main.ts", "config", ...args], { cwd: ROOT, env: { ...inherited, ...variables }, encoding: "utf8", timeout: 20_000 });
  }

  test('one duration: config server.shutdown_timeout prints "25s", as the file writes it, not 25000', () => {
    const result = config(["server.shutdown_timeout", "--config", configFile(`[server]\nshutdown_timeout = "25s"\n`)]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('"25s"\n');
  }, 30_000);

  test("a section, and the whole configuration: every duration a string, every other number a number", () => {
    const path = configFile(`[worker]\nbackoff_base = "200ms"\nresync_interval = "1m"\n`);
    const worker = config(["worker", "--config", path], { IAPPS_WORKER_LEASE: "1h" });
    expect(worker.status).toBe(0);
    expect(JSON.parse(worker.stdout)).toMatchObject({ lease: "1h", backoff_base: "200ms", resync_interval: "1m", backoff_max: "5m", concurrency: 32 });
    const whole = config(["--config", path]);
    expect(whole.status).toBe(0);
    const shown = JSON.parse(whole.stdout);
    expect(shown.redis.command_timeout).toBe("1s");
    expect(shown.kubernetes.simulator_start_delay).toBe("200ms");
    expect(shown.apps.terminal.inactivity).toBe("15m");
    expect(shown.server.port).toBe(8080);
  }, 30_000);
});

describe("docs/operations.md's configuration reference names every setting", () => {
  test("each key of the resolved defaults has its row", () => {
    const documented = readFileSync(join(ROOT, "docs/operations.md"), "utf8");
    const leaves = (node: unknown, path: string): string[] =>
      node !== null && typeof node === "object" && !Array.isArray(node)
        ? Object.entries(node).flatMap(([key, value]) => leaves(value, path === "" ? key : `${path}.${key}`))
        : [path];
    const defaults = resolveConfig({}, { source: "test", environment: {} });
    const keys = leaves(defaults, "").filter((key) => !/^(name|main|compatibility_date|vars)$/.test(key));
    expect(keys.filter((key) => !documented.includes(`| \`${key}\` |`))).toEqual([]);
  });
});
