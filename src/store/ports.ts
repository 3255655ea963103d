// Ports handed out to pods, unique across every worker: the allocation lives in Redis, as two
// hashes per pool (port → job, job → port) changed together by one script.
// Imports src/store/keys.ts, src/store/redis.ts and the PortAllocator interface.

import type { PortAllocator, PortRange } from "../domain/runtime.ts";
import { keys } from "./keys.ts";
import type { CommandConnection } from "./redis.ts";

// KEYS: by-port, by-job. ARGV: job, min, max (exclusive), excluded ports "a,b".
// A job keeps the port it holds while that port is still allowed; else the lowest free one.
const ALLOCATE = `
local excluded = {}
for p in string.gmatch(ARGV[4], '[^,]+') do excluded[p] = true end
local min, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local port = tonumber(held)
  if port >= min and port < max and not excluded[held] then return port end
  redis.call('HDEL', KEYS[1], held)
  redis.call('HDEL', KEYS[2], ARGV[1])
end
for port = min, max - 1 do
  local key = tostring(port)
  if not excluded[key] and redis.call('HEXISTS', KEYS[1], key) == 0 then
    redis.call('HSET', KEYS[1], key, ARGV[1])
    redis.call('HSET', KEYS[2], ARGV[1], key)
    return port
  end
end
return -1`;

// KEYS: by-port, by-job. ARGV: job.
const RELEASE = `
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
if redis.call('HGET', KEYS[1], held) == ARGV[1] then redis.call('HDEL', KEYS[1], held) end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1`;

export class RedisPortAllocator implements PortAllocator {
  constructor(private readonly redis: CommandConnection) {}

  async allocate(pool: string, jobId: string, range: PortRange): Promise<number | null> {
    const redis = await this.redis();
    const port = Number(
      await redis.eval(ALLOCATE, 2, keys.portsByPort(pool), keys.portsByJob(pool), jobId, range.min, range.max, range.exclude.join(",")),
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
    await redis.eval(RELEASE, 2, keys.portsByPort(pool), keys.portsByJob(pool), jobId);
  }
}
