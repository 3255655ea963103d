// The composition root: builds Redis connections, store, job registry, apps and the service from
// a configuration, and closes them again. Roles (src/main.ts) and tests start from here.
// Imports ioredis, src/store, src/cache, src/queue, src/storage, src/ucloud, src/apps/registry.ts,
// src/settings/config.ts (types), src/base/log.ts, src/domain (types) and ./configurations.ts.

import { Cluster } from "ioredis";
import type { AppSettings } from "../domain/app.ts";
import type { AppRuntime } from "../domain/runtime.ts";
import { type AppRegistry, enabledApps } from "../apps/registry.ts";
import type { Config } from "../settings/config.ts";
import { log } from "../base/log.ts";
import { RecordCache } from "../cache/record-cache.ts";
import { InvalidationSubscriber } from "../cache/subscriber.ts";
import { TaskQueue } from "../queue/queue.ts";
import { LocalStorage } from "../storage/local.ts";
import { RedisDriveDirectory } from "../store/drives.ts";
import { RedisActivityLeases } from "../store/leases.ts";
import { RedisPortAllocator } from "../store/ports.ts";
import { RedisShellSessions } from "../store/shell-sessions.ts";
import { keys } from "../store/keys.ts";
import { RecordStore } from "../store/records.ts";
import {
  type CommandConnection,
  createCommandConnection,
  nodeOptions,
  readyConnection,
  type RedisClient,
  type RedisSettings,
  withoutCredentials,
} from "../store/connections.ts";
import { RedisUnavailableError } from "../store/redis-errors.ts";
import { mastersOf, nodeConnectionFor, routerFor } from "../store/routing.ts";
import { TransactionPool } from "../store/transaction-pool.ts";
import { CoreClient } from "../ucloud/core-client.ts";
import { CoreJobRegistry } from "../ucloud/core-registry.ts";
import { EmbeddedJobRegistry } from "../ucloud/embedded-registry.ts";
import type { JobRegistry } from "../ucloud/jobs.ts";
import { ConfigurationService } from "./configurations.ts";

export interface ServiceContext {
  config: Config;
  apps: AppRegistry;
  /** `[apps.<name>]` of the configuration. */
  appSettings(name: string): AppSettings;
  /** The shared command connection: a single server's, or a Redis Cluster client. */
  redis: RedisClient;
  /** How to reach Redis (the single server's URL, or the cluster's seed nodes). */
  redisSettings: RedisSettings;
  pool: TransactionPool;
  store: RecordStore;
  /** This replica's record cache and its subscription, when `[api] cache_max_entries` and `cache_max_bytes` are > 0. */
  cache: RecordCache | null;
  subscriber: InvalidationSubscriber | null;
  queue: TaskQueue;
  /** The shared command connection, once ready (waits through reconnects, bounded). */
  commands: CommandConnection;
  jobs: JobRegistry;
  /** Drive metadata (owners, members, locks, sensitivity), kept in Redis outside every drive. */
  drives: RedisDriveDirectory;
  /** Users' drives and folder access (`[storage] root`), ports and inactivity leases (Redis): what the apps' runtime hooks use. */
  runtime: AppRuntime;
  service: ConfigurationService;
  /** The terminal's shell sessions (src/shell attaches them). */
  shellSessions: RedisShellSessions;
  close(): Promise<void>;
}

export interface ContextOptions {
  /** Keep a record cache (API replicas). Workers and the CLI read Redis directly. Default true. */
  cache?: boolean;
  /** Test hook: runs between a cache fill's Redis read and its insert. */
  afterFillRead?: (key: string) => Promise<void>;
  /** Test hook: the clock Core's access tokens expire by (epoch ms). Default `Date.now`. */
  now?: () => number;
}

export function createContext(config: Config, options: ContextOptions = {}): ServiceContext {
  const settings: RedisSettings = {
    url: config.redis.url,
    cluster: config.redis.cluster,
    poolSize: config.redis.pool_size,
    poolWaitMs: config.redis.pool_wait,
    commandTimeoutMs: config.redis.command_timeout,
    onError: (message: string) => log("warn", message),
  };
  const redis = createCommandConnection(settings);
  const pool = new TransactionPool(settings, routerFor(settings, redis), nodeConnectionFor(settings, redis));
  const commands = readyConnection(redis, settings.commandTimeoutMs);
  const cacheMaxBytes = config.api.cache_max_bytes;
  const cache =
    options.cache !== false && config.api.cache_max_entries > 0 && cacheMaxBytes > 0 ? new RecordCache(config.api.cache_max_entries, cacheMaxBytes) : null;
  const subscriber = cache ? new InvalidationSubscriber(subscriberUrls(settings), cache, settings.commandTimeoutMs, log, nodeOptions(settings)) : null;
  const queue = new TaskQueue(commands, {
    maxAttempts: config.worker.max_attempts,
    backoffBaseMs: config.worker.backoff_base,
    backoffMaxMs: config.worker.backoff_max,
  });
  const store = new RecordStore(commands, pool, {
    enqueue: enqueueFor(config, pool, queue, settings),
    // On a single server a write's task joins its MULTI (the record's WAIT then covers it too).
    enqueueWithin: (ids, requestId) => queue.addCommands(requestId, ids),
    waitReplicas: config.redis.wait_replicas,
    historyLength: config.api.history_length,
    auditMaxLength: config.api.audit_max_length,
    waitTimeoutMs: Math.max(Math.floor(settings.commandTimeoutMs / 2), 1),
    onRoutingTrouble: () => {
      if (!(redis instanceof Cluster)) return;
      // Then let go of pools to nodes that are no longer masters.
      redis.refreshSlotsCache((error) => {
        if (!error) void pool.retain(mastersOf(redis)).catch(() => {});
      });
    },
    log: (level, message, fields) => log(level, message, fields),
    cache,
    afterFillRead: options.afterFillRead,
  });
  const jobs = jobRegistryFor(config, commands, options.now);
  const appSettings = (name: string) => (config.apps as Record<string, AppSettings>)[name]!;
  const apps = enabledApps((name) => appSettings(name)?.enabled ?? false);
  const drives = new RedisDriveDirectory(commands);
  const runtime: AppRuntime = {
    storage: new LocalStorage(config.storage.root, drives),
    ports: new RedisPortAllocator(commands),
    leases: new RedisActivityLeases(commands),
  };
  const shellSessions = new RedisShellSessions(commands);
  const service = new ConfigurationService({
    apps,
    store,
    jobs,
    providerId: config.ucloud.provider_id,
    requireEtag: config.api.require_etag,
    jobClaimWaitMs: config.api.job_claim_wait,
    runtime,
    terminalInactivityMs: config.apps.terminal.inactivity,
    shells: {
      sessions: shellSessions, ttlMs: config.apps.terminal.shell_session_ttl, perUser: config.apps.terminal.shell_sessions_per_user,
      publicUrl: config.server.public_url,
    },
    log: (level, message, fields) => log(level, message, fields),
  });
  return {
    config,
    apps,
    appSettings,
    redis,
    redisSettings: settings,
    pool,
    store,
    cache,
    subscriber,
    queue,
    commands,
    jobs,
    drives,
    runtime,
    service,
    shellSessions,
    async close() {
      await jobs.close?.();
      await subscriber?.close();
      await pool.close();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/**
 * How a write's tasks reach the queue. With `[redis] wait_replicas`, on a connection to the
 * queue's node, and only once as many replicas have them: until then they stay in the record's
 * outbox (which the write's own WAIT covered), so a master lost before replicating them loses
 * no task.
 */
function enqueueFor(config: Config, pool: TransactionPool, queue: TaskQueue, settings: RedisSettings) {
  const wanted = config.redis.wait_replicas;
  if (wanted === 0) return (ids: string[], requestId: string | undefined) => queue.addFor(requestId, ids);
  const timeoutMs = Math.max(Math.floor(settings.commandTimeoutMs / 2), 1);
  return (ids: string[], requestId: string | undefined) =>
    pool.with(keys.queuePending(), async (connection) => {
      await queue.addFor(requestId, ids, connection);
      const [reply] = await connection.send([["WAIT", wanted, timeoutMs]]).catch(() => [0]);
      const acknowledged = reply instanceof Error ? 0 : Number(reply);
      if (acknowledged < wanted) {
        throw new RedisUnavailableError(`the tasks reached the queue's master but only ${acknowledged} of ${wanted} replicas confirmed them`);
      }
    });
}

/**
 * Any node hears every invalidation (cluster pub/sub reaches all nodes): the seed nodes, in turn,
 * reached like every node of the cluster (their addresses, with `nodeOptions`).
 */
function subscriberUrls(settings: RedisSettings): string[] {
  return settings.cluster && settings.cluster.length > 0 ? settings.cluster.map(withoutCredentials) : [settings.url];
}

function jobRegistryFor(config: Config, commands: CommandConnection, now?: () => number): JobRegistry {
  if (config.ucloud.mode === "embedded") return new EmbeddedJobRegistry(commands);
  const core = new CoreClient({
    coreUrl: config.ucloud.core_url,
    refreshToken: config.ucloud.refresh_token,
    timeoutMs: config.ucloud.core_timeout,
    now,
    log: (level, message, fields) => log(level, message, fields),
  });
  return new CoreJobRegistry(core, { log: (level, message, fields) => log(level, message, fields) });
}
