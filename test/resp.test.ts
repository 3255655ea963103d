// The RESP connection of the transaction pool and the invalidation subscriber (src/store/resp.ts),
// against a real redis-server: replies matched to their batches however the bytes arrive, the
// URL read as ioredis reads it, and the command timeout that closes a connection Redis stopped
// answering.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RedisTimeoutError, RedisUnavailableError, replyCodeOf } from "../src/store/redis-errors.ts";
import { RespConnection } from "../src/store/resp.ts";
import { CLUSTER_MODE, TestRedis } from "./support/redis-server.ts";

let redis: TestRedis;
beforeAll(async () => {
  redis = await TestRedis.start();
});
afterAll(async () => {
  await redis.close();
});

const open = (url = redis.url, commandTimeoutMs?: number) => RespConnection.open(url, { name: "resp-test", connectTimeoutMs: 1000, commandTimeoutMs });

describe.skipIf(CLUSTER_MODE)("a RESP connection", () => {
  test("answers each batch with its own replies, in order: strings, integers, nulls, errors, arrays", async () => {
    const connection = await open();
    try {
      await redis.admin.del("resp:h", "resp:l");
      const [batch1, batch2] = await Promise.all([
        connection.send([["HSET", "resp:h", "a", "é ü 1", "b", "2"], ["HGETALL", "resp:h"], ["GET", "resp:none"]]),
        connection.send([["LPUSH", "resp:l", "x"], ["HGET", "resp:l", "f"], ["LRANGE", "resp:none", 0, -1], ["PING"]]),
      ]);
      expect(batch1).toEqual([2, ["a", "é ü 1", "b", "2"], null]);
      expect(batch2[0]).toBe(1);
      expect(replyCodeOf(batch2[1])).toBe("WRONGTYPE");
      expect(batch2.slice(2)).toEqual([[], "PONG"]);
      expect(await connection.send([])).toEqual([]);
    } finally {
      connection.close();
    }
  });

  test("a MULTI whose watched key changed answers EXEC with null; one that ran, with every reply", async () => {
    const connection = await open();
    try {
      await connection.send([["WATCH", "resp:w"], ["GET", "resp:w"]]);
      await redis.admin.set("resp:w", "someone else");
      expect((await connection.send([["MULTI"], ["SET", "resp:w", "mine"], ["EXEC"]])).at(-1)).toBeNull();
      await connection.send([["WATCH", "resp:w"]]);
      const ran = await connection.send([["MULTI"], ["SET", "resp:w", "mine"], ["INCR", "resp:w"], ["EXEC"]]);
      const [ok, failed] = ran.at(-1) as unknown[];
      expect(ok).toBe("OK");
      expect(failed).toBeInstanceOf(Error);
      expect(await redis.admin.get("resp:w")).toBe("mine");
    } finally {
      connection.close();
    }
  });

  test("a reply split across socket reads, or many in one chunk, is read whole", async () => {
    // Large values cross socket reads; a thousand small replies share them.
    const connection = await open();
    try {
      const big = `${"v".repeat(300_000)}é`;
      await connection.send([["SET", "resp:big", big]]);
      const replies = await connection.send([["GET", "resp:big"], ...Array.from({ length: 1000 }, (_, i) => ["ECHO", `n${i}`]), ["GET", "resp:big"]]);
      expect(replies[0]).toBe(big);
      expect(replies.slice(1, -1)).toEqual(Array.from({ length: 1000 }, (_, i) => `n${i}`));
      expect(replies.at(-1)).toBe(big);
    } finally {
      connection.close();
    }
  });

  test("every argument arrives as it was given: ASCII or not, short or long, numbers, empty, CR and LF inside", async () => {
    const connection = await open();
    try {
      const values = [
        "",
        "plain",
        "é",
        "日本語 and 🙂",
        "line\r\nbreak",
        "x".repeat(48),
        "x".repeat(49),
        `${"y".repeat(49)}ü`,
        `ü${"z".repeat(200)}`,
        "🙂".repeat(5000),
        // More bytes than units, with a longer length to write: 60 units, 120 bytes; 9999 units, 10008 bytes.
        "é".repeat(60),
        `${"a".repeat(9990)}${"é".repeat(9)}`,
      ];
      const numbers = [0, 7, 10, -5, 1.5, 123456789];
      const echoed = await connection.send([...values, ...numbers].map((value) => ["ECHO", value]));
      expect(echoed).toEqual([...values, ...numbers.map(String)]);
      // Read back by another client: the bytes in Redis are the values' UTF-8.
      await connection.send(values.map((value, i) => ["SET", `resp:arg:${i}`, value]));
      for (const [i, value] of values.entries()) expect(await redis.admin.get(`resp:arg:${i}`)).toBe(value);
      // A small batch after a big one (the encoder's buffer reused), and integers below zero.
      const [big, small] = [`${"b".repeat(100_000)}é`, "small"];
      await connection.send([["SET", "resp:arg:big", big]]);
      expect(await connection.send([["ECHO", small], ["TTL", "resp:arg:none"], ["STRLEN", "resp:arg:big"]])).toEqual([small, -2, Buffer.byteLength(big)]);
    } finally {
      connection.close();
    }
  });

  test("the URL's database is used, from its path or ?db= as ioredis reads it", async () => {
    await redis.admin.select(0);
    const a = await open(`${redis.url}/3`);
    const b = await open(`${redis.url}?db=4`);
    try {
      await a.send([["SET", "resp:db", "three"]]);
      await b.send([["SET", "resp:db", "four"]]);
      const other = redis.admin.duplicate();
      await other.select(3);
      expect(await other.get("resp:db")).toBe("three");
      await other.select(4);
      expect(await other.get("resp:db")).toBe("four");
      other.disconnect();
    } finally {
      a.close();
      b.close();
    }
  });

  test("Redis that stops answering: the batch fails with RedisTimeoutError about the command timeout later, and the connection closes", async () => {
    const connection = await open(redis.url, 300);
    const closed = new Promise<Error>((resolve) => {
      connection.onClose = resolve;
    });
    await redis.pause();
    try {
      const started = performance.now();
      const error = await connection.send([["PING"]]).catch((e: unknown) => e);
      const waited = performance.now() - started;
      expect(error).toBeInstanceOf(RedisTimeoutError);
      expect(waited).toBeGreaterThanOrEqual(300);
      expect(await closed).toBe(error as Error);
      expect(connection.usable).toBe(false);
      expect(await connection.send([["PING"]]).catch((e: unknown) => e)).toBeInstanceOf(RedisUnavailableError);
    } finally {
      redis.resume();
    }
  });

  test("a connection Redis closes fails what it owes at once", async () => {
    const connection = await open();
    const id = connection.id;
    // Caught at once: the kill's reply may come after the rejection.
    const pending = connection.send([["BLPOP", "resp:never", 5]]).catch((e: unknown) => e);
    await redis.admin.client("KILL", "ID", String(id));
    expect(await pending).toBeInstanceOf(RedisUnavailableError);
    expect(connection.usable).toBe(false);
  });
});
