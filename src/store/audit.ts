// The audit stream `iapps:audit` (spec §11): an entry for every change and every restart, and
// only for one that landed. On a single server the write's MULTI appends it (an XADD among the
// write's own commands, records.ts): it lands exactly when the write does. On a
// cluster the stream is one key, on one node, so it cannot join a record's MULTI: the MULTI puts
// the entry in the record's outbox (outbox.ts) as a member of its own, next to the write's task,
// and the relay after EXEC (or, when the writer died before it, the resync) appends it here. An
// entry is therefore never lost; through the outbox it may be appended twice (the relay appended
// it, then died before taking it out of the outbox), and a duplicate is the same entry again:
// same etag, kind, requestId, at. (A single server's write whose queue cannot add within a MULTI
// takes the outbox too, and the relay appends the entry in the script that empties it.)
// Imports ioredis' types (through connections.ts), keys.ts and the domain's AuditEntry.

import type { AuditEntry } from "../domain/record.ts";
import type { RedisClient } from "./connections.ts";
import { keys } from "./keys.ts";

/** `[api] audit_max_length` when unset. */
export const DEFAULT_AUDIT_MAX_LENGTH = 1_000_000;

const MEMBER_PREFIX = "audit:";

/** The outbox payload of an entry: no space in it (an outbox member is `<payload> <nonce>`). */
export function auditPayload(entry: AuditEntry): string {
  return MEMBER_PREFIX + Buffer.from(JSON.stringify(entry)).toString("base64url");
}

/** The entry an outbox payload carries, or null for a task id. */
export function auditOfPayload(payload: string): AuditEntry | null {
  if (!payload.startsWith(MEMBER_PREFIX)) return null;
  return JSON.parse(Buffer.from(payload.slice(MEMBER_PREFIX.length), "base64url").toString("utf8")) as AuditEntry;
}

const FIELDS = ["app", "owner", "kind", "etag", "changedBy", "via", "requestId", "at"] as const;

/** An entry as the fields and values of its stream entry: `field, value, ...` (16 of them). */
export function auditFields(entry: AuditEntry): string[] {
  return FIELDS.flatMap((field) => [field, entry[field]]);
}

/** XADD's arguments that append `entry`, trimming the stream to about `maxLength` (MAXLEN ~). */
export function auditXaddArguments(entry: AuditEntry, maxLength: number): [string, "MAXLEN", "~", number, "*", ...string[]] {
  return [keys.audit(), "MAXLEN", "~", maxLength, "*", ...auditFields(entry)];
}

/** Appends `entries`, in order, trimming the stream to about `maxLength` (MAXLEN ~). */
export async function appendAudit(client: RedisClient, entries: AuditEntry[], maxLength: number): Promise<void> {
  if (entries.length === 0) return;
  const pipeline = client.pipeline();
  for (const entry of entries) pipeline.xadd(...auditXaddArguments(entry, maxLength));
  const replies = await pipeline.exec();
  for (const [error] of replies ?? []) if (error) throw error;
}

/** A stream entry's id and fields as the audit entry they hold. */
export function auditOfStreamEntry([id, flat]: [string, string[]]): AuditEntry & { id: string } {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
  return { id, ...(fields as unknown as AuditEntry) };
}

/** Entries from `start` (an id, `-` for the oldest), oldest first, `count` at a time. */
export async function readAudit(client: RedisClient, start: string, count: number): Promise<(AuditEntry & { id: string })[]> {
  const entries = (await client.xrange(keys.audit(), start, "+", "COUNT", count)) as [string, string[]][];
  return entries.map(auditOfStreamEntry);
}

/** Entries after `lastId` (`$`: only new ones), waiting up to `blockMs` for one (XREAD BLOCK). */
export async function followAudit(client: RedisClient, lastId: string, blockMs: number): Promise<(AuditEntry & { id: string })[]> {
  const reply = (await client.xread("COUNT", 100, "BLOCK", blockMs, "STREAMS", keys.audit(), lastId)) as [string, [string, string[]][]][] | null;
  return reply === null ? [] : reply.flatMap(([, entries]) => entries.map(auditOfStreamEntry));
}
