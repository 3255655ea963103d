// Ports handed out to pods, unique across every worker: the allocation lives in Redis, as two
// hashes per pool (port → job, job → port) and a list of the free ports, changed together by the
// scripts scripts/allocate-port-4.lua and scripts/release-port-4.lua. Taking and giving back a
// port costs the same few commands however many are taken (issue 13: a scan from the lowest port
// made the k-th pod cost k commands); the free list is built from the range the first time, and
// again when the configured range changes (the range it was built for is kept beside it). Workers
// configured with different ranges (a rolling change of port_min/port_max) rebuild it in turn, a
// cost of the range's size per allocation until they agree, never a port handed out twice.
// Imports src/store/keys.ts, src/store/scripts.ts, the connection type of src/store/connections.ts and
// the PortAllocator interface of src/domain/runtime.ts.

import type { PortAllocator, PortRange } from "../domain/runtime.ts";
import { keys } from "./keys.ts";
import type { CommandConnection } from "./connections.ts";
import { RedisScript } from "./scripts.ts";

/** Hands a job the port it holds while that one is still allowed, else the first free one. */
const allocatePort = new RedisScript(new URL("./scripts/allocate-port-4.lua", import.meta.url));
/** Gives a job's port back to the free list (when the range still has it). */
const releasePort = new RedisScript(new URL("./scripts/release-port-4.lua", import.meta.url));

/** The four keys of a pool, in the scripts' order. */
const poolKeys = (pool: string) => [keys.portsByPort(pool), keys.portsByJob(pool), keys.portsFree(pool), keys.portsRange(pool)];

export class RedisPortAllocator implements PortAllocator {
  constructor(private readonly redis: CommandConnection) {}

  async allocate(pool: string, jobId: string, range: PortRange): Promise<number | null> {
    const redis = await this.redis();
    const port = Number(
      await allocatePort.run(redis, poolKeys(pool), [jobId, range.min, range.max, range.exclude.join(",")]),
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
    await releasePort.run(redis, poolKeys(pool), [jobId]);
  }
}
