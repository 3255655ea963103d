// Standard HTTP conditional requests on top of UCloud's body ETags: the `ETag` header,
// `If-Match` (a precondition of update, reset and restart) and `If-None-Match` (on retrieve).
// RFC 9110 §13.1: If-Match compares strongly (a weak tag never matches), If-None-Match weakly
// (`W/"x"` matches `"x"`): a cache that holds our answer as a weak tag may still revalidate it.
// Imports src/service/preconditions.ts (types) only: the service compares, this file parses.

import type { IfMatch } from "../service/preconditions.ts";

export const etagHeader = (etag: string) => `"${etag}"`;

/** The entity tags of a header: `*`, or each listed tag without its quotes, and whether it was weak. */
function entityTags(header: string): "*" | { tag: string; weak: boolean }[] {
  const trimmed = header.trim();
  if (trimmed === "*") return "*";
  const tags: { tag: string; weak: boolean }[] = [];
  for (const part of trimmed.split(",")) {
    let tag = part.trim();
    const weak = tag.startsWith("W/");
    if (weak) tag = tag.slice(2);
    if (tag === "") continue;
    tags.push({ tag: tag.startsWith('"') && tag.endsWith('"') && tag.length >= 2 ? tag.slice(1, -1) : tag, weak });
  }
  return tags;
}

/**
 * The entity tags of an `If-Match` header: `*`, or the listed tags without their quotes. Weak
 * tags (`W/"..."`) are dropped: If-Match compares strongly, and our ETags are never weak. Null
 * when the header is absent.
 */
export function parseEtagList(header: string | undefined): IfMatch | null {
  if (header === undefined) return null;
  const tags = entityTags(header);
  return tags === "*" ? "*" : tags.filter((t) => !t.weak).map((t) => t.tag);
}

/** Whether an `If-None-Match` header matches `etag` (weak comparison: `W/"x"` matches `"x"`). */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const tags = entityTags(header);
  return tags === "*" || tags.some((t) => t.tag === etag);
}
