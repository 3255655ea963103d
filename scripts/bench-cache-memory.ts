// Resident memory per cached record: a real service context (src/service/context.ts, the cache an
// API replica keeps) filled through its own read path with N realistic records, in a process that
// does nothing else. scripts/bench-api.ts runs it; it can also run alone:
//
//   bun scripts/bench-cache-memory.ts --role populate --redis redis://127.0.0.1:6379/2 --records 100000
//   IAPPS_REDIS_URL=redis://127.0.0.1:6379/2 bun scripts/bench-cache-memory.ts --records 100000
//
// The populate role writes N (+ a few for warming up) record hashes, as the service stores them,
// into the given Redis database; it runs as a process of its own so that its allocations do not
// sit in the measuring process's heap. The measuring role:
//   1. builds a service context from config.toml + IAPPS_* (cache_max_entries forced to >= N),
//      waits until its cache subscription is confirmed;
//   2. warms the code paths (reads 1,000 other records through the store, then empties the cache);
//   3. Bun.gc(true), a pause for the allocator to hand pages back, Bun.gc(true): RSS and heap "before";
//   4. reads the N records through RecordStore.read (each a miss that fills the cache: HGETALL,
//      decode, insert under a ticket), checks the cache holds exactly N entries;
//   5. the same GC and pause: RSS and heap "after"; prints one JSON line on stdout.
// What the delta holds per record: the Map entry, the key string `iapps:cfg:{syncthing:<owner>}`,
// the StoredRecord and its strings, the parsed config objects. RSS also holds whatever garbage of
// the fill the allocator has not returned yet (so it is an upper bound); heapUsed is the JSC heap
// after a full collection (string buffers included; JSC's "extra memory" is reported beside it).

import { heapStats } from "bun:jsc";
import { existsSync } from "node:fs";
import { Redis } from "ioredis";
import { withCheckCharacters } from "../src/apps/syncthing-device-id.ts";
import { loadConfig } from "../src/settings/config.ts";
import { createContext } from "../src/service/context.ts";
import { keys } from "../src/store/keys.ts";
import type { Owner } from "../src/domain/owner.ts";
import type { StoredRecord } from "../src/domain/record.ts";

const APP = "syncthing";
const WARM = 1000;

function option(name: string): string | undefined {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i]!.startsWith(`--${name}=`)) return argv[i]!.slice(name.length + 3);
  }
  return undefined;
}

/** Owner i: a UCloud-like username, distinct for every i. */
export function ownerOf(i: number): Owner {
  return { createdBy: `user${i}#${String((i * 7919) % 10000).padStart(4, "0")}`, project: null };
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** A record as the service stores it: a validated syncthing config (two folders, one device), 32-hex ETag, numeric job id, ISO time. */
export function recordOf(i: number): StoredRecord {
  let seed = (Math.imul(i + 1, 2654435761) | 0) || 1;
  const random = () => {
    // xorshift32: deterministic per owner, different for every owner
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  const base = Array.from({ length: 52 }, () => BASE32[Math.floor(random() * 32)]).join("");
  const drive = 100000 + i;
  const hex = Array.from({ length: 32 }, () => "0123456789abcdef"[Math.floor(random() * 16)]).join("");
  return {
    config: {
      folders: [
        { ucloudPath: `/${drive}/Syncthing`, id: "" },
        { ucloudPath: `/${drive}/Documents/Thesis ${i % 10}`, id: `thesis-${i % 97}` },
      ],
      devices: [{ deviceId: withCheckCharacters(base), label: "Laptop" }],
    },
    etag: hex,
    jobId: String(1000 + i),
    state: "active",
    updatedAt: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
  };
}

/** The hash fields of a record, as src/store/records.ts encodes them. */
function fieldsOf(record: StoredRecord): Record<string, string> {
  return { config: JSON.stringify(record.config), etag: record.etag, jobId: record.jobId, state: record.state, updatedAt: record.updatedAt };
}

async function populate(url: string, records: number) {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  const batch = 1000;
  for (let from = 0; from < records + WARM; from += batch) {
    const pipeline = redis.pipeline();
    for (let i = from; i < Math.min(records + WARM, from + batch); i++) pipeline.hset(keys.record(APP, ownerOf(i)), fieldsOf(recordOf(i)));
    const replies = await pipeline.exec();
    const error = replies?.find(([e]) => e)?.[0];
    if (error) throw error;
  }
  redis.disconnect();
}

interface Usage {
  rss: number;
  heapUsed: number;
  extra: number;
}

async function settle(): Promise<Usage> {
  Bun.gc(true);
  await Bun.sleep(300);
  Bun.gc(true);
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed, extra: heapStats().extraMemorySize };
}

async function measure(records: number) {
  const fileConfig = existsSync("config.toml") ? "config.toml" : undefined;
  const configured = loadConfig({ file: fileConfig });
  const maxEntries = Math.max(records, configured.api.cache_max_entries);
  const config = loadConfig({ file: fileConfig, environment: { ...process.env, IAPPS_API_CACHE_MAX_ENTRIES: String(maxEntries) } });
  const context = createContext(config);
  const cache = context.cache;
  if (!cache || !context.subscriber) throw new Error("the context has no cache");
  const deadline = Date.now() + 10_000;
  while (!context.subscriber.live) {
    if (Date.now() > deadline) throw new Error("the cache subscription did not come up");
    await Bun.sleep(10);
  }

  const readAll = async (from: number, to: number) => {
    let next = from;
    let missing = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < to) {
          const i = next++;
          if ((await context.store.read(APP, ownerOf(i))) === null) missing++;
        }
      }),
    );
    return missing;
  };

  // Code paths, connection buffers and the Map's machinery exist before "before".
  if ((await readAll(records, records + WARM)) > 0) throw new Error("warm-up records are missing: populate first (--role populate)");
  cache.clear();
  const missesBefore = cache.misses;
  const before = await settle();

  const started = performance.now();
  const missing = await readAll(0, records);
  const fillSeconds = (performance.now() - started) / 1000;
  const size = cache.size;
  const fills = cache.misses - missesBefore;
  const after = await settle();

  // Keep the cache reachable until after the measurement, then see what goes back.
  const stillCached = cache.get(keys.record(APP, ownerOf(0)))?.etag === recordOf(0).etag;
  cache.clear();
  const cleared = await settle();

  const sample = fieldsOf(recordOf(records >> 1));
  const storedBytes = keys.record(APP, ownerOf(records >> 1)).length + Object.entries(sample).reduce((n, [k, v]) => n + k.length + v.length, 0);
  process.stdout.write(
    `${JSON.stringify({
      records,
      maxEntries,
      size,
      fills,
      missing,
      stillCached,
      fillSeconds,
      before,
      after,
      cleared,
      rssPerRecord: (after.rss - before.rss) / records,
      heapPerRecord: (after.heapUsed - before.heapUsed) / records,
      extraPerRecord: (after.extra - before.extra) / records,
      storedBytes,
      bun: Bun.version,
    })}\n`,
  );
  await context.close();
}

if (import.meta.main) {
  const records = Number(option("records") ?? 100_000);
  if (!Number.isInteger(records) || records <= 0) throw new Error(`--records: expected a positive integer, got ${option("records")}`);
  if (option("role") === "populate") {
    const url = option("redis");
    if (!url) throw new Error("--role populate needs --redis URL");
    await populate(url, records);
  } else {
    await measure(records);
  }
  process.exit(0);
}
