// Where users' files live, and who may use them: the storage model of the integrated apps,
// behind one interface so that a UCloud-backed resolver can replace the local one.
//
// A drive is a folder `<root>/<driveId>`. A user's home drive has id `home-<username>` and is
// created on first need; any other drive carries `.drive.json`:
// `{"owner": "<username>", "members": {"<username>": "read" | "write"}, "locked": false}`.
// A UCloud path is `/<driveId>/<rest>`. The owner and `write` members may write, `read` members
// may read, nobody may use a locked drive.
// Imports src/store/keys.ts (for the Owner type) only.

import type { Owner } from "../store/keys.ts";

export type Access = "write" | "read" | "none";

export interface FolderAccess {
  ucloudPath: string;
  /** The drive the path is on, or "" when the path names none. */
  driveId: string;
  /** Where the folder is on this machine (meaningful when access is not "none"). */
  internalPath: string;
  access: Access;
  /** Why access is "none", in words a user can act on. */
  why?: string;
}

export interface Storage {
  /**
   * What `owner` may do with the folder at `ucloudPath`: the drive must exist and not be locked,
   * the owner must be allowed, and the path must be an existing directory inside the drive.
   * Never throws for a bad path: it answers access "none" with the reason.
   */
  access(owner: Owner, ucloudPath: string): Promise<FolderAccess>;
  /** The internal path of the owner's home drive `home-<username>`, created on first need. */
  homeDrive(owner: Owner): Promise<string>;
  /**
   * A folder of the service's own in the owner's home drive (Syncthing's state), created when
   * missing. Refused (throws) when it is a symlink or not a directory: the user owns the drive,
   * and a symlink there could point the service's writes, and a pod's mount, anywhere.
   */
  serviceFolder(owner: Owner, name: string): Promise<string>;
  /** Writes a file atomically: a temporary file in the same folder, then a rename. */
  writeFileAtomic(internalPath: string, contents: string): Promise<void>;
  /** Deletes a folder and everything in it, and creates it again, empty. */
  recreateFolder(internalPath: string): Promise<void>;
}
