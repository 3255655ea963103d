// The message every successful write publishes on `iapps:invalidations`, in the same MULTI as
// the write: which record changed and its new ETag (null: the record is gone).
// Imports src/store/keys.ts only.

import { keys } from "./keys.ts";
import type { Owner } from "../domain/owner.ts";

export interface Invalidation {
  app: string;
  owner: Owner;
  etag: string | null;
}

export function encodeInvalidation(invalidation: Invalidation): string {
  return JSON.stringify(invalidation);
}

/** The record key and ETag a message names, or null for a message that is not one of ours. */
export function decodeInvalidation(message: string): { key: string; etag: string | null } | null {
  try {
    const { app, owner, etag } = JSON.parse(message) as Invalidation;
    if (typeof app !== "string" || typeof owner?.createdBy !== "string") return null;
    return { key: keys.record(app, { createdBy: owner.createdBy, project: owner.project ?? null }), etag: typeof etag === "string" ? etag : null };
  } catch {
    return null;
  }
}
