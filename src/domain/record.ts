// A record: the stored configuration of one (app, owner) (spec §1), as every layer names it.
// Redis holds it as the hash `iapps:cfg:{<app>:<owner>}` (src/store/records.ts).

export type RecordState = "active" | "detached";

export interface StoredRecord {
  config: unknown;
  etag: string;
  jobId: string;
  state: RecordState;
  updatedAt: string;
  /**
   * What the service itself removed from the configuration, and why, in words for the owner (a
   * folder marked restricted). Set by the write that removed it; gone with the next write.
   */
  warnings?: string[];
}

/** What made a version of a record (spec §11): `open` is a terminal open that changed its folders. */
export type VersionKind = "update" | "reset" | "rollback" | "open";
/** What an audit entry records: a version's kind, or a restart (which makes no version). */
export type AuditKind = VersionKind | "restart";
/** Which route family a change came through. */
export type Via = "public" | "provider";

/** One kept version of a record's configuration, newest first in its history. */
export interface Version {
  etag: string;
  config: unknown;
  kind: VersionKind;
  /** The user (public routes) or the principal's createdBy (provider routes). */
  changedBy: string;
  via: Via;
  /** ISO 8601. */
  changedAt: string;
  /** The request that made it ("" when there was none, such as a test's direct call). */
  requestId: string;
}

/** One entry of the audit stream `iapps:audit`: every change and every restart. */
export interface AuditEntry {
  app: string;
  /** `<createdBy>` or `<createdBy>:<project>`. */
  owner: string;
  kind: AuditKind;
  /** The record's ETag after the change (a plain restart keeps it). */
  etag: string;
  changedBy: string;
  via: Via;
  requestId: string;
  /** ISO 8601. */
  at: string;
}
