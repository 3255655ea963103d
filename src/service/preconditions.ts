// The ETag preconditions of a write (spec §3): `expectedETag` in the body (a mismatch answers 409)
// and `If-Match` (412), checked against the record a transaction watches. The HTTP layer parses
// headers into these (src/http/preconditions.ts); the service only compares.
// Imports src/domain/record.ts (types) and src/base/errors.ts.

import { etagMismatch, preconditionFailed } from "../base/errors.ts";
import type { StoredRecord } from "../domain/record.ts";

/** The ETag of a configuration that was never stored. */
export const INITIAL_ETAG = "initial";

/** `If-Match` as parsed by the HTTP layer: `*`, or a list of strong ETags. */
export type IfMatch = "*" | string[];

export interface Preconditions {
  /** From the body: a mismatch answers 409. */
  expectedETag: string | null;
  /** From the `If-Match` header: a mismatch answers 412. */
  ifMatch: IfMatch | null;
}

export const NO_PRECONDITIONS: Preconditions = { expectedETag: null, ifMatch: null };

/** Throws the 409 or 412 when `record` (null: none stored) is not the version the writer names. */
export function checkPreconditions(record: StoredRecord | null, pre: Preconditions): void {
  const current = record?.etag ?? INITIAL_ETAG;
  if (pre.expectedETag !== null && pre.expectedETag !== current) throw etagMismatch();
  if (pre.ifMatch !== null) {
    const matches = pre.ifMatch === "*" ? record !== null : pre.ifMatch.includes(current);
    if (!matches) throw preconditionFailed();
  }
}
