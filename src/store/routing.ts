// Which node of a Redis Cluster serves what: the master a transaction on a key runs on (from
// the cluster client's slot map), the masters transactions go to now, a node's plain connection
// (for CLIENT KILL), and SCAN over every master. For a single server, always that server.
// Imports ioredis, src/store/connections.ts, src/store/redis-errors.ts and src/store/slots.ts only.

import { Cluster, type Redis } from "ioredis";
import { hostAndPortOf, readyConnection, type RedisClient, type RedisSettings } from "./connections.ts";
import { RedisUnavailableError } from "./redis-errors.ts";
import { hashSlot } from "./slots.ts";

/** Runs `onBatch` for every key matching `pattern`, with SCAN, on every master of a cluster. */
export async function scanEach(client: RedisClient, pattern: string, count: number, onBatch: (keys: string[]) => Promise<void>): Promise<void> {
  const nodes = client instanceof Cluster ? client.nodes("master") : [client];
  for (const node of nodes) {
    let cursor = "0";
    do {
      const [next, batch] = await node.scan(cursor, "MATCH", pattern, "COUNT", count);
      cursor = next;
      if (batch.length > 0) await onBatch(batch);
    } while (cursor !== "0");
  }
}

/**
 * Where a transaction on `key` must run: the URL of its slot's master. For a single server,
 * always its URL; for a cluster, from the client's slot map (refreshed after a MOVED): the
 * node's address only, its connections take credentials and TLS from `nodeOptions`.
 */
export type TransactionRouter = (key: string) => string | Promise<string>;

/** The URLs transactions are routed to now: the master of every slot. */
export function mastersOf(client: Cluster): Set<string> {
  return new Set(client.slots.map((nodes) => nodes?.[0]).filter((node): node is string => node !== undefined).map(nodeUrl));
}

function nodeUrl(node: string): string {
  // "host:port"; an IPv6 host goes in brackets in a URL.
  const colon = node.lastIndexOf(":");
  const host = node.slice(0, colon);
  return `redis://${host.includes(":") ? `[${host}]` : host}${node.slice(colon)}`;
}

export function routerFor(settings: RedisSettings, client: RedisClient): TransactionRouter {
  // Answered at once when known (every time for a single server): no turn of the event loop per transaction.
  if (!(client instanceof Cluster)) return () => settings.url;
  const ready = readyConnection(client, settings.commandTimeoutMs);
  const known = (slot: number) => {
    const node = client.slots[slot]?.[0];
    if (node === undefined) throw new RedisUnavailableError("the cluster's slot map is not known yet");
    return nodeUrl(node);
  };
  return (key) => {
    const slot = hashSlot(key);
    // The slot map arrives with the cluster client's first connection.
    if (client.slots[slot]?.[0] === undefined) return ready().then(() => known(slot));
    return known(slot);
  };
}

/** A connection to the node at `url` that is not in a transaction: for CLIENT KILL. */
export function nodeConnectionFor(settings: RedisSettings, client: RedisClient): (url: string) => Redis | null {
  if (!(client instanceof Cluster)) return (url) => (url === settings.url ? client : null);
  return (url) => {
    const { host, port } = hostAndPortOf(url);
    return client.nodes("all").find((node) => node.options.host === host && node.options.port === port) ?? null;
  };
}
