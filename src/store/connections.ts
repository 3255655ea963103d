// Redis connections, and the discipline they follow (see architecture.md, "ioredis pitfalls"):
//
// - One shared connection for plain commands (reads, job registry, the queue), auto-pipelined.
//   It reconnects by itself, but never queues commands while disconnected and never re-sends
//   unanswered ones: a request that meets a Redis outage fails at once with 503 instead of
//   hanging. Handed out through `readyConnection`, behind a proxy that gives every command a
//   deadline of its own.
// - On a Redis Cluster (`[redis] cluster`) the shared connection is ioredis' Cluster client. The
//   seed URLs' username and password (and TLS, for rediss://) apply to every connection to every
//   node: `nodeOptions`. Node addresses never carry them.
// - Every client made here has the Redis scripts loaded so far defined on it (scripts.ts).
// - Error messages built here mask any URL password a connection error quotes (spec §10).
//
// The transaction connections are transaction-pool.ts's; which node serves a key is routing.ts's.
// Imports ioredis, src/base/secrets.ts, src/store/redis-errors.ts, src/store/scripts.ts and
// src/store/tracing-channels.ts (so that no command pays for tracing nobody listens to) only.

import "./tracing-channels.ts";
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import { maskSecrets } from "../base/secrets.ts";
import { RedisUnavailableError } from "./redis-errors.ts";
import { defineLoadedScripts } from "./scripts.ts";

/** A single server's connection, or a Redis Cluster's client: the commands the service uses are the same. */
export type RedisClient = Redis | Cluster;

export interface RedisSettings {
  url: string;
  /**
   * Seed nodes (`redis://[user:password@]host:port`, or rediss://) of a Redis Cluster; empty for a
   * single server. The first seed's credentials and the seeds' scheme hold for every node.
   */
  cluster?: string[];
  poolSize: number;
  /** How long a transaction waits for a free pooled connection before it answers "busy" (`[redis] pool_wait`). */
  poolWaitMs: number;
  /** Upper bound for one command, one connect, and one wait for a pooled connection. */
  commandTimeoutMs: number;
  /** Called for connection trouble worth a log line (deduplicated by the caller's logger). */
  onError?: (message: string) => void;
}

/** Options of every connection: nothing queued while disconnected, nothing re-sent after a reconnect. */
export const noQueueNoReplay: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
  enableAutoPipelining: false,
};

function isClusterSettings(settings: RedisSettings): boolean {
  return (settings.cluster?.length ?? 0) > 0;
}

/** The host and port of a node's URL. */
export function hostAndPortOf(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(parsed.port || 6379) };
}

/** What a connection to a node needs besides its address. */
export type NodeOptions = Pick<RedisOptions, "username" | "password" | "tls">;

/**
 * What every connection to a cluster node needs besides its address: the username and password
 * of the first seed URL that has any, decoded as ioredis decodes a URL's, and TLS when the seeds
 * are rediss:// (the configuration has them all alike). Empty for a single server: its URL
 * carries its own.
 */
export function nodeOptions(settings: RedisSettings): NodeOptions {
  if (!isClusterSettings(settings)) return {};
  const seeds = settings.cluster!.map((url) => new URL(url));
  const options: NodeOptions = {};
  const withCredentials = seeds.find((seed) => seed.username !== "" || seed.password !== "");
  if (withCredentials) {
    options.username = decodeURIComponent(withCredentials.username);
    options.password = decodeURIComponent(withCredentials.password);
  }
  if (seeds.some((seed) => seed.protocol === "rediss:")) options.tls = {};
  return options;
}

/** `url` without its username and password: a node's address. */
export function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = "";
  parsed.password = "";
  return parsed.toString();
}

/**
 * A connection as `options` say, to the single server or to the cluster. On a cluster the same
 * options apply to every node connection, and `retryStrategy` to reconnecting the cluster.
 */
export function createClient(settings: RedisSettings, options: RedisOptions): RedisClient {
  if (!isClusterSettings(settings)) return defineLoadedScripts(new Redis(settings.url, options));
  const { retryStrategy, enableAutoPipelining: _single, lazyConnect, enableOfflineQueue, ...perNode } = options;
  const clusterOptions: ClusterOptions = {
    // Every node connection, the seeds' and the discovered ones', authenticates alike.
    redisOptions: { ...perNode, ...nodeOptions(settings) },
    enableOfflineQueue,
    // ioredis cannot follow a MOVED for an auto-pipeline whose commands span slots: on a
    // cluster each command goes on its own.
    enableAutoPipelining: false,
    lazyConnect,
    clusterRetryStrategy: retryStrategy ? (attempt) => retryStrategy(attempt) ?? null : undefined,
    // A failover moves slots: ask the cluster again soon, and follow MOVED and ASK.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 16,
    slotsRefreshTimeout: Math.max(settings.commandTimeoutMs, 1000),
    slotsRefreshInterval: 5000,
  };
  return defineLoadedScripts(new Cluster(settings.cluster!.map(hostAndPortOf), clusterOptions));
}

export function createCommandConnection(settings: RedisSettings): RedisClient {
  const redis = createClient(settings, {
    ...noQueueNoReplay,
    // Commands issued in the same tick by concurrent requests (or by a worker finishing many
    // tasks) share one socket write. Safe here: this connection never holds a WATCH.
    enableAutoPipelining: true,
    lazyConnect: true,
    connectTimeout: settings.commandTimeoutMs,
    commandTimeout: settings.commandTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * attempt, 1000),
  });
  reportErrors(redis, "command connection", settings.onError);
  redis.connect().catch(() => {
    // The retry strategy keeps trying; requests meanwhile answer 503.
  });
  return redis;
}

/** Hands out the shared connection once it is ready: waits through a reconnect for up to `timeoutMs`, then fails. */
export interface CommandConnection {
  (): Promise<RedisClient>;
  /**
   * The connection, when a command issued now is written at once; else undefined (call the
   * connection to wait for it). For a caller with one command to send: no turn spent on a promise.
   * readyConnection's have it; a connection made otherwise (a test's) need not.
   */
  now?(): RedisClient | undefined;
}

export function readyConnection(client: RedisClient, timeoutMs: number): CommandConnection {
  const redis = client;
  const withDeadline = withDeadlines(client, timeoutMs);
  const ready = Promise.resolve(withDeadline);
  const writable = () => !(redis instanceof Redis) || redis.stream?.writable !== false;
  // One listener for all callers waiting on the same reconnect.
  let reconnected: Promise<RedisClient> | null = null;
  const connection = (): Promise<RedisClient> => {
    if (redis.status === "ready") {
      if (writable()) return ready;
      // The socket is gone but ioredis has not handled its close event yet. A command sent now
      // fails at once, and a caller that retries in a loop would never let that event through:
      // yield to the event loop first.
      return new Promise((resolve) => setTimeout(() => resolve(ready), 1));
    }
    if (redis.status === "end") return Promise.reject(new RedisUnavailableError("the Redis connection is closed"));
    reconnected ??= new Promise<RedisClient>((resolve) =>
      redis.once("ready", () => {
        reconnected = null;
        resolve(ready);
      }),
    );
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisUnavailableError(`Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([reconnected, timeout]).finally(() => clearTimeout(timer));
  };
  return Object.assign(connection, { now: () => (redis.status === "ready" && writable() ? withDeadline : undefined) });
}

/** Methods whose result is not a command's promise: builders and event plumbing. */
const WITHOUT_DEADLINE = new Set(["pipeline", "multi", "sendCommand", "on", "once", "off", "removeListener", "duplicate", "disconnect", "quit", "nodes"]);

/**
 * The client, with every command answering or failing within `timeoutMs` of being issued.
 * ioredis' own commandTimeout starts when a command is written, and auto-pipelining runs one
 * batch at a time: behind a batch stuck on a frozen Redis, a command would wait for that batch's
 * timeout before its own began (two timeouts instead of one).
 *
 * Builders and event plumbing run on the client itself, not on the proxy: a pipeline copies its
 * client's defined script commands (src/store/scripts.ts), and copied from the proxy they would
 * run beside the pipeline instead of in it.
 */
function withDeadlines<T extends RedisClient>(client: T, timeoutMs: number): T {
  const deadlines = new Deadlines(timeoutMs);
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(client, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string" || property.startsWith("_")) return value;
      let bound = wrapped.get(property);
      if (bound === undefined) {
        const command = value as (...a: unknown[]) => unknown;
        bound = WITHOUT_DEADLINE.has(property)
          ? command.bind(target)
          : (...args: unknown[]) => {
              const result = command.apply(target, args);
              return result instanceof Promise ? deadlines.of(result) : result;
            };
        wrapped.set(property, bound);
      }
      return bound;
    },
  });
}

/**
 * A deadline of `ms` for every command of a connection (each fails with RedisUnavailableError
 * once `ms` passed without its answer), with one timer for them all instead of one per command: the timer's setTimeout and clearTimeout were most of what the deadline cost
 * a cache-off retrieve. Deadlines of one length expire in the order they were set, so the timer
 * waits only for the oldest command still unanswered; and one connection answers its commands in
 * order, so the answered ones leave from the front.
 */
class Deadlines {
  /** When each command was issued (performance.now()), oldest first. */
  private readonly issued: number[] = [];
  /** Each command's rejection; undefined once it was answered or failed at its deadline. */
  private readonly rejects: (((error: Error) => void) | undefined)[] = [];
  /** Every entry before this index is done. */
  private first = 0;
  /** The sequence number of the entry at index 0. */
  private dropped = 0;
  /** Set while any command is pending, to fire no later than the oldest one's deadline. */
  private timer: Timer | undefined;

  constructor(private readonly ms: number) {}

  /** `promise`, or a RedisUnavailableError once `ms` passed without it. */
  of<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const sequence = this.dropped + this.rejects.length;
      this.issued.push(performance.now());
      this.rejects.push(reject);
      this.timer ??= setTimeout(this.expire, this.ms);
      // Its own failure, if it comes after the deadline, is no news: handled here, and ignored.
      promise.then(
        (value) => {
          this.done(sequence);
          resolve(value);
        },
        (error: unknown) => {
          this.done(sequence);
          reject(error);
        },
      );
    });
  }

  private done(sequence: number): void {
    const index = sequence - this.dropped;
    if (index < this.first) return; // failed at its deadline before
    this.rejects[index] = undefined;
    if (index === this.first) this.advance();
  }

  /** Moves past the done entries at the front; drops them once they are all or most. */
  private advance(): void {
    const { issued, rejects } = this;
    let first = this.first;
    while (first < rejects.length && rejects[first] === undefined) first++;
    if (first === rejects.length) {
      this.dropped += first;
      issued.length = 0;
      rejects.length = 0;
      this.first = 0;
      clearTimeout(this.timer);
      this.timer = undefined;
    } else if (first >= 1024 && first * 2 >= rejects.length) {
      this.dropped += first;
      issued.splice(0, first);
      rejects.splice(0, first);
      this.first = 0;
    } else {
      this.first = first;
    }
  }

  private readonly expire = () => {
    this.timer = undefined;
    const now = performance.now();
    const { issued, rejects } = this;
    for (let i = this.first; i < rejects.length; i++) {
      const reject = rejects[i];
      if (reject === undefined) continue;
      const left = issued[i]! + this.ms - now;
      if (left > 0) {
        // A timer may fire a fraction of a millisecond early: never fail a command before its time.
        this.timer = setTimeout(this.expire, Math.ceil(left));
        break;
      }
      rejects[i] = undefined;
      reject(new RedisUnavailableError(`Redis did not answer within ${this.ms} ms`));
    }
    this.advance();
  };
}

function reportErrors(redis: RedisClient, what: string, onError?: (message: string) => void) {
  let lastMessage = "";
  redis.on("error", (e: Error) => {
    if (e.message !== lastMessage) onError?.(`redis ${what}: ${maskSecrets(e.message)}`);
    lastMessage = e.message;
  });
  redis.on("ready", () => {
    lastMessage = "";
  });
}
