// The composition root: builds Redis connections, store, job registry, apps and the service from
// a configuration, and closes them again. Roles (src/main.ts) and tests start from here.

import type { Redis } from "ioredis";
import { enabledApps } from "../apps/registry.ts";
import type { Config } from "../config/config.ts";
import { log } from "../log.ts";
import { TaskQueue } from "../queue/queue.ts";
import { RecordStore } from "../store/records.ts";
import { createCommandConnection, readyConnection, TransactionPool } from "../store/redis.ts";
import { EmbeddedJobRegistry } from "../ucloud/embedded-registry.ts";
import type { JobRegistry } from "../ucloud/jobs.ts";
import { ConfigService } from "./configs.ts";

export interface ServiceContext {
  config: Config;
  redis: Redis;
  pool: TransactionPool;
  store: RecordStore;
  queue: TaskQueue;
  /** The shared command connection, once ready (waits through reconnects, bounded). */
  commands: () => Promise<Redis>;
  jobs: JobRegistry;
  service: ConfigService;
  close(): Promise<void>;
}

export function createContext(config: Config): ServiceContext {
  const settings = {
    url: config.redis.url,
    poolSize: config.redis.pool_size,
    commandTimeoutMs: config.redis.command_timeout,
    onError: (message: string) => log("warn", message),
  };
  const redis = createCommandConnection(settings);
  const pool = new TransactionPool(settings);
  const commands = readyConnection(redis, settings.commandTimeoutMs);
  const store = new RecordStore(commands, pool);
  const jobs = new EmbeddedJobRegistry(commands);
  const queue = new TaskQueue(commands, {
    maxAttempts: config.worker.max_attempts,
    backoffBaseMs: config.worker.backoff_base,
    backoffMaxMs: config.worker.backoff_max,
  });
  const apps = enabledApps((name) => (config.apps as Record<string, { enabled: boolean } | undefined>)[name]?.enabled ?? false);
  const service = new ConfigService({
    apps,
    store,
    jobs,
    providerId: config.ucloud.provider_id,
    requireEtag: config.api.require_etag,
    jobClaimWaitMs: config.api.job_claim_wait,
    log: (level, message, fields) => log(level, message, fields),
  });
  return {
    config,
    redis,
    pool,
    store,
    queue,
    commands,
    jobs,
    service,
    async close() {
      await pool.close();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
