// A write decided on the replica's cached copy of the record (issue 14: src/store/records.ts
// `attemptAssuming`): one round trip whose guard reads the record under WATCH on the server. The
// cache can be behind Redis for a moment (another replica's invalidation still on its way): here
// Redis is changed behind the replica's back, with no invalidation at all, and every write must
// still be the one the ordinary path (the read under WATCH) would have made.

import { describe, expect, test } from "bun:test";
import type { Owner } from "../src/domain/owner.ts";
import { registry } from "../src/metrics/metrics.ts";
import { keys } from "../src/store/keys.ts";
import { startHarness } from "./support/harness.ts";
import { CLUSTER_MODE } from "./support/redis-server.ts";
import { cacheLive, type Instance, providerCall, syncthingConfig } from "./support/service.ts";

const h = await startHarness({ api: false });
const { redis } = h;

const recordKey = (who: Owner) => keys.record("syncthing", who);
const stored = async (who: Owner) => redis.admin.hgetall(recordKey(who));
const update = (api: Instance, who: Owner, n: number, expectedETag: string | null = null) =>
  providerCall(api, "syncthing", "update", { principal: who, config: syncthingConfig(n), expectedETag });

/** iapps_cached_writes_total{outcome} of this process (every instance here counts into it). */
function cachedWrites(outcome: "landed" | "retried"): number {
  const line = registry.expose().match(new RegExp(`^iapps_cached_writes_total\\{outcome="${outcome}"\\} (\\d+)$`, "m"));
  return line ? Number(line[1]) : 0;
}

/** Updates `who` with configurations `from` to `to` - 1, each conditional on the ETag Redis holds: each lands as sent. */
async function updatesInTurn(api: Instance, who: Owner, from: number, to: number) {
  for (let n = from; n < to; n++) {
    const before = (await stored(who)).etag!;
    const response = await update(api, who, n, before);
    expect(response.status).toBe(200);
    const now = await stored(who);
    expect(now.etag).toBe(response.headers.get("etag")!.slice(1, -1));
    expect(JSON.parse(now.config!)).toEqual(syncthingConfig(n));
  }
}

/** A replica with `who`'s record in its cache (written through it), and what Redis holds. */
async function cachedRecord(name: string) {
  const api = h.instance();
  await cacheLive(api);
  const who: Owner = { createdBy: name, project: null };
  expect((await update(api, who, 1)).status).toBe(200);
  const record = await stored(who);
  expect(api.context.cache?.get(recordKey(who))?.etag).toBe(record.etag);
  return { api, who, record };
}

describe.skipIf(CLUSTER_MODE)("a write decided on the cached record", () => {
  test("the record changed behind the cache: an update conditional on the cached ETag is refused, and the other version stays", async () => {
    const { api, who, record } = await cachedRecord("behind-1");
    // Another writer's version, whose invalidation never reaches this replica.
    await redis.admin.hset(recordKey(who), { etag: "someone-elses", config: JSON.stringify(syncthingConfig(7)) });
    const retried = cachedWrites("retried");
    const response = await update(api, who, 2, record.etag!);
    expect(response.status).toBe(409);
    // Decided on the cached copy (the ETag matched it), refused by the guard, then decided again on the read.
    expect(cachedWrites("retried")).toBe(retried + 1);
    const now = await stored(who);
    expect(now.etag).toBe("someone-elses");
    expect(JSON.parse(now.config!)).toEqual(syncthingConfig(7));
    // Conditional on the version Redis has, it lands.
    expect((await update(api, who, 3, "someone-elses")).status).toBe(200);
    expect(JSON.parse((await stored(who)).config!)).toEqual(syncthingConfig(3));
    await api.close();
  });

  test("the record was detached behind the cache (same ETag): the update registers a new job, as the read under WATCH would", async () => {
    const { api, who, record } = await cachedRecord("behind-2");
    await redis.admin.hset(recordKey(who), { state: "detached" });
    const response = await update(api, who, 2);
    expect(response.status).toBe(200);
    const now = await stored(who);
    expect(now.state).toBe("active");
    expect(now.jobId).not.toBe(record.jobId);
    expect(now.etag).toBe(response.headers.get("etag")!.slice(1, -1));
    await api.close();
  });

  test("the record's job ended behind the cache: the update registers a new job", async () => {
    const { api, who, record } = await cachedRecord("behind-3");
    await redis.admin.hset(keys.job(record.jobId!), { state: "FAILURE" });
    expect((await update(api, who, 2)).status).toBe(200);
    const now = await stored(who);
    expect(now.jobId).not.toBe(record.jobId);
    expect(await redis.admin.hget(keys.job(now.jobId!), "state")).not.toBe("FAILURE");
    await api.close();
  });

  test("the record points at another job behind the cache: the update keeps that job", async () => {
    const { api, who, record } = await cachedRecord("behind-4");
    const other = await cachedRecord("behind-4-other");
    await redis.admin.hset(recordKey(who), { jobId: other.record.jobId! });
    expect((await update(api, who, 2)).status).toBe(200);
    const now = await stored(who);
    expect(now.jobId).toBe(other.record.jobId);
    expect(now.jobId).not.toBe(record.jobId);
    await Promise.all([api.close(), other.api.close()]);
  });

  test("with the cache current, the write lands as decided and the guard key never holds a value", async () => {
    const { api, who } = await cachedRecord("current-1");
    const [landed, retried] = [cachedWrites("landed"), cachedWrites("retried")];
    await updatesInTurn(api, who, 2, 6);
    expect([cachedWrites("landed") - landed, cachedWrites("retried") - retried]).toEqual([4, 0]);
    // After a guard that failed, too.
    await redis.admin.hset(recordKey(who), { etag: "moved-on" });
    expect((await update(api, who, 9, "moved-on")).status).toBe(200);
    expect(await redis.admin.exists(keys.writeGuard("syncthing", who))).toBe(0);
    await api.close();
  });

  test("a server that refuses the guard (an ACL without its key): writes of cached records take the ordinary path, and every one lands", async () => {
    // Every key of the service but iapps:guard:{…}, as an operator who listed prefixes might grant.
    await redis.admin.call("ACL", "SETUSER", "no-guard", "on", ">secret-pw", "~iapps:[a-f]*", "~iapps:[h-z]*", "~iapps:{*", "&iapps:*", "+@all");
    const api = h.instance({ redis: { url: `redis://no-guard:secret-pw@127.0.0.1:${new URL(redis.url).port}` } });
    await cacheLive(api);
    const who: Owner = { createdBy: "no-guard-1", project: null };
    expect((await update(api, who, 1)).status).toBe(200);
    const landed = cachedWrites("landed");
    await updatesInTurn(api, who, 2, 5);
    // The probe found the WATCH refused: none of these went the one-round-trip way.
    expect(cachedWrites("landed")).toBe(landed);
    await api.close();
    await redis.admin.call("ACL", "DELUSER", "no-guard");
  });
});
