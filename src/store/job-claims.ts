// The job claim of a record (spec §4.2): a writer holds it while it registers the record's first
// job with the job registry, so that two replicas never register two jobs for one record. It is
// the string `iapps:claim:{<app>:<owner>}` (keys.jobClaim), holding its holder's token, with an
// expiry, in the record's hash slot: the record's transactions watch it (records.ts) and may
// delete it in their MULTI. Taking, extending and giving it up happen here, outside them.
// Imports src/store/keys.ts, src/store/scripts.ts (compare-and-pexpire, compare-and-delete), the
// connection type of src/store/connections.ts and the Owner type of src/domain.

import type { Owner } from "../domain/owner.ts";
import type { CommandConnection } from "./connections.ts";
import { keys } from "./keys.ts";
import { compareAndDelete, compareAndPexpire } from "./scripts.ts";

export class JobClaims {
  constructor(private readonly commands: CommandConnection) {}

  /** Takes the claim for `ttlMs`; true when this caller now holds it. */
  async take(app: string, owner: Owner, token: string, ttlMs: number): Promise<boolean> {
    const redis = await this.commands();
    const key = keys.jobClaim(app, owner);
    if ((await redis.set(key, token, "PX", ttlMs, "NX")) === "OK") return true;
    // Refused, or this very SET ran once already: a cluster client re-sends a command whose
    // node connection closed under it, and the second one finds the first one's claim.
    return (await redis.get(key)) === token;
  }

  /** Extends a claim that is still ours by `ttlMs`; false when it is not ours any more. */
  async renew(app: string, owner: Owner, token: string, ttlMs: number): Promise<boolean> {
    const redis = await this.commands();
    const renewed = await compareAndPexpire.run(redis, [keys.jobClaim(app, owner)], [token, ttlMs]);
    return Number(renewed) === 1;
  }

  /** Gives up a claim only if it is still ours (a claim that expired may be someone else's). */
  async release(app: string, owner: Owner, token: string): Promise<void> {
    const redis = await this.commands();
    await compareAndDelete.run(redis, [keys.jobClaim(app, owner)], [token]);
  }
}
