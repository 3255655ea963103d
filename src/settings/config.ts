// config.toml: its schema, the [env.<name>] overlays, IAPPS_<SECTION>_<KEY> overrides, and the
// error that names the key path when something is wrong, and the configuration as it may be
// shown (secrets hidden). Imports valibot, smol-toml and src/config/{duration,secrets}.ts only.

import { existsSync, readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import * as v from "valibot";
import { durationMs, durationText } from "./duration.ts";
import { maskSecrets } from "../base/secrets.ts";

const MAX_TIMER_MS = 2 ** 31 - 1;

/** `[api] cache_max_bytes` when unset: 256 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 256 * 1024 * 1024;

/** The schemas of the duration settings, to show them as they are written (`asWritten`). */
const durationSchemas = new WeakSet<v.GenericSchema>();

/** A duration setting: written "30s", held in ms. */
const duration = (fallback: string) => {
  const schema = v.optional(
    v.pipe(
      v.string("expected a duration such as \"30s\""),
      v.check((s) => durationMs(s) !== null, "expected a duration such as \"200ms\", \"30s\" or \"15m\""),
      // Timers take at most 2^31-1 ms; a longer one would silently fire after 1 ms.
      v.check((s) => (durationMs(s) ?? 0) <= MAX_TIMER_MS, "must be at most 24 days"),
      v.transform((s) => durationMs(s)!),
    ),
    fallback,
  );
  durationSchemas.add(schema);
  return schema;
};
const port = (fallback: number) =>
  v.optional(v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(0), v.maxValue(65535)), fallback);
const positiveInt = (fallback: number, max = 1_000_000_000) =>
  v.optional(v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(1), v.maxValue(max)), fallback);
const str = (fallback: string) => v.optional(v.string("expected a string"), fallback);
const bool = (fallback: boolean) => v.optional(v.boolean("expected true or false"), fallback);

const appEntries = (image: string, imageVersion: string) => ({
  enabled: bool(true),
  /** Container image of the app's pod, without its tag. */
  image: str(image),
  /** The image tag; also the pod's `ucloud.dk/iapp-version` where the app has a version. */
  image_version: str(imageVersion),
});

/** `redis://host:port` or rediss://, with or without `user:password@` before the host. */
const SEED_NODE = /^rediss?:\/\/[^/?#\s]+:\d+\/?$/;

/** A seed node URL as the Redis clients read it, its username and password decoded; null if they cannot. */
function parseSeed(seed: string): { protocol: string; hostname: string; port: string; username: string; password: string } | null {
  try {
    const url = new URL(seed);
    return { protocol: url.protocol, hostname: url.hostname, port: url.port, username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
  } catch {
    return null;
  }
}

/** A seed node URL with a host and a port that the Redis clients can read (its form is the regex's to check). */
function readableSeed(seed: string): boolean {
  if (!SEED_NODE.test(seed)) return true;
  const url = parseSeed(seed);
  return url !== null && url.hostname !== "" && url.port !== "";
}

export const ConfigSchema = v.strictObject({
  name: str("ucloud-iapps"),
  main: str("src/main.ts"),
  compatibility_date: str("2026-11-28"),
  vars: v.optional(v.record(v.string(), v.union([v.string(), v.number(), v.boolean()], "expected a string, number or boolean")), {}),
  server: v.optional(
    v.strictObject({
      host: str("0.0.0.0"),
      port: port(8080),
      /** How long SIGTERM waits for the requests in flight before it cuts the connections left. */
      shutdown_timeout: duration("25s"),
      /**
       * The service's public base URL (`https://provider.example.org`): what shell sessions tell the
       * UI to open their WebSocket on. Empty: the URL the request came in on.
       */
      public_url: str(""),
    }),
    {},
  ),
  log: v.optional(
    v.strictObject({
      /** Lines below this level are left out; IAPPS_LOG_LEVEL sets it too. */
      level: v.optional(v.picklist(["debug", "info", "warn", "error"], "expected \"debug\", \"info\", \"warn\" or \"error\""), "info"),
      /** `json` (one object per line), `pretty` (readable), or `auto`: pretty when stderr is a terminal, else JSON. */
      format: v.optional(v.picklist(["json", "pretty", "auto"], "expected \"json\", \"pretty\" or \"auto\""), "auto"),
    }),
    {},
  ),
  redis: v.optional(
    v.strictObject({
      url: v.optional(
        v.pipe(v.string("expected a string"), v.regex(/^rediss?:\/\//, "expected a redis:// or rediss:// URL")),
        "redis://127.0.0.1:6379",
      ),
      /**
       * Seed nodes of a Redis Cluster (`redis://host:port`); when given, `url` is not used. A few
       * of the nodes are enough: the rest are discovered. The username and password of the first
       * seed that has them (`redis://user:password@host:port`), and rediss:// (TLS), hold for every node.
       */
      cluster: v.optional(
        v.pipe(
          v.array(
            v.pipe(
              v.string("expected a string"),
              v.regex(SEED_NODE, "expected redis://host:port (or rediss://, and user:password@ before the host)"),
              v.check(readableSeed, "expected redis://host:port with a valid host and port, and '%' in a password percent-encoded (%25)"),
            ),
            "expected a list of redis://host:port",
          ),
          // Every node is reached with TLS or every node without.
          v.check((seeds) => new Set(seeds.map((seed) => parseSeed(seed)?.protocol)).size <= 1, "expected every seed node with the same scheme (redis:// or rediss://)"),
        ),
        [],
      ),
      /**
       * Replicas that must have a write before it is acknowledged (WAIT); 0 acknowledges once the
       * master has it. With 1, a master that dies after a 200 loses nothing its replica had.
       */
      wait_replicas: v.optional(v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(0), v.maxValue(16)), 0),
      /** Connections reserved for WATCH/MULTI/EXEC transactions, one per transaction in flight. */
      pool_size: positiveInt(16, 1024),
      /**
       * How long a write waits for a free transaction connection when all are busy (a burst);
       * past it the write answers 503 with Retry-After.
       */
      pool_wait: duration("5s"),
      /** How long one Redis command may take before the request answers 503. */
      command_timeout: duration("1s"),
    }),
    {},
  ),
  auth: v.optional(
    v.strictObject({
      jwt_secret: str(""),
      jwt_public_key: str(""),
      jwt_algorithm: v.optional(v.picklist(["RS256", "ES256"], "expected \"RS256\" or \"ES256\""), "RS256"),
    }),
    {},
  ),
  api: v.optional(
    v.strictObject({
      require_etag: bool(false),
      body_limit: positiveInt(1024 * 1024),
      /** Records each replica keeps in memory (least recently used go first); 0 turns the cache off. */
      cache_max_entries: v.optional(
        v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(0), v.maxValue(100_000_000)),
        100_000,
      ),
      /**
       * Bytes of configuration each replica's cache holds at most (each entry estimated as its
       * serialised configuration plus a fixed overhead); least recently used go first, and a
       * record larger than the whole budget is not cached. 0 turns the cache off, as
       * cache_max_entries = 0 does.
       */
      cache_max_bytes: v.optional(v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(0), v.maxValue(2 ** 50)), DEFAULT_CACHE_MAX_BYTES),
      /** How long a request waits for another replica that is registering the same record's first job. */
      job_claim_wait: duration("10s"),
      /** Versions of each record's configuration kept in its history (spec §11). */
      history_length: positiveInt(20, 1000),
      /** The audit stream `iapps:audit` is trimmed to about this many entries (XADD MAXLEN ~). */
      audit_max_length: positiveInt(1_000_000, 2 ** 40),
    }),
    {},
  ),
  worker: v.optional(
    v.strictObject({
      /** Tasks one worker process runs at once. */
      concurrency: positiveInt(32, 10_000),
      /** A task's lease: renewed while it runs; when a worker dies, its tasks go to another after this. */
      lease: duration("30s"),
      /** Attempts before a failing task becomes a dead letter. */
      max_attempts: positiveInt(8, 1000),
      backoff_base: duration("200ms"),
      backoff_max: duration("5m"),
      /** How often every record is checked, and gets a reconcile task when one would change something. */
      resync_interval: duration("30s"),
      /** How long SIGTERM waits for running tasks before the worker exits. */
      shutdown_timeout: duration("25s"),
      /** Port of the worker's /healthz, /readyz and /metrics listener (on [server] host); 0: none. */
      metrics_port: port(0),
    }),
    {},
  ),
  kubernetes: v.optional(
    v.strictObject({
      /** `embedded` runs the simulator (role all or kube-sim); `kubeconfig` or `in-cluster` for a real cluster. */
      mode: v.optional(v.picklist(["embedded", "kubeconfig", "in-cluster"], "expected \"embedded\", \"kubeconfig\" or \"in-cluster\""), "embedded"),
      kubeconfig: str("~/.kube/config"),
      namespace: v.optional(
        v.pipe(v.string("expected a string"), v.regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "expected a Kubernetes namespace name")),
        "ucloud-apps",
      ),
      /** Where the embedded simulator listens (127.0.0.1); 0 picks a free port. */
      simulator_port: port(6443),
      /** How long a simulated pod stays Pending before it runs. */
      simulator_start_delay: duration("200ms"),
    }),
    {},
  ),
  storage: v.optional(
    v.strictObject({
      /** Where drives live, as this process sees them: `<root>/<driveId>` (see src/storage). */
      root: str("./var/storage"),
      /**
       * The storage root as the Kubernetes nodes see it: the path of the pods' `ucloud-filesystem`
       * hostPath volume. Empty: the same as `root` (made absolute).
       */
      host_path: str(""),
      /** A PersistentVolumeClaim holding the storage root: when set, pods mount it instead of a hostPath. */
      volume_claim: str(""),
    }),
    {},
  ),
  ucloud: v.optional(
    v.strictObject({
      provider_id: v.optional(
        v.pipe(v.string("expected a string"), v.regex(/^[A-Za-z0-9._-]+$/, "expected letters, digits, '.', '_' or '-'")),
        "k8s",
      ),
      /** `embedded`: jobs kept in Redis. `core`: jobs registered with and read from UCloud/Core. */
      mode: v.optional(v.picklist(["embedded", "core"], "expected \"embedded\" or \"core\""), "embedded"),
      /** UCloud/Core's base address (mode core), such as "https://cloud.example.org". */
      core_url: v.optional(
        v.pipe(
          v.string("expected a string"),
          v.check((s) => s === "" || /^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/.test(s), "expected an http:// or https:// address"),
          v.transform((s) => s.replace(/\/+$/, "")),
        ),
        "",
      ),
      /** The provider's refresh token (mode core); set it with IAPPS_UCLOUD_REFRESH_TOKEN, not in a file. */
      refresh_token: str(""),
      /** How long one call to Core may take before it counts as unanswered (503 / retry). */
      core_timeout: duration("10s"),
    }),
    {},
  ),
  apps: v.optional(
    v.strictObject({
      syncthing: v.optional(
        v.strictObject({
          ...appEntries("dreg.cloud.sdu.dk/ucloud/syncthing-go", "1.0.0"),
          /** Ports handed to Syncthing pods: [port_min, port_max), never 8435. */
          port_min: port(21000),
          port_max: port(21100),
          /** The external IP of the Syncthing services (`externalIPs`). */
          ip_address: str("127.0.0.1"),
          /** Whether Syncthing may use the public relays (`SYNCTHING_RELAYS`). */
          relays: bool(true),
        }),
        {},
      ),
      terminal: v.optional(
        v.strictObject({
          ...appEntries("docker.io/library/alpine", "3"),
          /** A terminal runs while it had activity within this long. */
          inactivity: duration("15m"),
          /** How long a shell session (openTerminalInFolder) can be attached, counted again from each attach. */
          shell_session_ttl: duration("1h"),
          /** How many live shell sessions one user may hold; opening one more answers 403. */
          shell_sessions_per_user: v.optional(v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(1, "must be at least 1")), 16),
        }),
        {},
      ),
    }),
    {},
  ),
});

export type Config = v.InferOutput<typeof ConfigSchema>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface LoadOptions {
  /** Path of config.toml; when absent, defaults apply (plus environment overrides). */
  file?: string;
  env?: string;
  environment?: Record<string, string | undefined>;
}

/**
 * Where the configuration comes from when no command line names it: `IAPPS_CONFIG` (a file),
 * else `config.toml` in the working directory when there is one; the overlay from `IAPPS_ENV`.
 * For src/runtimes/serve.ts, which `deno serve`, `bun` and Node start without arguments of ours.
 */
export function configSource(environment: Record<string, string | undefined> = process.env): { file?: string; env?: string } {
  const file = environment.IAPPS_CONFIG || (existsSync("config.toml") ? "config.toml" : undefined);
  return { file, env: environment.IAPPS_ENV || undefined };
}

export function loadConfig(options: LoadOptions = {}): Config {
  const environment = options.environment ?? process.env;
  let raw: Record<string, unknown> = {};
  if (options.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.file, "utf8");
    } catch (e) {
      throw new ConfigError(`${options.file}: cannot read the file (${(e as Error).message})`);
    }
    try {
      raw = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      // The parser quotes the offending line, which may hold a URL with its password.
      throw new ConfigError(`${options.file}: not valid TOML: ${maskSecrets((e as Error).message)}`);
    }
  }
  return resolveConfig(raw, { source: options.file ?? "configuration", env: options.env, environment });
}

export function resolveConfig(
  raw: Record<string, unknown>,
  options: { source: string; env?: string; environment: Record<string, string | undefined> },
): Config {
  const { env: envTables, ...base } = raw;
  let merged: Record<string, unknown> = base;
  if (options.env !== undefined) {
    const table = isTable(envTables) ? envTables[options.env] : undefined;
    if (!isTable(table)) {
      const known = isTable(envTables) ? Object.keys(envTables).join(", ") || "none" : "none";
      throw new ConfigError(`${options.source}: --env ${options.env}: there is no [env.${options.env}] table (known: ${known})`);
    }
    merged = deepMerge(base, table);
  }
  merged = applyEnvironment(merged, options.environment);
  // A mistake in an overlay that is not selected today should not wait for the day it is.
  if (isTable(envTables)) {
    for (const [name, table] of Object.entries(envTables)) {
      if (name === options.env) continue;
      const overlaid = v.safeParse(ConfigSchema, isTable(table) ? deepMerge(base, table) : table);
      if (!overlaid.success) {
        throw invalid(`${options.source}: [env.${name}]`, overlaid.issues);
      }
    }
  }
  const result = v.safeParse(ConfigSchema, merged);
  if (!result.success) throw invalid(options.source, result.issues);
  checkCoreMode(options.source, result.output);
  return result.output;
}

/** Core mode needs Core's address, the provider's refresh token, and Core's public key. */
function checkCoreMode(source: string, config: Config) {
  if (config.ucloud.mode !== "core") return;
  const missing: string[] = [];
  if (config.ucloud.core_url === "") missing.push("  ucloud.core_url: required when ucloud.mode is \"core\"");
  if (config.ucloud.refresh_token === "") {
    missing.push("  ucloud.refresh_token: required when ucloud.mode is \"core\" (set IAPPS_UCLOUD_REFRESH_TOKEN)");
  }
  if (config.auth.jwt_public_key === "") {
    missing.push("  auth.jwt_public_key: required when ucloud.mode is \"core\" (the PEM public key Core signs its calls with)");
  }
  if (missing.length > 0) throw new ConfigError(`${source}: invalid configuration\n${missing.join("\n")}`);
}

function invalid(where: string, issues: readonly v.BaseIssue<unknown>[]): ConfigError {
  const lines = issues.map((issue) => `  ${v.getDotPath(issue) ?? "(top level)"}: ${describeIssue(issue)}`);
  return new ConfigError(`${where}: invalid configuration\n${lines.join("\n")}`);
}

function describeIssue(issue: v.BaseIssue<unknown>): string {
  if (issue.type === "strict_object" && issue.input !== undefined) return "unknown key";
  return issue.message;
}

/**
 * The two ways an operator changes a setting, for messages: `settingName("server.port")` is
 * "IAPPS_SERVER_PORT or [server] port".
 */
export function settingName(path: string): string {
  const parts = path.split(".");
  const key = parts.pop()!;
  return `${environmentVariable([...parts, key])} or [${parts.join(".")}] ${key}`;
}

function environmentVariable(path: string[]): string {
  return `IAPPS_${path.join("_").toUpperCase()}`;
}

/** Every overridable leaf: its dotted path, the environment variable, and the kind of value it takes. */
export function overridableKeys(): { path: string[]; variable: string; kind: string }[] {
  const out: { path: string[]; variable: string; kind: string }[] = [];
  const walk = (schema: v.GenericSchema, path: string[]) => {
    const base = unwrap(schema);
    if (base.type === "strict_object" || base.type === "object") {
      for (const [key, child] of Object.entries((base as unknown as v.ObjectSchema<v.ObjectEntries, undefined>).entries)) {
        walk(child as v.GenericSchema, [...path, key]);
      }
      return;
    }
    if (base.type === "record") return;
    out.push({ path, variable: environmentVariable(path), kind: base.type });
  };
  walk(ConfigSchema, []);
  return out;
}

function unwrap(schema: v.GenericSchema): v.GenericSchema {
  let s = schema as v.GenericSchema & { wrapped?: v.GenericSchema; pipe?: v.GenericSchema[] };
  for (;;) {
    if (s.wrapped) s = s.wrapped as typeof s;
    else if (s.pipe?.[0] && s.pipe[0] !== s) s = s.pipe[0] as typeof s;
    else return s;
  }
}

function applyEnvironment(config: Record<string, unknown>, environment: Record<string, string | undefined>) {
  let out = config;
  for (const key of overridableKeys()) {
    const value = environment[key.variable];
    if (value === undefined) continue;
    out = setPath(out, key.path, coerce(value, key.kind));
  }
  return out;
}

function coerce(value: string, kind: string): unknown {
  if (kind === "number") return value.trim() === "" || Number.isNaN(Number(value)) ? value : Number(value);
  if (kind === "boolean") return value === "true" ? true : value === "false" ? false : value;
  if (kind === "array") {
    try {
      return JSON.parse(value);
    } catch {
      return value.split(",").map((s) => s.trim()).filter(Boolean);
    }
  }
  return value;
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path;
  if (head === undefined) return obj;
  const child = obj[head];
  return { ...obj, [head]: rest.length === 0 ? value : setPath(isTable(child) ? child : {}, rest, value) };
}

function deepMerge(base: Record<string, unknown>, overlay: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overlay)) {
    const current = out[key];
    out[key] = isTable(current) && isTable(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * The resolved configuration with secrets hidden, for `bun src/main.ts config`: the tokens whole,
 * and the password of every URL in it (`[redis] url` and `cluster`, `[ucloud] core_url`, `[vars]`).
 */
export function redacted(config: Config): Config {
  const hide = (s: string) => (s === "" ? "" : "<redacted>");
  const masked = maskStrings(config) as Config;
  return {
    ...masked,
    auth: { ...masked.auth, jwt_secret: hide(config.auth.jwt_secret) },
    ucloud: { ...masked.ucloud, refresh_token: hide(config.ucloud.refresh_token) },
  };
}

function maskStrings(value: unknown): unknown {
  if (typeof value === "string") return maskSecrets(value);
  if (Array.isArray(value)) return value.map(maskStrings);
  if (isTable(value)) return Object.fromEntries(Object.entries(value).map(([key, child]) => [key, maskStrings(child)]));
  return value;
}

/**
 * The configuration as config.toml writes it, for `bun src/main.ts config`: durations as
 * strings ("25s", not 25000). The code keeps them in ms.
 */
export function asWritten(config: Config): Record<string, unknown> {
  const walk = (schema: v.GenericSchema, value: unknown): unknown => {
    if (durationSchemas.has(schema) && typeof value === "number") return durationText(value);
    const base = unwrap(schema);
    if ((base.type !== "strict_object" && base.type !== "object") || !isTable(value)) return value;
    const entries = (base as unknown as v.ObjectSchema<v.ObjectEntries, undefined>).entries;
    return Object.fromEntries(Object.entries(value).map(([key, child]) => [key, entries[key] ? walk(entries[key] as v.GenericSchema, child) : child]));
  };
  return walk(ConfigSchema, config) as Record<string, unknown>;
}
