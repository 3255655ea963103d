// What readiness and metrics mean for a process built from a service context: the answers of
// /readyz and /metrics (src/http/ops.ts serves them, for the API and for the worker's listener).
//
// - Ready: Redis answers a PING within `[redis] command_timeout`; a worker's watch caches have
//   their first lists; and, where the process keeps a
//   record cache, its invalidation subscription is live (without it the replica serves from
//   Redis, correctly but without the cache it was sized for: a load balancer should prefer others).
// - Metrics: the process's registry, plus what lives elsewhere read at scrape time: the queue's
//   depth by state (from Redis, bounded by the command timeout so a scrape never hangs; left out
//   when Redis does not answer) and the cache's size and state.
//
// Imports src/base/secrets.ts, src/metrics and src/service/context.ts.

import { maskSecrets } from "../base/secrets.ts";
import { metrics, registry } from "../metrics/metrics.ts";
import type { ServiceContext } from "./context.ts";

export interface Readiness {
  ready: boolean;
  /** Per check, null when it passed, else why not. */
  checks: Record<string, string | null>;
}

/** What src/http/ops.ts serves as /readyz and /metrics. */
export interface OpsOptions {
  readiness(): Promise<Readiness>;
  /** The process's metrics in the text exposition format. */
  metrics(): Promise<string>;
}

/**
 * `more`: checks of the process beyond the context (a worker's watch caches): per check, null
 * when it passes, else why not.
 */
export function opsFor(context: ServiceContext, more: () => Record<string, string | null> = () => ({})): OpsOptions {
  const timeoutMs = context.config.redis.command_timeout;
  return {
    async readiness(): Promise<Readiness> {
      const checks: Record<string, string | null> = {};
      try {
        await withTimeout(context.commands().then((redis) => redis.ping()), timeoutMs);
        checks.redis = null;
      } catch (e) {
        // /readyz is served to anyone who can reach the port: never a password a Redis error quotes.
        checks.redis = `Redis did not answer a PING (${maskSecrets((e as Error).message)})`;
      }
      if (context.subscriber) checks.cache = context.subscriber.live ? null : "the cache's invalidation subscription is not live";
      Object.assign(checks, more());
      return { ready: Object.values(checks).every((why) => why === null), checks };
    },

    async metrics(): Promise<string> {
      try {
        const stats = await withTimeout(context.queue.stats(), timeoutMs);
        for (const [state, count] of Object.entries(stats)) metrics.queueDepth.set({ state }, count);
      } catch {
        // A stale depth would look like a stuck queue, or like an empty one: say nothing instead.
        metrics.queueDepth.clear();
        metrics.scrapeErrors.inc({ source: "queue" });
      }
      if (context.cache) {
        metrics.cacheEntries.set({}, context.cache.size);
        metrics.cacheBytes.set({}, context.cache.bytes);
        metrics.cacheLive.set({}, context.subscriber?.live ? 1 : 0);
      }
      return registry.expose();
    },
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
    // A late failure of the losing promise is expected, not unhandled.
    promise.catch(() => {});
  }
}
