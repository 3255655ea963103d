// Drive metadata in Redis (spec §10): who owns a drive, who else may use it, whether it is
// locked, and which of its folders are restricted. It lives here, outside every drive, because
// the drives are the users': a file inside one (the old `.drive.json`) could be rewritten by any
// member with write access, or by a pod that mounts the drive. Only an operator changes it, with
// `bun src/main.ts drive ...`.
//
// One hash per drive, `iapps:drive:<driveId>`, one field per fact, so that every change is one
// HSET or HDEL (no read-modify-write between two operators) and `redis-cli HGETALL` reads it:
//   owner            the owning username
//   locked           "true" or "false"
//   member:<user>    "read" or "write"
//   sensitivity:<p>  "SENSITIVE" or "CONFIDENTIAL" for the folder <p> inside the drive ("" the drive itself)
//   updatedAt        when an operator last changed it
// Every change also increments `iapps:drive:.version`, after it: a worker's resync reads that
// once per pass and keeps what it read of drives (DriveMetadataCache) while it stays the same.
// Imports src/domain/storage.ts (types) and src/store/* only.

import type { DriveDirectory, DriveMetadata, MemberRole, Sensitivity } from "../domain/storage.ts";
import { keys } from "./keys.ts";
import type { CommandConnection, RedisClient } from "./connections.ts";
import { scanEach } from "./routing.ts";

const MEMBER = "member:";
const SENSITIVITY = "sensitivity:";

/** Metadata in Redis that no command of ours writes (someone edited it by hand). */
export class InvalidDriveMetadata extends Error {}

export function decodeDrive(driveId: string, hash: Record<string, string>): DriveMetadata | null {
  if (Object.keys(hash).length === 0) return null;
  const broken = (why: string) => new InvalidDriveMetadata(`the metadata of drive ${driveId} (${keys.drive(driveId)}) is invalid: ${why}`);
  if (!hash.owner) throw broken("it has no owner");
  if (hash.locked !== undefined && hash.locked !== "true" && hash.locked !== "false") throw broken("'locked' is neither true nor false");
  const members: Record<string, MemberRole> = Object.create(null);
  const sensitivity: Record<string, Sensitivity> = Object.create(null);
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith(MEMBER)) {
      if (value !== "read" && value !== "write") throw broken(`${field} is neither read nor write`);
      members[field.slice(MEMBER.length)] = value;
    } else if (field.startsWith(SENSITIVITY)) {
      if (value !== "SENSITIVE" && value !== "CONFIDENTIAL") throw broken(`${field} is neither SENSITIVE nor CONFIDENTIAL`);
      sensitivity[field.slice(SENSITIVITY.length)] = value;
    }
  }
  return { owner: hash.owner, members, locked: hash.locked === "true", sensitivity };
}

/** The path of a folder inside its drive as metadata keys it: no leading, trailing or doubled '/'. */
export function folderKey(components: string[]): string {
  return components.filter((c) => c !== "").join("/");
}

export class RedisDriveDirectory {
  constructor(private readonly commands: CommandConnection) {}

  async get(driveId: string): Promise<DriveMetadata | null> {
    const redis = await this.commands();
    return decodeDrive(driveId, await redis.hgetall(keys.drive(driveId)));
  }

  /** Gives the drive its owner; false (and nothing changed) when it has metadata already. */
  async create(driveId: string, owner: string): Promise<boolean> {
    const redis = await this.commands();
    const created = await redis.hsetnx(keys.drive(driveId), "owner", owner);
    if (created === 1) {
      await redis.hset(keys.drive(driveId), { locked: "false", updatedAt: new Date().toISOString() });
      await this.changed();
    }
    return created === 1;
  }

  /** Replaces the drive's metadata whole (the import of an old `.drive.json`). */
  async put(driveId: string, metadata: DriveMetadata): Promise<void> {
    const fields: Record<string, string> = { owner: metadata.owner, locked: String(metadata.locked), updatedAt: new Date().toISOString() };
    for (const [user, role] of Object.entries(metadata.members)) fields[MEMBER + user] = role;
    for (const [path, level] of Object.entries(metadata.sensitivity)) fields[SENSITIVITY + path] = level;
    const redis = await this.commands();
    await redis.multi().del(keys.drive(driveId)).hset(keys.drive(driveId), fields).exec();
    await this.changed();
  }

  /** Sets (or with null removes) a member's role. The drive must have metadata. */
  share(driveId: string, user: string, role: MemberRole | null): Promise<void> {
    return this.change(driveId, MEMBER + user, role);
  }

  setLocked(driveId: string, locked: boolean): Promise<void> {
    return this.change(driveId, "locked", String(locked));
  }

  /** Marks the folder `path` (inside the drive) restricted, or with null clears its mark. */
  mark(driveId: string, path: string, level: Sensitivity | null): Promise<void> {
    return this.change(driveId, SENSITIVITY + path, level);
  }

  /** Forgets the drive's metadata (its folder and files stay). True when there was some. */
  async remove(driveId: string): Promise<boolean> {
    const redis = await this.commands();
    const removed = (await redis.del(keys.drive(driveId))) === 1;
    if (removed) await this.changed();
    return removed;
  }

  /** The ids of every drive with metadata. */
  async list(client: RedisClient): Promise<string[]> {
    const ids: string[] = [];
    const prefix = keys.drive("");
    await scanEach(client, keys.drivePattern(), 500, async (batch) => {
      // Not the version counter (`iapps:drive:.version`): no drive id starts with '.'.
      ids.push(...batch.map((key) => key.slice(prefix.length)).filter((id) => !id.startsWith(".")));
    });
    return ids.sort();
  }

  private async change(driveId: string, field: string, value: string | null): Promise<void> {
    const redis = await this.commands();
    const key = keys.drive(driveId);
    // Only a drive with metadata changes: a share or lock on a mistyped id must not make one.
    if ((await redis.hexists(key, "owner")) === 0) throw new Error(`drive ${driveId} has no metadata: create it first (drive create ${driveId} --owner <username>)`);
    const multi = redis.multi();
    if (value === null) multi.hdel(key, field);
    else multi.hset(key, field, value);
    await multi.hset(key, "updatedAt", new Date().toISOString()).exec();
    await this.changed();
  }

  /** After a change: what workers cached of drives is out of date (its own key, so also on a Redis Cluster). */
  private async changed(): Promise<void> {
    await (await this.commands()).incr(keys.drivesVersion());
  }
}

/**
 * Drive metadata as one worker's resync reads it: each drive once, kept across passes for as
 * long as `iapps:drive:.version` stays the same (a home drive without metadata is a read too, so
 * without this a pass would read one per owner). `refresh` once per pass.
 */
export class DriveMetadataCache implements DriveDirectory {
  private version: string | null | undefined = undefined;
  private readonly known = new Map<string, Promise<DriveMetadata | null>>();

  constructor(
    private readonly commands: CommandConnection,
    private readonly drives: Pick<RedisDriveDirectory, "get">,
  ) {}

  /** Reads the version; forgets everything when it changed (or the first time). */
  async refresh(): Promise<void> {
    const version = await (await this.commands()).get(keys.drivesVersion());
    if (version !== this.version) this.known.clear();
    this.version = version;
  }

  get(driveId: string): Promise<DriveMetadata | null> {
    let metadata = this.known.get(driveId);
    if (metadata === undefined) {
      metadata = this.drives.get(driveId);
      this.known.set(driveId, metadata);
      // Invalid metadata stays what it is until the version changes; Redis failing does not.
      metadata.catch((error) => {
        if (!(error instanceof InvalidDriveMetadata)) this.known.delete(driveId);
      });
    }
    return metadata;
  }

  /** How many drives it holds (tests). */
  get size(): number {
    return this.known.size;
  }
}
