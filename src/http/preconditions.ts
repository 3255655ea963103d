// Standard HTTP conditional requests on top of UCloud's body ETags: the `ETag` header,
// `If-Match` (a precondition of update, reset and restart) and `If-None-Match` (on retrieve).

import type { IfMatch } from "../service/configs.ts";

export const etagHeader = (etag: string) => `"${etag}"`;

/**
 * The entity tags of an `If-Match` or `If-None-Match` header: `*`, or the listed tags without
 * their quotes. Weak tags (`W/"..."`) are dropped: If-Match compares strongly, and our ETags are
 * never weak. Null when the header is absent.
 */
export function parseEtagList(header: string | undefined): IfMatch | null {
  if (header === undefined) return null;
  const trimmed = header.trim();
  if (trimmed === "*") return "*";
  const tags: string[] = [];
  for (const part of trimmed.split(",")) {
    const tag = part.trim();
    if (tag === "" || tag.startsWith("W/")) continue;
    tags.push(tag.startsWith('"') && tag.endsWith('"') && tag.length >= 2 ? tag.slice(1, -1) : tag);
  }
  return tags;
}

export function noneMatch(header: string | undefined, etag: string): boolean {
  const tags = parseEtagList(header);
  if (tags === null) return false;
  return tags === "*" || tags.includes(etag);
}
