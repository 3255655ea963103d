// Secrets are never printed (spec §10; issue 12, "The Redis password leaks"): a password in a URL
// is masked as `***` by maskSecrets, in every log line, in what `bun src/main.ts config` prints,
// in the CLI's errors, and in the API's startup line. The CLI and the API run as real processes.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { maskSecrets } from "../../src/base/secrets.ts";
import { log } from "../../src/base/log.ts";
import { eventually } from "../support/eventually.ts";
import { BUN, killAll, ROOT, startProcess } from "../support/processes.ts";
import { freePort, spawnRedisServer } from "../support/redis-server.ts";
import { SECRET } from "../support/service.ts";

const PASSWORD = "hunter2";

describe("maskSecrets hides the password of a URL and keeps the rest", () => {
  test("a URL without a password is unchanged", () => {
    for (const url of ["redis://127.0.0.1:6379", "redis://user@127.0.0.1:6379", "redis://[::1]:6379/0", "http://0.0.0.0:8080/metrics?x=1", "redis://:@host:6379"]) {
      expect(maskSecrets(url)).toBe(url);
    }
  });

  test("user and password: the user stays", () => {
    expect(maskSecrets(`redis://user:${PASSWORD}@10.0.0.5:6390/2`)).toBe("redis://user:***@10.0.0.5:6390/2");
  });

  test("a password alone", () => {
    expect(maskSecrets(`redis://:${PASSWORD}@127.0.0.1:6390`)).toBe("redis://:***@127.0.0.1:6390");
  });

  test("rediss:// and http(s):// too", () => {
    expect(maskSecrets(`rediss://default:${PASSWORD}@redis.example.org:6380`)).toBe("rediss://default:***@redis.example.org:6380");
    expect(maskSecrets(`https://svc:${PASSWORD}@core.example.org/api`)).toBe("https://svc:***@core.example.org/api");
    expect(maskSecrets(`http://:${PASSWORD}@127.0.0.1:8080`)).toBe("http://:***@127.0.0.1:8080");
  });

  test("an IPv6 host", () => {
    expect(maskSecrets(`redis://:${PASSWORD}@[::1]:6379`)).toBe("redis://:***@[::1]:6379");
    expect(maskSecrets(`redis://user:${PASSWORD}@[2001:db8::7]:6379/0`)).toBe("redis://user:***@[2001:db8::7]:6379/0");
  });

  test("a password with '@' or ':', encoded or not", () => {
    expect(maskSecrets("redis://:p%40ss%3Aw0rd@host:6379")).toBe("redis://:***@host:6379");
    expect(maskSecrets("redis://user:p@ss:w0rd@host:6379")).toBe("redis://user:***@host:6379");
  });

  test("a password in the query, where ioredis also reads one", () => {
    expect(maskSecrets(`redis://host:6379/0?password=${PASSWORD}&db=1`)).toBe("redis://host:6379/0?password=***&db=1");
  });

  test("URLs inside a text or a JSON line; the rest untouched, and masking twice changes nothing", () => {
    const line = JSON.stringify({ message: `connect to redis://:${PASSWORD}@h:1 failed`, url: "http://0.0.0.0:8080", mail: "a@b" });
    const masked = maskSecrets(line);
    expect(JSON.parse(masked)).toEqual({ message: "connect to redis://:***@h:1 failed", url: "http://0.0.0.0:8080", mail: "a@b" });
    expect(maskSecrets(masked)).toBe(masked);
  });
});

describe("every log line is scrubbed, whatever a caller or a library put in it", () => {
  /** What `log` writes on stderr while `run` runs, in `format`. */
  function written(format: "json" | "pretty", run: () => void): string {
    const write = process.stderr.write;
    const before = process.env.IAPPS_LOG_FORMAT;
    let out = "";
    process.stderr.write = ((chunk: string) => {
      out += chunk;
      return true;
    }) as typeof process.stderr.write;
    process.env.IAPPS_LOG_FORMAT = format;
    try {
      run();
    } finally {
      process.stderr.write = write;
      if (before === undefined) delete process.env.IAPPS_LOG_FORMAT;
      else process.env.IAPPS_LOG_FORMAT = before;
    }
    return out;
  }

  for (const format of ["json", "pretty"] as const) {
    test(`${format}: a URL in the message and in a field`, () => {
      const out = written(format, () =>
        log("error", `cannot reach redis://:${PASSWORD}@127.0.0.1:6390`, { error: new Error(`ECONNREFUSED rediss://app:${PASSWORD}@[::1]:6380`).message }),
      );
      expect(out).toContain("redis://:***@127.0.0.1:6390");
      expect(out).toContain("rediss://app:***@[::1]:6380");
      expect(out).not.toContain(PASSWORD);
    });
  }
});

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iapps-secrets-"));
});

afterAll(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

/** An empty config.toml: only the variables of each test apply. */
function emptyConfig(): string {
  const path = join(dir, "empty.toml");
  writeFileSync(path, "");
  return path;
}

/** The environment of a CLI child: this process's, without its IAPPS_ variables, plus `extra`. */
function cliEnvironment(extra: Record<string, string>): Record<string, string> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("IAPPS_")));
  return { ...(inherited as Record<string, string>), IAPPS_LOG_FORMAT: "json", ...extra };
}

/** Runs `bun src/main.ts <args>` to its end. */
function cli(args: string[], extra: Record<string, string>) {
  const result = spawnSync(BUN, ["src/main.ts", ...args], { cwd: ROOT, env: cliEnvironment(extra), encoding: "utf8", timeout: 30_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}`, stdout: result.stdout };
}

describe("bun src/main.ts config masks every URL's password", () => {
  const environment = {
    IAPPS_REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:6390`,
    IAPPS_REDIS_CLUSTER: JSON.stringify([`redis://:${PASSWORD}@127.0.0.1:7000`, `redis://app:${PASSWORD}@127.0.0.1:7001`, "redis://127.0.0.1:7002"]),
    IAPPS_UCLOUD_CORE_URL: `https://provider:${PASSWORD}@core.example.org`,
  };

  test("the whole configuration", () => {
    const result = cli(["config", "--config", emptyConfig()], environment);
    expect(result.status).toBe(0);
    const shown = JSON.parse(result.stdout) as { redis: { url: string; cluster: string[] }; ucloud: { core_url: string } };
    expect(shown.redis.url).toBe("redis://:***@127.0.0.1:6390");
    expect(shown.redis.cluster).toEqual(["redis://:***@127.0.0.1:7000", "redis://app:***@127.0.0.1:7001", "redis://127.0.0.1:7002"]);
    expect(shown.ucloud.core_url).toBe("https://provider:***@core.example.org");
    expect(result.output).not.toContain(PASSWORD);
  }, 40_000);

  test("config redis", () => {
    const result = cli(["config", "redis", "--config", emptyConfig()], environment);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("redis://:***@127.0.0.1:6390");
    expect(result.output).not.toContain(PASSWORD);
  }, 40_000);

  test("config redis.url", () => {
    const result = cli(["config", "redis.url", "--config", emptyConfig()], environment);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("redis://:***@127.0.0.1:6390\n");
    expect(result.output).not.toContain(PASSWORD);
  }, 40_000);

  test("config redis.cluster", () => {
    const result = cli(["config", "redis.cluster", "--config", emptyConfig()], environment);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(["redis://:***@127.0.0.1:7000", "redis://app:***@127.0.0.1:7001", "redis://127.0.0.1:7002"]);
    expect(result.output).not.toContain(PASSWORD);
  }, 40_000);

  test("a config.toml that is not valid TOML: the quoted line is masked", () => {
    const path = join(dir, "broken.toml");
    writeFileSync(path, `[redis]\nurl = "redis://:${PASSWORD}@127.0.0.1:6390\n`);
    const result = cli(["config", "--config", path], {});
    expect(result.status).toBe(2);
    expect(result.output).toContain("not valid TOML");
    expect(result.output).toContain("***");
    expect(result.output).not.toContain(PASSWORD);
  }, 40_000);
});

describe("bun src/main.ts queue stats with Redis down fails, masked", () => {
  test("exits non-zero and names the URL without its password", async () => {
    const port = await freePort();
    const result = cli(["queue", "stats", "--config", emptyConfig()], {
      IAPPS_REDIS_URL: `redis://user:${PASSWORD}@127.0.0.1:${port}`,
      IAPPS_REDIS_COMMAND_TIMEOUT: "300ms",
    });
    expect(result.status).not.toBe(0);
    expect(result.output).toContain(`redis://user:***@127.0.0.1:${port}`);
    expect(result.output).not.toContain(PASSWORD);
  }, 40_000);
});

describe("the API's startup line masks the password it connects with", () => {
  let redis: ChildProcess;
  let redisPort: number;

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await spawnRedisServer([
      ...["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      ...["--requirepass", PASSWORD],
    ]);
  });

  afterAll(async () => {
    const exited = new Promise((resolve) => redis.once("exit", resolve));
    redis.kill("SIGKILL");
    await exited;
  });

  test("bun src/main.ts api: 'listening' shows redis://:***@..., and the API does reach Redis", async () => {
    const port = await freePort();
    const api = startProcess(["src/main.ts", "api", "--config", emptyConfig()], {
      IAPPS_REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${redisPort}`,
      IAPPS_AUTH_JWT_SECRET: SECRET,
      IAPPS_SERVER_HOST: "127.0.0.1",
      IAPPS_SERVER_PORT: String(port),
      IAPPS_STORAGE_ROOT: dir,
      IAPPS_LOG_LEVEL: "info",
      IAPPS_LOG_FORMAT: "json",
    });
    try {
      const line = await eventually(
        async () => {
          if (api.process.exitCode !== null) throw new Error(`the API exited (${api.process.exitCode}):\n${api.output()}`);
          return api.output().split("\n").find((l) => l.includes("listening"));
        },
        30,
        "the 'listening' line",
      );
      expect((JSON.parse(line) as { redis: string }).redis).toBe(`redis://:***@127.0.0.1:${redisPort}`);
      // The password is masked only where printed: the API still authenticates with it.
      const ready = await eventually(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.ok, 15, "/readyz answering 200");
      expect(ready).toBe(true);
      expect(api.output()).not.toContain(PASSWORD);
    } finally {
      api.kill("SIGKILL");
      await api.exited;
    }
  }, 60_000);
});
