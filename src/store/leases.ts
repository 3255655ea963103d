// The terminal's inactivity leases in Redis (spec §8): one string per (app, owner), in the
// record's hash slot, set with PX on every open and activity, so it disappears by itself when
// the owner has been idle for the lease's length. Every API replica and worker reads the same
// lease (UCloud keeps it in one process's memory). Lease times are the Redis server's clock.
// Imports src/store/keys.ts, the connection type of src/store/connections.ts, and the
// ActivityLeases interface and Owner type of src/domain.

import type { ActivityLeases } from "../domain/runtime.ts";
import { keys } from "./keys.ts";
import type { Owner } from "../domain/owner.ts";
import type { CommandConnection } from "./connections.ts";

export class RedisActivityLeases implements ActivityLeases {
  constructor(private readonly commands: CommandConnection) {}

  /** Starts or extends the lease for `ms` (at least 1 ms); the value says when, for operators. */
  async refresh(app: string, owner: Owner, ms: number): Promise<void> {
    const redis = await this.commands();
    await redis.set(keys.activityLease(app, owner), new Date().toISOString(), "PX", Math.max(1, Math.ceil(ms)));
  }

  /**
   * Milliseconds left, or 0 when there is no lease. A key without an expiry (only a person with
   * redis-cli makes one) counts as no lease: a terminal must never run for ever.
   */
  async remaining(app: string, owner: Owner): Promise<number> {
    const redis = await this.commands();
    const ttl = await redis.pttl(keys.activityLease(app, owner));
    return Math.max(ttl, 0);
  }
}
