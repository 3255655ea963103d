// Port allocation at a provider's size (spec §7, §9; issue 13): a pod's port costs the same few
// Redis commands whether it is the first or the two-thousandth, freed ports are handed out again,
// and a change of the configured range never takes a port from a job that holds one nor hands
// one out twice. (test/syncthing.test.ts covers 8435 and uniqueness across worker processes.)

import { describe, expect, test } from "bun:test";
import type { PortRange } from "../src/domain/runtime.ts";
import { keys } from "../src/store/keys.ts";
import { RedisPortAllocator } from "../src/store/ports.ts";
import { startHarness } from "./support/harness.ts";

const h = await startHarness({ api: false });
const { redis } = h;
const POOL = "test";

/** Every command Redis ran so far (those inside scripts too), from INFO commandstats, less the INFO calls. */
async function commandsRun(): Promise<number> {
  const stats = await redis.admin.info("commandstats");
  let total = 0;
  for (const [, name, calls] of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (name !== "info") total += Number(calls);
  return total;
}

/** What one call cost Redis, in commands. */
async function cost<T>(call: () => Promise<T>): Promise<{ value: T; commands: number }> {
  const before = await commandsRun();
  const value = await call();
  return { value, commands: (await commandsRun()) - before };
}

describe("port allocation costs the same for every pod (issue 13)", () => {
  test("2,000 ports: the 2,000th allocation costs as many commands as the 2nd; 8435 is never handed out", async () => {
    const ports = new RedisPortAllocator(h.context().commands);
    const range: PortRange = { min: 7000, max: 9002, exclude: [8435] };
    // The first allocation builds the free list from the range, and loads the script.
    const first = await ports.allocate(POOL, "job-0", range);
    const costs: number[] = [];
    const handed = [first!];
    for (let i = 1; i < 2000; i++) {
      const { value, commands } = await cost(() => ports.allocate(POOL, `job-${i}`, range));
      costs.push(commands);
      handed.push(value!);
    }
    console.log(`commands per allocation (EVALSHA and the commands it runs): 2nd ${costs[0]}, 1000th ${costs[998]}, 2000th ${costs.at(-1)}`);
    expect(new Set(costs)).toEqual(new Set([costs[0]!]));
    expect(costs[0]!).toBeLessThanOrEqual(8);
    expect(new Set(handed).size).toBe(2000);
    expect(handed.every((p) => p >= 7000 && p < 9002 && p !== 8435)).toBe(true);
    // One port is left (2,002 in the range, 8435 excluded); then the range is exhausted.
    expect(await ports.allocate(POOL, "job-2000", range)).not.toBeNull();
    const exhausted = await cost(() => ports.allocate(POOL, "job-2001", range));
    expect(exhausted.value).toBeNull();
    expect(exhausted.commands).toBeLessThanOrEqual(costs[0]!);
  });

  test("a job asking again keeps its port, at the same cost", async () => {
    const ports = new RedisPortAllocator(h.context().commands);
    const range: PortRange = { min: 20000, max: 20010, exclude: [] };
    const port = await ports.allocate(POOL, "job-a", range);
    expect(await ports.allocate(POOL, "job-a", range)).toBe(port);
    expect(await ports.portOf(POOL, "job-a")).toBe(port);
  });
});

describe("freed ports are handed out again", () => {
  test("after every port was taken, released ones are reused, and only they", async () => {
    const ports = new RedisPortAllocator(h.context().commands);
    const range: PortRange = { min: 8430, max: 8440, exclude: [8435] };
    const held = new Map<string, number>();
    for (let i = 0; i < 9; i++) held.set(`job-${i}`, (await ports.allocate(POOL, `job-${i}`, range))!);
    expect([...held.values()].sort()).toEqual([8430, 8431, 8432, 8433, 8434, 8436, 8437, 8438, 8439]);
    expect(await ports.allocate(POOL, "late", range)).toBeNull();

    await ports.release(POOL, "job-2");
    await ports.release(POOL, "job-7");
    // Releasing twice, or a job holding nothing, frees nothing more.
    await ports.release(POOL, "job-2");
    await ports.release(POOL, "nobody");
    expect(await ports.portOf(POOL, "job-2")).toBeNull();
    const reused = [await ports.allocate(POOL, "late", range), await ports.allocate(POOL, "later", range)];
    expect(reused.sort()).toEqual([held.get("job-2")!, held.get("job-7")!].sort());
    expect(await ports.allocate(POOL, "latest", range)).toBeNull();
    expect(await redis.admin.hlen(keys.portsByPort(POOL))).toBe(9);
  });

  test("concurrent allocations and releases on several connections never hand a port to two jobs", async () => {
    const allocators = Array.from({ length: 4 }, () => new RedisPortAllocator(h.context().commands));
    const range: PortRange = { min: 30000, max: 30050, exclude: [] };
    const jobs = Array.from({ length: 200 }, (_, i) => `job-${i}`);
    // Each job takes a port, and every other one gives it back at once: 150 asks for 50 ports.
    const got = await Promise.all(
      jobs.map(async (job, i) => {
        const ports = allocators[i % allocators.length]!;
        const port = await ports.allocate(POOL, job, range);
        if (port !== null && i % 2 === 1) {
          await ports.release(POOL, job);
          return null;
        }
        return port;
      }),
    );
    const kept = got.filter((p): p is number => p !== null);
    expect(new Set(kept).size).toBe(kept.length);
    const byPort = await redis.admin.hgetall(keys.portsByPort(POOL));
    expect(Object.keys(byPort).map(Number).sort()).toEqual([...kept].sort());
    // Every port of the range is either held or free, once.
    const free = (await redis.admin.lrange(keys.portsFree(POOL), 0, -1)).map(Number);
    expect([...free, ...kept].sort()).toEqual(Array.from({ length: 50 }, (_, i) => 30000 + i).sort());
  });
});

describe("a change of the configured range", () => {
  test("rebuilds the free list from the new range minus the ports held, and takes no port away", async () => {
    const ports = new RedisPortAllocator(h.context().commands);
    const wide: PortRange = { min: 40000, max: 40010, exclude: [] };
    const a = await ports.allocate(POOL, "a", wide); // 40000
    const b = await ports.allocate(POOL, "b", wide); // 40001
    const c = await ports.allocate(POOL, "c", wide); // 40002
    expect([a, b, c]).toEqual([40000, 40001, 40002]);

    // Narrower, from 40001: a's port is out of the range, but a keeps it until a asks again.
    const narrow: PortRange = { min: 40001, max: 40005, exclude: [40003] };
    const d = await ports.allocate(POOL, "d", narrow);
    expect(d).toBe(40004);
    expect(await ports.portOf(POOL, "a")).toBe(40000);
    expect(await redis.admin.get(keys.portsRange(POOL))).toBe("40001:40005:40003");
    expect(await redis.admin.lrange(keys.portsFree(POOL), 0, -1)).toEqual([]);
    // b and c keep theirs; the range is exhausted; a asking again gives its port up.
    expect(await ports.allocate(POOL, "b", narrow)).toBe(40001);
    expect(await ports.allocate(POOL, "e", narrow)).toBeNull();
    expect(await ports.allocate(POOL, "a", narrow)).toBeNull();
    expect(await redis.admin.hget(keys.portsByPort(POOL), "40000")).toBeNull();

    // A port released outside the range is not made free; one inside it is.
    await ports.release(POOL, "c");
    expect(await redis.admin.lrange(keys.portsFree(POOL), 0, -1)).toEqual(["40002"]);

    // Back to the wide range: everything not held is free again, held ports stay with their jobs.
    const again = await ports.allocate(POOL, "f", wide);
    expect(again).toBe(40000);
    const free = (await redis.admin.lrange(keys.portsFree(POOL), 0, -1)).map(Number);
    expect(free).toEqual([40002, 40003, 40005, 40006, 40007, 40008, 40009]);
    expect(await redis.admin.hgetall(keys.portsByJob(POOL))).toEqual({ b: "40001", d: "40004", f: "40000" });
  });

  test("a pool from before free lists (only the two hashes) keeps its holders", async () => {
    await redis.admin.hset(keys.portsByPort(POOL), "50000", "old", "50002", "older");
    await redis.admin.hset(keys.portsByJob(POOL), "old", "50000", "older", "50002");
    const ports = new RedisPortAllocator(h.context().commands);
    const range: PortRange = { min: 50000, max: 50004, exclude: [] };
    // Released before any allocation built a list: the next allocation builds it from the hashes.
    await ports.release(POOL, "older");
    expect([await ports.allocate(POOL, "new1", range), await ports.allocate(POOL, "new2", range), await ports.allocate(POOL, "new3", range)]).toEqual([
      50001, 50002, 50003,
    ]);
    expect(await ports.allocate(POOL, "old", range)).toBe(50000);
    expect(await ports.allocate(POOL, "new4", range)).toBeNull();
  });
});
