// What an app's runtime hooks may use beside the record: storage, port allocation and the
// terminal's inactivity leases. Interfaces only: the implementations (local files, Redis) live in
// src/storage and src/store, so apps never touch Redis or the file system layout themselves.
// Imports src/domain/storage.ts and src/store/keys.ts (types) only.

import type { Storage } from "./storage.ts";
import type { Owner } from "./owner.ts";

export interface PortRange {
  /** First port of the range. */
  min: number;
  /** First port after the range. */
  max: number;
  /** Ports never handed out. */
  exclude: number[];
}

/** Ports unique across every pod of a pool, whichever worker asks (kept in Redis). */
export interface PortAllocator {
  /** The job's port: the one it holds, else a free one; null when the range is exhausted. */
  allocate(pool: string, jobId: string, range: PortRange): Promise<number | null>;
  /** The port the job holds, or null. */
  portOf(pool: string, jobId: string): Promise<number | null>;
  /** Gives the job's port back (nothing when it holds none). */
  release(pool: string, jobId: string): Promise<void>;
}

/** The terminal's inactivity leases (kept in Redis, so every replica and worker agrees). */
export interface ActivityLeases {
  /** Starts or extends the owner's lease for `ms`. */
  refresh(app: string, owner: Owner, ms: number): Promise<void>;
  /** Milliseconds left on the owner's lease, or 0 when there is none. */
  remaining(app: string, owner: Owner): Promise<number>;
}

export interface AppRuntime {
  storage: Storage;
  ports: PortAllocator;
  leases: ActivityLeases;
}
