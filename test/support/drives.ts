// Drives for tests: a folder `<root>/<driveId>` (with sub-folders) and its metadata in Redis,
// where the service reads it (spec §10); never a file inside the drive.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { RedisDriveDirectory } from "../../src/store/drives.ts";
import type { DriveMetadata } from "../../src/domain/storage.ts";

export interface DriveSpec {
  owner: string;
  members?: DriveMetadata["members"];
  locked?: boolean;
  sensitivity?: DriveMetadata["sensitivity"];
}

/** Makes `<root>/<driveId>` and its folders, and gives it `metadata` (null: none, as a bare folder). */
export async function makeDrive(drives: RedisDriveDirectory, root: string, driveId: string, metadata: DriveSpec | null, folders: string[] = []): Promise<string> {
  const drive = join(root, driveId);
  mkdirSync(drive, { recursive: true });
  for (const folder of folders) mkdirSync(join(drive, folder), { recursive: true });
  if (metadata !== null) {
    await drives.put(driveId, { members: {}, locked: false, sensitivity: {}, ...metadata });
  }
  return drive;
}
