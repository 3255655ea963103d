// Ports handed out to pods, unique across every worker: the allocation lives in Redis, as two
// hashes per pool (port → job, job → port) changed together by the scripts
// scripts/allocate-port-2.lua and scripts/release-port-2.lua.
// Imports src/store/keys.ts, src/store/scripts.ts, the connection type of src/store/connections.ts and
// the PortAllocator interface of src/domain/runtime.ts.

import type { PortAllocator, PortRange } from "../domain/runtime.ts";
import { keys } from "./keys.ts";
import type { CommandConnection } from "./connections.ts";
import { RedisScript } from "./scripts.ts";

/** Hands a job the port it holds while that one is still allowed, else the lowest free one. */
const allocatePort = new RedisScript(new URL("./scripts/allocate-port-2.lua", import.meta.url));
const releasePort = new RedisScript(new URL("./scripts/release-port-2.lua", import.meta.url));

export class RedisPortAllocator implements PortAllocator {
  constructor(private readonly redis: CommandConnection) {}

  async allocate(pool: string, jobId: string, range: PortRange): Promise<number | null> {
    const redis = await this.redis();
    const port = Number(
      await allocatePort.run(redis, [keys.portsByPort(pool), keys.portsByJob(pool)], [jobId, range.min, range.max, range.exclude.join(",")]),
    );
    return port < 0 ? null : port;
  }

  async portOf(pool: string, jobId: string): Promise<number | null> {
    const redis = await this.redis();
    const held = await redis.hget(keys.portsByJob(pool), jobId);
    return held === null ? null : Number(held);
  }

  async release(pool: string, jobId: string): Promise<void> {
    const redis = await this.redis();
    await releasePort.run(redis, [keys.portsByPort(pool), keys.portsByJob(pool)], [jobId]);
  }
}
