// The connections for WATCH/MULTI/EXEC (see architecture.md, "ioredis pitfalls"). A WATCH
// belongs to a connection, so each transaction borrows one for its whole duration, from a small
// pool per node (on a Redis Cluster, the master of its record's hash slot: routing.ts). Pool
// connections never reconnect: one that has closed once is thrown away, so an EXEC can only ever
// run on the connection that holds its WATCH. An interrupted transaction fails; it is never
// replayed unguarded. One whose fate is unclear can be fenced: closed on the server's side too.
// A borrower may leave a connection watching keys (it decided not to write): the pool remembers
// which connections a borrower said it left without a WATCH, so that the next one sends UNWATCH
// only when it is needed (a command fewer on every write).
// The connections speak RESP themselves (resp.ts): a transaction's two round trips are two socket
// writes, with no client library's bookkeeping per command.
// Imports ioredis' types, src/base/errors.ts, src/base/secrets.ts and src/store/* (connections,
// redis-errors, resp, routing's types) only.

import type { Redis } from "ioredis";
import { AppError } from "../base/errors.ts";
import { maskSecrets } from "../base/secrets.ts";
import { type NodeOptions, nodeOptions, type RedisSettings } from "./connections.ts";
import { PoolExhaustedError, RedisUnavailableError } from "./redis-errors.ts";
import { RespConnection } from "./resp.ts";
import type { TransactionRouter } from "./routing.ts";

/**
 * What a borrower knows of its connection's WATCH: `mayBeWatching` when it was handed out (the
 * last borrower did not say it left none), and `leftUnwatched`, which the borrower sets once its
 * last command ended every WATCH (an EXEC, aborted or not, or an UNWATCH) and sends nothing after.
 */
export interface Lease {
  readonly mayBeWatching: boolean;
  leftUnwatched: boolean;
}

/**
 * Connections for WATCH/MULTI/EXEC, one transaction per connection at a time, to the node that
 * serves the transaction's key: `[redis] pool_size` of them per node.
 */
export class TransactionPool {
  private readonly pools = new Map<string, NodePool>();
  private readonly poolOf = new WeakMap<RespConnection, NodePool>();
  private closed = false;
  /** Credentials and TLS of every node connection (a cluster's; a single server's URL has its own). */
  private readonly connectionOptions: NodeOptions;

  /** Whether transactions run on the nodes of a Redis Cluster (a single server's keys may all join one MULTI). */
  get clustered(): boolean {
    return (this.settings.cluster?.length ?? 0) > 0;
  }

  /** `nodeConnection`: a node's shared connection, to fence a pool connection with (CLIENT KILL ID). */
  constructor(
    private readonly settings: RedisSettings,
    private readonly route: TransactionRouter = () => settings.url,
    private readonly nodeConnection: (url: string) => Redis | null = () => null,
  ) {
    this.connectionOptions = nodeOptions(settings);
  }

  /** Runs `body` on a connection of its own to the master of `key`; a connection that failed in any way is discarded. */
  async with<T>(key: string, body: (connection: RespConnection, lease: Lease) => Promise<T>): Promise<T> {
    if (this.closed) throw new RedisUnavailableError("the Redis pool is closed");
    const routed = this.route(key);
    const url = typeof routed === "string" ? routed : await routed;
    let pool = this.pools.get(url);
    if (!pool) {
      pool = new NodePool(url, this.settings, this.connectionOptions);
      this.pools.set(url, pool);
    }
    const owner = pool;
    return owner.with((connection, lease) => {
      this.poolOf.set(connection, owner);
      return body(connection, lease);
    });
  }

  /** Closes a transaction connection on the server's side too, so nothing more it sent can run. */
  async fence(connection: RespConnection): Promise<void> {
    const pool = this.poolOf.get(connection);
    const id = connection.id;
    connection.close();
    if (pool === undefined) return;
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
  private readonly idle: RespConnection[] = [];
  private open = 0;
  private readonly waiters: { resolve: (r: RespConnection) => void; reject: (e: Error) => void; timer: Timer }[] = [];
  private closed = false;
  /** Connections whose last borrower said it left no WATCH behind (Lease.leftUnwatched). */
  private readonly unwatched = new WeakSet<RespConnection>();

  constructor(
    readonly url: string,
    private readonly settings: RedisSettings,
    private readonly connectionOptions: NodeOptions,
  ) {}

  /** Runs `body` on a connection of its own; a connection that failed in any way is discarded. */
  async with<T>(body: (connection: RespConnection, lease: Lease) => Promise<T>): Promise<T> {
    const idle = this.idleConnection();
    const connection = idle ?? (await this.acquire());
    const lease: Lease = { mayBeWatching: !this.unwatched.delete(connection), leftUnwatched: false };
    let healthy = false;
    try {
      const result = await body(connection, lease);
      healthy = true;
      return result;
    } catch (e) {
      // An error the caller raised on purpose (a 409, say) leaves the connection sound: the next
      // borrower starts with UNWATCH (its lease says it may be watching). Any other error may
      // have left it mid-transaction: drop it.
      healthy = e instanceof AppError;
      throw e;
    } finally {
      if (healthy && lease.leftUnwatched) this.unwatched.add(connection);
      this.release(connection, healthy);
    }
  }

  /** An idle connection that is still open, when there is one: taken without a turn of the event loop. */
  private idleConnection(): RespConnection | undefined {
    if (this.closed) return undefined;
    while (this.idle.length > 0) {
      const connection = this.idle.pop()!;
      if (connection.usable) return connection;
      this.drop(connection);
    }
    return undefined;
  }

  private async acquire(): Promise<RespConnection> {
    if (this.closed) throw new RedisUnavailableError("the Redis pool is closed");
    const idle = this.idleConnection();
    if (idle !== undefined) return idle;
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
    return new Promise<RespConnection>((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          reject(new PoolExhaustedError(`all ${this.settings.poolSize} transaction connections stayed busy for ${this.settings.poolWaitMs} ms ([redis] pool_size, pool_wait)`));
          // A request that finds every connection busy waits its turn, up to [redis] pool_wait.
        }, this.settings.poolWaitMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** A new connection, named iapps-tx, its client id known up front (so that a transaction whose fate is unclear can be fenced). */
  private connect(): Promise<RespConnection> {
    // No error log here: a pooled connection that fails is dropped, and the request that used
    // it answers 503; the command connection reports the outage once.
    // Each round trip a borrower sends is answered within [redis] command_timeout, or the
    // connection is closed and the borrower's wait fails (RedisUnavailableError).
    const timeoutMs = this.settings.commandTimeoutMs;
    return RespConnection.open(this.url, { name: "iapps-tx", connectTimeoutMs: timeoutMs, commandTimeoutMs: timeoutMs, ...this.connectionOptions });
  }

  private release(connection: RespConnection, healthy: boolean) {
    if (!healthy || !connection.usable || this.closed) {
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

  private drop(connection: RespConnection) {
    this.open--;
    connection.close();
  }

  async close() {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new RedisUnavailableError("the Redis pool is closed"));
    }
    for (const connection of this.idle.splice(0)) {
      this.open--;
      await connection.quit();
    }
  }
}
