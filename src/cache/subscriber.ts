// Keeps a replica's cache coherent: subscribes to `iapps:invalidations` and applies every
// message. The cache is trusted only while the subscription is confirmed: when the connection
// drops it is suspended at once (and emptied), and it resumes, empty, only after SUBSCRIBE has
// been answered on a new connection. A connection that is merely open is not enough: messages
// published between a reconnect and the SUBSCRIBE are lost, and the cache may have missed them.
// The subscription speaks RESP itself (src/store/resp.ts): every write of every replica, this
// one's included, comes back to it as a message, and a client library's parsing and events per
// message were a visible part of a write's cost (issue 14). It reconnects by itself.
// Imports src/store/keys.ts, src/store/invalidations.ts, src/store/redis-errors.ts, src/store/resp.ts,
// src/cache/record-cache.ts and src/metrics/metrics.ts.

import { metrics } from "../metrics/metrics.ts";
import { decodeInvalidation } from "../store/invalidations.ts";
import { keys } from "../store/keys.ts";
import { RedisTimeoutError } from "../store/redis-errors.ts";
import { RespConnection, type RespOptions } from "../store/resp.ts";
import type { RecordCache } from "./record-cache.ts";

/** How often a live subscription is checked with PING. */
const HEALTH_CHECK_MS = 1000;

export class InvalidationSubscriber {
  private connection: RespConnection | null = null;
  private readonly healthCheck: ReturnType<typeof setInterval>;
  private reconnect: ReturnType<typeof setTimeout> | undefined;
  private next = 0;
  /** Failed attempts since the last confirmed subscription: the next one waits longer. */
  private attempts = 0;
  private closed = false;
  invalidations = 0;

  /**
   * `urls`: where to subscribe. On a Redis Cluster every node hears every publish, so the
   * subscription may live on any node: each attempt after a failure tries the next one.
   * `nodeOptions`: credentials and TLS for every one of them (a cluster's node addresses come
   * without; see `nodeOptions` in src/store/connections.ts). A URL that has its own keeps them.
   */
  constructor(
    private readonly urls: string[],
    private readonly cache: RecordCache,
    private readonly timeoutMs: number,
    private readonly log: (level: "info" | "warn", message: string) => void,
    private readonly nodeOptions: Pick<RespOptions, "username" | "password" | "tls"> = {},
  ) {
    void this.connect();
    // A connection can die without a word (a NAT table flushed, a failover without RST): without
    // this check the cache would go on trusting a subscription that hears nothing.
    this.healthCheck = setInterval(() => {
      // A PING unanswered within the timeout closes the connection (its command timeout): lost().
      const connection = this.connection;
      if (connection !== null && this.cache.enabled) connection.send([["PING"]]).catch(() => {});
    }, HEALTH_CHECK_MS);
  }

  /** Opens a connection and subscribes on it; on any failure, tries again after a pause. */
  private async connect(): Promise<void> {
    this.reconnect = undefined;
    if (this.closed) return;
    const url = this.urls[this.next % this.urls.length]!;
    let connection: RespConnection | null = null;
    try {
      connection = await RespConnection.open(url, { name: "iapps-invalidations", connectTimeoutMs: this.timeoutMs, commandTimeoutMs: this.timeoutMs, ...this.nodeOptions });
      if (this.closed) {
        connection.close();
        return;
      }
      this.connection = connection;
      const opened = connection;
      connection.onMessage = (_channel, message) => this.apply(message);
      connection.onClose = (error) => this.lost(opened, error);
      const [reply] = await connection.send([["SUBSCRIBE", keys.invalidations()]]);
      if (reply instanceof Error) throw reply;
      // Only a subscription that is still this one's, and still open, is trusted.
      if (this.closed || this.connection !== opened || !opened.usable) return;
      this.attempts = 0;
      this.cache.resume();
    } catch {
      connection?.close();
      if (connection === null || this.connection !== connection) this.retry();
    }
  }

  private apply(message: string) {
    const invalidation = decodeInvalidation(message);
    if (!invalidation) return;
    this.invalidations++;
    metrics.cacheInvalidations.inc();
    this.cache.invalidate(invalidation.key, invalidation.etag);
  }

  /** The subscription's connection closed: trust nothing until a new one is confirmed. */
  private lost(connection: RespConnection, error: Error) {
    if (this.connection !== connection) return;
    this.connection = null;
    if (this.cache.enabled) {
      const what = error instanceof RedisTimeoutError ? "stopped answering" : "lost their connection";
      this.log("warn", `cache invalidations ${what}; serving from Redis until resubscribed`);
      metrics.cacheSuspensions.inc();
    }
    this.cache.suspend();
    this.retry();
  }

  private retry() {
    if (this.closed || this.reconnect !== undefined) return;
    this.attempts++;
    // With several nodes to choose from, a node that stays away is left for the next one.
    if (this.urls.length > 1) this.next++;
    this.reconnect = setTimeout(() => void this.connect(), Math.min(50 * this.attempts, 1000));
  }

  get live(): boolean {
    return this.cache.enabled;
  }

  async close() {
    this.closed = true;
    clearInterval(this.healthCheck);
    clearTimeout(this.reconnect);
    this.cache.suspend();
    const connection = this.connection;
    this.connection = null;
    connection?.close();
  }
}
