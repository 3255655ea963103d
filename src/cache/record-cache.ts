// A replica's in-memory cache of records, bounded in entries and in bytes (second-chance
// eviction, an approximation of least recently used), kept coherent by invalidations that every
// write publishes (src/cache/invalidations.ts).
//
// An entry's bytes are an estimate: its serialised configuration counted twice, once for the
// parsed objects and once for the JSON text the entry keeps (a read answers with it, so a warm
// retrieve serialises nothing: src/base/json-text.ts), plus a fixed overhead for the key, ETag,
// job id and the Map's own bookkeeping. The bound is on what operators can reason about (the
// size of what Redis holds, and the text kept beside it), and it keeps a few huge configurations
// from crowding out thousands of small ones, or the process out of memory.
//
// The race that matters: a fill reads a record from Redis, a write replaces it and its
// invalidation passes, and only then does the fill insert what it read. To never install that
// older record, every fill (and every local write-through) holds a *ticket* from before its
// Redis read until its insert. An invalidation of the same key marks the key's open tickets
// stale, unless it announces the very ETag the ticket is about to insert; a stale ticket
// inserts nothing. Dropping the subscription marks every ticket stale. (Tickets rather than
// version numbers: ETags are random, so records carry no order to compare.)
//
// Imports the record type, src/base/json-text.ts and src/metrics/metrics.ts.

import { rememberJsonText } from "../base/json-text.ts";
import { metrics } from "../metrics/metrics.ts";
import type { StoredRecord } from "../domain/record.ts";

/** A cached answer: the record, or null for "no record" (the app's default applies). */
export type CachedRecord = StoredRecord | null;

export interface Ticket {
  readonly key: string;
  /** The ETag this ticket will insert, when known before the read (a write-through). */
  readonly etag: string | undefined;
  stale: boolean;
}

interface Entry {
  value: CachedRecord;
  /** The configuration's JSON text, kept to answer with (null for "no record"). */
  json: string | null;
  /** Read since it last came to the back: spared once at eviction (second chance). */
  used: boolean;
  /** Its share of the byte bound (entryBytes). */
  bytes: number;
}

/** What an entry costs beyond its configuration: key, ETag, job id, timestamps, Map slot. */
export const ENTRY_OVERHEAD_BYTES = 512;

/** The estimated bytes of an entry: its key, its configuration's JSON text twice (parsed, and kept as text), and the overhead. */
export function entryBytes(key: string, json: string | null): number {
  return ENTRY_OVERHEAD_BYTES + key.length + 2 * (json?.length ?? 0);
}

const hits = metrics.cacheHits.bind({});
const misses = metrics.cacheMisses.bind({});

export class RecordCache {
  private readonly entries = new Map<string, Entry>();
  private readonly tickets = new Map<string, Set<Ticket>>();
  /** False while the subscription is down or not yet confirmed: nothing is served or inserted. */
  private live = false;
  private usedBytes = 0;
  hits = 0;
  misses = 0;

  /** Both bounds must be positive for the cache to hold anything (0 turns it off). */
  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number = Number.POSITIVE_INFINITY,
  ) {}

  get enabled(): boolean {
    return this.maxEntries > 0 && this.live;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The estimated bytes of every entry held (see entryBytes): never above maxBytes. */
  get bytes(): number {
    return this.usedBytes;
  }

  /** The cached answer, or undefined on a miss (or while the cache is not trusted). */
  get(key: string): CachedRecord | undefined {
    if (!this.enabled) return undefined;
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.misses++;
      misses.inc();
      return undefined;
    }
    // Only a mark: deleting and re-inserting a hot key on every hit costs time that grows with
    // the size of the Map in JavaScriptCore and V8 (86 µs per hit at 100,000 entries).
    entry.used = true;
    this.hits++;
    hits.inc();
    return entry.value;
  }

  /**
   * The cached answer when there is one (counted as a hit), else undefined and nothing counted:
   * for a caller that answers what it can from memory and reads on through get() otherwise, so
   * that such a miss counts once.
   */
  hit(key: string): CachedRecord | undefined {
    if (!this.enabled) return undefined;
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    entry.used = true;
    this.hits++;
    hits.inc();
    return entry.value;
  }

  /** Take before reading Redis (or before EXEC, for a write-through). */
  open(key: string, etag?: string): Ticket {
    const ticket: Ticket = { key, etag, stale: !this.enabled };
    let open = this.tickets.get(key);
    if (!open) {
      open = new Set();
      this.tickets.set(key, open);
    }
    open.add(ticket);
    return ticket;
  }

  /** Inserts what the ticket's read found, unless an invalidation passed meanwhile. */
  close(ticket: Ticket, value: CachedRecord | undefined): void {
    const open = this.tickets.get(ticket.key);
    open?.delete(ticket);
    if (open?.size === 0) this.tickets.delete(ticket.key);
    if (value === undefined || ticket.stale || !this.enabled) return;
    this.remove(ticket.key);
    // A write-through is the newest there is: fills that read before it must not overwrite it.
    if (ticket.etag !== undefined) for (const other of open ?? []) other.stale = true;
    const json = value === null ? null : (JSON.stringify(value.config) ?? null);
    const bytes = entryBytes(ticket.key, json);
    // Larger than the whole budget: it would evict everything else and still not fit.
    if (bytes > this.maxBytes) return;
    if (json !== null && typeof value?.config === "object" && value.config !== null) rememberJsonText(value.config, json);
    this.entries.set(ticket.key, { value, json, used: false, bytes });
    this.usedBytes += bytes;
    // Never the entry just inserted (it fits the budget alone): when every older one was read
    // since, second chance would otherwise pick it first.
    while (this.entries.size > 1 && (this.entries.size > this.maxEntries || this.usedBytes > this.maxBytes)) this.evictOne(ticket.key);
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    this.usedBytes -= entry.bytes;
  }

  /**
   * Second chance (an approximation of least recently used): from the oldest insertion on, an
   * entry read since it was last moved goes to the back, unmarked; the first unread one goes.
   */
  private evictOne(spared: string) {
    for (const [key, entry] of this.entries) {
      if (key === spared) continue;
      this.entries.delete(key);
      if (!entry.used) {
        this.usedBytes -= entry.bytes;
        metrics.cacheEvictions.inc();
        return;
      }
      entry.used = false;
      this.entries.set(key, entry);
    }
  }

  /** A write elsewhere (or here) produced `etag` for `key`: drop anything older. */
  invalidate(key: string, etag: string | null): void {
    const entry = this.entries.get(key);
    if (entry !== undefined && (entry.value === null || entry.value.etag !== etag)) this.remove(key);
    for (const ticket of this.tickets.get(key) ?? []) {
      if (ticket.etag === undefined || ticket.etag !== etag) ticket.stale = true;
    }
  }

  /** Forgets everything, including what fills in flight would insert. */
  clear(): void {
    this.entries.clear();
    this.usedBytes = 0;
    for (const open of this.tickets.values()) for (const ticket of open) ticket.stale = true;
  }

  /** The subscription dropped: trust nothing until it is back and the cache cleared. */
  suspend(): void {
    this.live = false;
    this.clear();
  }

  /** The subscription is confirmed: start from an empty cache. */
  resume(): void {
    this.clear();
    this.live = true;
  }
}
