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
