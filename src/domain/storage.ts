// Where users' files live, and who may use them: the storage model of the integrated apps
// (spec §10), behind one interface so that a UCloud-backed resolver can replace the local one.
//
// A drive is a folder `<root>/<driveId>`. Who may use it is its metadata, kept outside every
// drive (in Redis, see src/store/drives.ts, managed with `bun src/main.ts drive ...`): a file
// inside a drive never grants anything. A user's home drive `home-<username>` belongs to its user
// without metadata, and is created on first need. A UCloud path is `/<driveId>/<rest>`. The owner
// and `write` members may write, `read` members may read, nobody may use a locked drive.
// Imports src/store/keys.ts and src/store/drives.ts (types) only.

import type { Owner } from "./owner.ts";

export type Access = "write" | "read" | "none";

export type Sensitivity = "SENSITIVE" | "CONFIDENTIAL";
export type MemberRole = "read" | "write";

export interface DriveMetadata {
  owner: string;
  members: Record<string, MemberRole>;
  locked: boolean;
  /** Restricted folders by their path inside the drive (`""` is the drive itself, `data/raw` a folder in it). */
  sensitivity: Record<string, Sensitivity>;
}

/** Where drive metadata is kept: outside every drive, where no pod can write it. */
export interface DriveDirectory {
  /** The drive's metadata, or null when it has none. */
  get(driveId: string): Promise<DriveMetadata | null>;
}

export interface FolderAccess {
  ucloudPath: string;
  /** The drive the path is on, or "" when the path names none. */
  driveId: string;
  /** Where the folder is on this machine (meaningful when access is not "none"). */
  internalPath: string;
  /**
   * Where the folder is below the storage root, `<driveId>/<rest>`, as found by a walk that
   * followed no symbolic link: what a pod mounts (a `subPath` of the `ucloud-filesystem` volume).
   * "" when access is "none".
   */
  subPath: string;
  access: Access;
  /** Why access is "none", in words a user can act on. */
  why?: string;
  /** Set when access is "none" because the path names nothing that exists (rather than something refused). */
  missing?: true;
  /** Set when the folder, or a folder above it in its drive, is marked restricted. */
  sensitivity?: Sensitivity;
}

/** A folder of the service's own in an owner's home drive (Syncthing's state). */
export interface ServiceFolder {
  /** `home-<username>/<name>`: below the storage root, for a pod's `subPath` mount. */
  subPath: string;
  internalPath: string;
}

export interface Storage {
  /**
   * What `owner` may do with the folder at `ucloudPath`: the drive must exist and not be locked,
   * the owner must be allowed, and the path must be an existing directory inside the drive,
   * reached without following any symbolic link. Never throws for a bad path: it answers access
   * "none" with the reason.
   */
  access(owner: Owner, ucloudPath: string): Promise<FolderAccess>;
  /**
   * `access` for each of several folders, in their order, reading each drive's metadata once: a
   * reconcile's folders are mostly on one drive, the owner's home drive (issue 13: one Redis read
   * per folder was most of what an unchanged record cost).
   */
  accessAll(owner: Owner, ucloudPaths: readonly string[]): Promise<FolderAccess[]>;
  /** How restricted the folder at `ucloudPath` is (its own mark or one above it), from its drive's metadata alone. */
  sensitivity(ucloudPath: string): Promise<Sensitivity | null>;
  /**
   * The folder `<home drive>/<name>` of the service's own, created when missing. Refused (throws)
   * when it is a symlink or not a directory: the user owns the drive, and a symlink there could
   * point the service's writes, and a pod's mount, anywhere.
   */
  serviceFolder(owner: Owner, name: string): Promise<ServiceFolder>;
  /**
   * Writes each file into the service folder atomically (a temporary file, then a rename), through
   * a handle on the folder reached without following links: a folder swapped for a link meanwhile
   * is refused, never written through.
   */
  writeServiceFiles(owner: Owner, name: string, files: Record<string, string>): Promise<void>;
  /** Deletes the service folder and everything in it, never leaving it, and creates it again, empty. */
  wipeServiceFolder(owner: Owner, name: string): Promise<void>;
}
