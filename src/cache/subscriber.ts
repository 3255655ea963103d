// Keeps a replica's cache coherent: subscribes to `iapps:invalidations` and applies every
// message. The cache is trusted only while the subscription is confirmed: when the connection
// drops it is suspended at once (and emptied), and it resumes, empty, only after SUBSCRIBE has
// been answered on the new connection. `ready` alone is not enough: messages published between
// the reconnect and the SUBSCRIBE are lost, and the cache may have missed them.
// Imports ioredis, src/store/keys.ts, src/store/invalidations.ts, src/cache/record-cache.ts and
// src/metrics/metrics.ts.

import { Redis, type RedisOptions } from "ioredis";
import { metrics } from "../metrics/metrics.ts";
import { decodeInvalidation } from "../store/invalidations.ts";
import { keys } from "../store/keys.ts";
import type { RecordCache } from "./record-cache.ts";

/** How often a live subscription is checked with PING. */
const HEALTH_CHECK_MS = 1000;

export class InvalidationSubscriber {
  private redis!: Redis;
  private readonly healthCheck: Timer;
  private next = 0;
  private closed = false;
  invalidations = 0;

  /**
   * `urls`: where to subscribe. On a Redis Cluster every node hears every publish, so the
   * subscription may live on any node: when one cannot be reached, the next is tried.
   * `nodeOptions`: credentials and TLS for every one of them (a cluster's node addresses come
   * without; see `nodeOptions` in src/store/connections.ts). A URL that has its own keeps them.
   */
  constructor(
    private readonly urls: string[],
    private readonly cache: RecordCache,
    private readonly timeoutMs: number,
    private readonly log: (level: "info" | "warn", message: string) => void,
    private readonly nodeOptions: Pick<RedisOptions, "username" | "password" | "tls"> = {},
  ) {
    this.connect();
    // A connection can die without a word (a NAT table flushed, a failover without RST): without
    // this check the cache would go on trusting a subscription that hears nothing.
    this.healthCheck = setInterval(() => {
      if (this.redis.status !== "ready") return;
      this.redis.ping().catch(() => {
        if (this.cache.enabled) {
          this.log("warn", "cache invalidations stopped answering; serving from Redis until resubscribed");
          metrics.cacheSuspensions.inc();
        }
        this.cache.suspend();
        this.redis.disconnect(true);
      });
    }, HEALTH_CHECK_MS);
  }

  private connect() {
    const url = this.urls[this.next++ % this.urls.length]!;
    const single = this.urls.length === 1;
    const redis = new Redis(url, {
      ...this.nodeOptions,
      // We resubscribe ourselves, so that we know when the subscription is back.
      autoResubscribe: false,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: this.timeoutMs,
      // With several nodes to choose from, a node that stays away is left for the next one.
      retryStrategy: (attempt) => (single || attempt <= 3 ? Math.min(50 * attempt, 1000) : null),
      connectionName: "iapps-invalidations",
      lazyConnect: true,
      // For the health check's PING: a connection that stopped answering is a dead subscription.
      commandTimeout: this.timeoutMs,
    });
    this.redis = redis;
    redis.on("error", () => {});
    redis.on("close", () => {
      if (this.cache.enabled) {
        this.log("warn", "cache invalidations lost their connection; serving from Redis until resubscribed");
        metrics.cacheSuspensions.inc();
      }
      this.cache.suspend();
    });
    redis.on("end", () => {
      if (!this.closed && this.redis === redis) this.connect();
    });
    redis.on("ready", () => void this.subscribe(redis));
    redis.on("message", (_channel: string, message: string) => {
      const invalidation = decodeInvalidation(message);
      if (!invalidation) return;
      this.invalidations++;
      metrics.cacheInvalidations.inc();
      this.cache.invalidate(invalidation.key, invalidation.etag);
    });
    redis.connect().catch(() => {});
  }

  get live(): boolean {
    return this.cache.enabled;
  }

  private async subscribe(redis: Redis) {
    try {
      await redis.subscribe(keys.invalidations());
      this.cache.resume();
    } catch {
      // The connection went again; the next `ready` tries again.
    }
  }

  async close() {
    this.closed = true;
    clearInterval(this.healthCheck);
    this.cache.suspend();
    this.redis.disconnect();
  }
}
