// Redis connections, and the discipline they follow (see architecture.md, "ioredis pitfalls"):
//
// - One shared connection for plain commands (reads, job registry, the queue), auto-pipelined.
//   It reconnects by itself,
//   but never queues commands while disconnected and never re-sends unanswered ones: a request
//   that meets a Redis outage fails at once with 503 instead of hanging.
// - A small pool of transaction connections. A WATCH belongs to a connection, so each
//   WATCH/MULTI/EXEC borrows one for its whole duration. Pool connections never reconnect:
//   one that has closed once is thrown away, so an EXEC can only ever run on the connection
//   that holds its WATCH. An interrupted transaction fails; it is never replayed unguarded.
//
// - On a Redis Cluster (`[redis] cluster`) the shared connection is ioredis' Cluster client, and
//   each transaction borrows a connection to the master of its record's hash slot. The seed URLs'
//   username and password (and TLS, for rediss://) apply to every connection to every node:
//   `nodeOptions`. Node addresses (`nodeUrl`, the pools' keys) never carry them.
//
// - Error messages built here mask any URL password a connection error quotes (spec §10).
//
// - Every connection made here has the Redis scripts loaded so far defined on it (scripts.ts).
//
// Imports ioredis, src/base/errors.ts, src/base/secrets.ts, src/store/scripts.ts and
// src/store/slots.ts only.

import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import { maskSecrets } from "../base/secrets.ts";
import { AppError } from "../base/errors.ts";
import { defineLoadedScripts } from "./scripts.ts";
import { hashSlot } from "./slots.ts";

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
  /** Upper bound for one command, one connect, and one wait for a pooled connection. */
  commandTimeoutMs: number;
  /** Called for connection trouble worth a log line (deduplicated by the caller's logger). */
  onError?: (message: string) => void;
}

export class RedisUnavailableError extends Error {
  override name = "RedisUnavailableError";
}

/** A write whose EXEC may or may not have run: its outcome could not be learned. */
export class AmbiguousCommitError extends RedisUnavailableError {
  override name = "AmbiguousCommitError";
}

/** Redis is fine, but every transaction connection of this process stayed busy: overload. */
export class PoolExhaustedError extends RedisUnavailableError {
  override name = "PoolExhaustedError";
}

const noQueueNoReplay: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
  enableAutoPipelining: false,
};

function isClusterSettings(settings: RedisSettings): boolean {
  return (settings.cluster?.length ?? 0) > 0;
}

function nodeOf(url: string): { host: string; port: number } {
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
  return defineLoadedScripts(new Cluster(settings.cluster!.map(nodeOf), clusterOptions));
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
export type CommandConnection = () => Promise<RedisClient>;

export function readyConnection(client: RedisClient, timeoutMs: number): CommandConnection {
  const redis = client;
  const ready = Promise.resolve(withDeadlines(client, timeoutMs));
  // One listener for all callers waiting on the same reconnect.
  let reconnected: Promise<RedisClient> | null = null;
  return () => {
    if (redis.status === "ready") {
      if (!(redis instanceof Redis) || redis.stream?.writable !== false) return ready;
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
}

/** Methods whose result is not a command's promise: builders and event plumbing. */
const UNBOUNDED = new Set(["pipeline", "multi", "sendCommand", "on", "once", "off", "removeListener", "duplicate", "disconnect", "quit", "nodes"]);

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
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(client, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string" || property.startsWith("_")) return value;
      let bound = wrapped.get(property);
      if (bound === undefined) {
        const command = value as (...a: unknown[]) => unknown;
        bound = UNBOUNDED.has(property)
          ? command.bind(target)
          : (...args: unknown[]) => {
              const result = command.apply(target, args);
              return result instanceof Promise ? deadline(result, timeoutMs) : result;
            };
        wrapped.set(property, bound);
      }
      return bound;
    },
  });
}

function deadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisUnavailableError(`Redis did not answer within ${ms} ms`)), ms);
  });
  promise.catch(() => {}); // its own failure, if it comes after the deadline, is no news
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
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

/** True for errors that mean "Redis cannot be reached right now" rather than a bug. */
export function isRedisUnavailable(error: unknown): boolean {
  if (error instanceof RedisUnavailableError) return true;
  if (!(error instanceof Error)) return false;
  if (error.name === "MaxRetriesPerRequestError") return true;
  const message = error.message;
  return (
    message.includes("Connection is closed") ||
    message.includes("Stream isn't writeable") ||
    message.includes("Command timed out") ||
    message.includes("connect ECONNREFUSED") ||
    message.includes("connect ETIMEDOUT") ||
    message.includes("ECONNRESET") ||
    message.includes("EPIPE") ||
    message.includes("Failed to refresh slots cache") ||
    message.includes("Too many Cluster redirections") ||
    message.includes("Cluster isn't ready") ||
    message.includes("None of startup nodes is available") ||
    /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/.test(message)
  );
}

/**
 * A cluster's answer that the key's slot is served elsewhere now (a failover or a resharding):
 * nothing was done, and the same transaction may be tried again on the slot's new master.
 */
export function isSlotMoved(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const texts = [error.message, ...((error as { previousErrors?: Error[] }).previousErrors ?? []).map((e) => e.message)];
  return texts.some((text) => /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|READONLY)\b/.test(text));
}

/** Runs `onBatch` for every key matching `pattern`, with SCAN, on every master of a cluster. */
export async function scanEach(client: RedisClient, pattern: string, count: number, onBatch: (keys: string[]) => Promise<void>): Promise<void> {
  const nodes = client instanceof Cluster ? client.nodes("master") : [client];
  for (const node of nodes) {
    let cursor = "0";
    do {
      const [next, batch] = await node.scan(cursor, "MATCH", pattern, "COUNT", count);
      cursor = next;
      if (batch.length > 0) await onBatch(batch);
    } while (cursor !== "0");
  }
}

/**
 * Where a transaction on `key` must run: the URL of its slot's master. For a single server,
 * always its URL; for a cluster, from the client's slot map (refreshed after a MOVED): the
 * node's address only, its connections take credentials and TLS from `nodeOptions`.
 */
export type TransactionRouter = (key: string) => Promise<string>;

/** The URLs transactions are routed to now: the master of every slot. */
export function mastersOf(client: Cluster): Set<string> {
  return new Set(client.slots.map((nodes) => nodes?.[0]).filter((node): node is string => node !== undefined).map(nodeUrl));
}

/** `url` without its username and password: a node's address. */
export function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = "";
  parsed.password = "";
  return parsed.toString();
}

function nodeUrl(node: string): string {
  // "host:port"; an IPv6 host goes in brackets in a URL.
  const colon = node.lastIndexOf(":");
  const host = node.slice(0, colon);
  return `redis://${host.includes(":") ? `[${host}]` : host}${node.slice(colon)}`;
}

export function routerFor(settings: RedisSettings, client: RedisClient): TransactionRouter {
  if (!(client instanceof Cluster)) return async () => settings.url;
  const ready = readyConnection(client, settings.commandTimeoutMs);
  return async (key) => {
    const slot = hashSlot(key);
    // The slot map arrives with the cluster client's first connection.
    if (client.slots[slot]?.[0] === undefined) await ready();
    const node = client.slots[slot]?.[0];
    if (node === undefined) throw new RedisUnavailableError("the cluster's slot map is not known yet");
    return nodeUrl(node);
  };
}

/** A connection to the node at `url` that is not in a transaction: for CLIENT KILL. */
export function nodeConnectionFor(settings: RedisSettings, client: RedisClient): (url: string) => Redis | null {
  if (!(client instanceof Cluster)) return (url) => (url === settings.url ? client : null);
  return (url) => {
    const { host, port } = nodeOf(url);
    return client.nodes("all").find((node) => node.options.host === host && node.options.port === port) ?? null;
  };
}

/**
 * Connections for WATCH/MULTI/EXEC, one transaction per connection at a time, to the node that
 * serves the transaction's key: `[redis] pool_size` of them per node.
 */
export class TransactionPool {
  private readonly pools = new Map<string, NodePool>();
  private readonly poolOf = new WeakMap<Redis, NodePool>();
  private closed = false;
  /** Credentials and TLS of every node connection (a cluster's; a single server's URL has its own). */
  private readonly connectionOptions: NodeOptions;

  constructor(
    private readonly settings: RedisSettings,
    private readonly route: TransactionRouter = async () => settings.url,
    private readonly nodeConnection: (url: string) => Redis | null = () => null,
  ) {
    this.connectionOptions = nodeOptions(settings);
  }

  /** Runs `body` on a connection of its own to the master of `key`; a connection that failed in any way is discarded. */
  async with<T>(key: string, body: (connection: Redis) => Promise<T>): Promise<T> {
    if (this.closed) throw new RedisUnavailableError("the Redis pool is closed");
    const url = await this.route(key);
    let pool = this.pools.get(url);
    if (!pool) {
      pool = new NodePool(url, this.settings, this.connectionOptions);
      this.pools.set(url, pool);
    }
    const owner = pool;
    return owner.with((connection) => {
      this.poolOf.set(connection, owner);
      return body(connection);
    });
  }

  /** Closes a transaction connection on the server's side too, so nothing more it sent can run. */
  async fence(connection: Redis): Promise<void> {
    const pool = this.poolOf.get(connection);
    const id = pool?.clientIdOf(connection);
    connection.disconnect();
    if (pool === undefined || id === undefined) return;
    try {
      await this.nodeConnection(pool.url)?.client("KILL", "ID", String(id));
    } catch {
      // Already gone (the usual case: the connection dropped), or the node is unreachable, and
      // then the ETag log cannot be read from it either.
    }
  }

  /** Closes the connections to nodes that no longer serve transactions (a master that was demoted or left). */
  async retain(urls: ReadonlySet<string>) {
    for (const [url, pool] of this.pools) {
      if (urls.has(url)) continue;
      this.pools.delete(url);
      await pool.close();
    }
  }

  async close() {
    this.closed = true;
    await Promise.all([...this.pools.values()].map((pool) => pool.close()));
  }
}

/** The transaction connections to one node. */
class NodePool {
  private readonly idle: Redis[] = [];
  private open = 0;
  private readonly waiters: { resolve: (r: Redis) => void; reject: (e: Error) => void; timer: Timer }[] = [];
  private closed = false;
  private readonly clientIds = new WeakMap<Redis, number>();

  constructor(
    readonly url: string,
    private readonly settings: RedisSettings,
    private readonly connectionOptions: NodeOptions,
  ) {}

  /** Runs `body` on a connection of its own; a connection that failed in any way is discarded. */
  async with<T>(body: (connection: Redis) => Promise<T>): Promise<T> {
    const connection = await this.acquire();
    let healthy = false;
    try {
      const result = await body(connection);
      healthy = true;
      return result;
    } catch (e) {
      // An error the caller raised on purpose (a 409, say) leaves the connection sound: the next
      // borrower starts with UNWATCH. Any other error may have left it mid-transaction: drop it.
      healthy = e instanceof AppError;
      throw e;
    } finally {
      this.release(connection, healthy);
    }
  }

  private async acquire(): Promise<Redis> {
    if (this.closed) throw new RedisUnavailableError("the Redis pool is closed");
    while (this.idle.length > 0) {
      const connection = this.idle.pop()!;
      if (connection.status === "ready" && connection.stream?.writable !== false) return connection;
      this.drop(connection);
    }
    if (this.open < this.settings.poolSize) {
      this.open++;
      try {
        return await this.connect();
      } catch (e) {
        this.open--;
        this.handOverCapacity();
        throw new RedisUnavailableError(`cannot connect to Redis: ${maskSecrets((e as Error).message)}`);
      }
    }
    return new Promise<Redis>((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          reject(new PoolExhaustedError(`all ${this.settings.poolSize} transaction connections stayed busy ([redis] pool_size)`));
          // Half the command timeout: a request that waited may still need a full one after.
        }, this.settings.commandTimeoutMs / 2),
      };
      this.waiters.push(waiter);
    });
  }

  private async connect(): Promise<Redis> {
    const connection = defineLoadedScripts(
      new Redis(this.url, {
        ...noQueueNoReplay,
        ...this.connectionOptions,
        lazyConnect: true,
        connectTimeout: this.settings.commandTimeoutMs,
        commandTimeout: this.settings.commandTimeoutMs,
        retryStrategy: () => null,
        connectionName: "iapps-tx",
      }),
    );
    // No error log here: a pooled connection that fails is dropped, and the request that used
    // it answers 503; the command connection reports the outage once.
    connection.on("error", () => {});
    // connectTimeout covers the TCP handshake only; a frozen server would hold the ready check.
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisUnavailableError("Redis did not accept a connection in time")), this.settings.commandTimeoutMs);
    });
    try {
      await Promise.race([connection.connect(), timeout]);
      // Known up front, so that a transaction whose fate is unclear can be fenced (CLIENT KILL ID).
      this.clientIds.set(connection, Number(await Promise.race([connection.client("ID"), timeout])));
    } catch (e) {
      connection.disconnect();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return connection;
  }

  /** The server-side id of a pooled connection (for CLIENT KILL ID). */
  clientIdOf(connection: Redis): number | undefined {
    return this.clientIds.get(connection);
  }

  private release(connection: Redis, healthy: boolean) {
    if (!healthy || connection.status !== "ready" || this.closed) {
      this.drop(connection);
      this.handOverCapacity();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(connection);
    } else {
      this.idle.push(connection);
    }
  }

  /** A slot freed by a dropped connection goes to the first waiter, on a new connection. */
  private handOverCapacity() {
    const waiter = this.waiters.shift();
    if (!waiter) return;
    clearTimeout(waiter.timer);
    this.open++;
    this.connect().then(waiter.resolve, (e: Error) => {
      this.open--;
      waiter.reject(new RedisUnavailableError(`cannot connect to Redis: ${maskSecrets(e.message)}`));
      this.handOverCapacity();
    });
  }

  private drop(connection: Redis) {
    this.open--;
    connection.disconnect();
  }

  async close() {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new RedisUnavailableError("the Redis pool is closed"));
    }
    for (const connection of this.idle.splice(0)) {
      this.open--;
      await connection.quit().catch(() => connection.disconnect());
    }
  }
}
