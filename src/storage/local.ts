// The storage model on this machine's file system: drive `<driveId>` is the folder
// `<root>/<driveId>`; who may use it comes from its metadata (a DriveDirectory, kept outside every
// drive), or, for a home drive `home-<username>` without any, from the username in its id.
//
// Every path a user sends is checked before it names a folder: no `.`/`..` segments, no NUL, a
// drive id that is a plain folder name. Then it is walked one component at a time from the
// storage root, refusing a symbolic link at every step (directory.ts): a user can make any folder
// in their drive a link, and a link would lead the service, or a pod's mount, anywhere. Bad input
// gives access "none" with a reason; only unexpected I/O errors throw. The root and the drives
// are held open for the calls in flight (a resync checks many records at once), not per call.
// Imports src/base/directory.ts, src/domain (types) and src/store/drives.ts (its error) only.

import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { InvalidDriveMetadata } from "../store/drives.ts";
import type { Owner } from "../domain/owner.ts";
import { Directory, isPlainName, SharedDirectories, WalkError } from "../base/directory.ts";
import type { Access, DriveDirectory, DriveMetadata, FolderAccess, Sensitivity, ServiceFolder, Storage } from "../domain/storage.ts";

export const HOME_PREFIX = "home-";
/** The longest folder name Linux file systems take, in bytes. */
const NAME_MAX = 255;

/** Why a username cannot name a home drive, or null when it can. */
export function unsafeUsername(username: unknown): string | null {
  if (typeof username !== "string") return "the username is not a string";
  if (username === "") return "the username is empty";
  if (!isPlainName(username)) return `the username '${username}' is not a folder name`;
  if (Buffer.byteLength(HOME_PREFIX + username) > NAME_MAX) return `the home drive name ${HOME_PREFIX}<username> would be longer than ${NAME_MAX} bytes`;
  return null;
}

/** Why `driveId` cannot name a drive folder, or null when it can. */
export function unsafeDriveId(driveId: string): string | null {
  if (driveId === "") return "the path names no drive: expected /<driveId>/<folder>";
  if (driveId.includes("/")) return `the drive id '${driveId}' contains '/'`;
  if (driveId.startsWith(".")) return `the drive id '${driveId}' must not start with '.'`;
  if (driveId.includes("\0")) return "the drive id contains a NUL byte";
  if (Buffer.byteLength(driveId) > NAME_MAX) return `the drive id ${driveId} is too long`;
  return null;
}

/** The home drive's implicit metadata: its user owns it. Null for any other drive. */
function homeMetadata(driveId: string): DriveMetadata | null {
  if (!driveId.startsWith(HOME_PREFIX) || driveId.length === HOME_PREFIX.length) return null;
  return { owner: driveId.slice(HOME_PREFIX.length), members: Object.create(null), locked: false, sensitivity: Object.create(null) };
}

/**
 * The restriction on the folder `rest` (components below the drive) in a drive with `metadata`:
 * its own mark or the nearest one above it; CONFIDENTIAL wins over SENSITIVE.
 */
export function restrictionOf(metadata: DriveMetadata, rest: string[]): Sensitivity | null {
  let found: Sensitivity | null = null;
  for (let depth = 0; depth <= rest.length; depth++) {
    const folder = rest.slice(0, depth).join("/");
    const mark = Object.hasOwn(metadata.sensitivity, folder) ? metadata.sensitivity[folder] : undefined;
    if (mark === "CONFIDENTIAL") return mark;
    if (mark === "SENSITIVE") found = mark;
  }
  return found;
}

/** A UCloud path taken apart: its drive and the folders below it, or why it names no folder. */
export function parseUcloudPath(ucloudPath: unknown): { driveId: string; rest: string[] } | { why: string; driveId: string } {
  if (typeof ucloudPath !== "string") return { why: "the path is not a string", driveId: "" };
  if (!ucloudPath.startsWith("/")) return { why: `the path '${ucloudPath}' must start with '/', as in /<driveId>/<folder>`, driveId: "" };
  if (ucloudPath.includes("\0")) return { why: "the path contains a NUL byte", driveId: "" };
  const [driveId = "", ...rawRest] = ucloudPath.slice(1).split("/");
  const unsafeDrive = unsafeDriveId(driveId);
  if (unsafeDrive !== null) return { why: unsafeDrive, driveId: "" };
  // Empty segments (`a//b`, a trailing `/`) mean nothing, as in POSIX.
  const rest = rawRest.filter((segment) => segment !== "");
  if (rest.some((segment) => segment === "." || segment === "..")) {
    return { why: `the path ${ucloudPath} must not contain '.' or '..' segments`, driveId };
  }
  return { driveId, rest };
}

class UnsafeUsername extends Error {}

/**
 * The folder `name` in `parent`, made when missing: opened first, since it nearly always exists
 * (a resync looks at every owner's home and state folder: a mkdir answered EEXIST each time
 * was a tenth of its time). Refuses a link or a file, as `child` does.
 */
async function openOrCreate(parent: Directory, name: string): Promise<Directory> {
  try {
    return await parent.child(name);
  } catch (error) {
    if (!(error instanceof WalkError) || error.reason !== "missing") throw error;
    return parent.child(name, { create: true });
  }
}

export class LocalStorage implements Storage {
  /** The absolute root folder of all drives. */
  readonly root: string;

  constructor(
    root: string,
    private readonly drives: DriveDirectory,
  ) {
    this.root = resolve(root);
  }

  /** Made once per process when missing: the operator's folder, so its own path may be followed. */
  private rootMade: Promise<unknown> | null = null;
  /**
   * The root and the drives, open, shared by the calls in flight (a resync checks 64 records at
   * once, each its folder and then its state folder in the same home): an open and a close for
   * all of them rather than for each call (a pass over 100,000 records made 400,000 of each).
   */
  private readonly shared = new SharedDirectories();

  /** Runs `use` with the storage root open (shared by the calls in flight). */
  private async withRoot<T>(use: (root: Directory) => Promise<T>): Promise<T> {
    this.rootMade ??= mkdir(this.root, { recursive: true }).catch((error) => {
      this.rootMade = null;
      throw error;
    });
    await this.rootMade;
    return this.shared.using("", () => Directory.open(this.root), use);
  }

  /** Runs `use` with the owner's home drive open (shared by the calls in flight), created on first need. */
  private withHome<T>(root: Directory, owner: Owner, use: (home: Directory) => Promise<T>): Promise<T> {
    return this.shared.using(`home:${owner.createdBy}`, () => this.openHome(root, owner), use);
  }

  /** The owner's home drive, open, created on first need; refused when it is a link or a file. */
  private async openHome(root: Directory, owner: Owner): Promise<Directory> {
    const reason = unsafeUsername(owner.createdBy);
    if (reason !== null) throw new UnsafeUsername(`cannot name a home drive: ${reason}`);
    return openOrCreate(root, HOME_PREFIX + owner.createdBy);
  }

  async serviceFolder(owner: Owner, name: string): Promise<ServiceFolder> {
    // Made when missing and looked at, not opened: nothing is done inside it here.
    await this.inHome(owner, name, (home) => home.isFolder([name], { create: true }));
    const subPath = `${HOME_PREFIX}${owner.createdBy}/${name}`;
    return { subPath, internalPath: `${this.root}/${subPath}` };
  }

  /** `<home>/<name>`, open, created when missing; a link or a file there is refused, never followed. */
  private openServiceFolder(owner: Owner, name: string): Promise<Directory> {
    return this.inHome(owner, name, (home) => openOrCreate(home, name));
  }

  /** `reach` the folder `name` from the owner's home, open: a link or a file there is refused with the error users see. */
  private async inHome<T>(owner: Owner, name: string, reach: (home: Directory) => Promise<T>): Promise<T> {
    if (!isPlainName(name) || name.includes("\\")) throw new Error(`not a folder name: '${name}'`);
    return this.withRoot((root) =>
      this.withHome(root, owner, async (home) => {
        try {
          return await reach(home);
        } catch (error) {
          if (error instanceof WalkError && (error.reason === "symlink" || error.reason === "not-a-folder")) {
            throw new Error(`${HOME_PREFIX}${owner.createdBy}/${name} is not a plain folder (a symlink or a file); remove it so that it can be recreated`);
          }
          throw error;
        }
      }),
    );
  }

  async writeServiceFiles(owner: Owner, name: string, files: Record<string, string>): Promise<void> {
    await Directory.using(this.openServiceFolder(owner, name), async (folder) => {
      for (const [file, contents] of Object.entries(files)) {
        // A pod made anew for the same configuration (after a restart of role all, every pod)
        // finds its files as they should be: read (never through a link), not rewritten.
        if ((await folder.readFile(file).catch(() => null)) === contents) continue;
        await folder.writeFileAtomic(file, contents);
      }
    });
  }

  async wipeServiceFolder(owner: Owner, name: string): Promise<void> {
    if (!isPlainName(name) || name.includes("\\")) throw new Error(`not a folder name: '${name}'`);
    await this.withRoot((root) =>
      this.withHome(root, owner, async (home) => {
        await home.remove(name);
        await home.makeFolder(name);
      }),
    );
  }

  async sensitivity(ucloudPath: string): Promise<Sensitivity | null> {
    const parsed = parseUcloudPath(ucloudPath);
    if ("why" in parsed) return null;
    const metadata = await this.metadata(parsed.driveId);
    // Invalid metadata makes the drive unusable (access "none"), so nothing of it runs either way.
    return typeof metadata === "string" || metadata === null ? null : restrictionOf(metadata, parsed.rest);
  }

  /** The drive's metadata, the home drive's implicit one, null for none, or why it is invalid. */
  private async metadata(driveId: string): Promise<DriveMetadata | null | string> {
    try {
      return (await this.drives.get(driveId)) ?? homeMetadata(driveId);
    } catch (error) {
      if (error instanceof InvalidDriveMetadata) return error.message;
      throw error;
    }
  }

  access(owner: Owner, ucloudPath: string): Promise<FolderAccess> {
    return this.accessWith(owner, ucloudPath, (driveId) => this.metadata(driveId));
  }

  async accessAll(owner: Owner, ucloudPaths: readonly string[]): Promise<FolderAccess[]> {
    const read = new Map<string, Promise<DriveMetadata | null | string>>();
    const metadataOf = (driveId: string) => {
      const known = read.get(driveId);
      if (known !== undefined) return known;
      const metadata = this.metadata(driveId);
      read.set(driveId, metadata);
      return metadata;
    };
    const found: FolderAccess[] = [];
    // One folder at a time, as `access` would be called: a thousand folders must not hold a
    // thousand directory handles at once.
    for (const ucloudPath of ucloudPaths) found.push(await this.accessWith(owner, ucloudPath, metadataOf));
    return found;
  }

  private async accessWith(owner: Owner, ucloudPath: string, metadataOf: (driveId: string) => Promise<DriveMetadata | null | string>): Promise<FolderAccess> {
    const none = (why: string, driveId = "", missing = false): FolderAccess => ({
      ucloudPath: String(ucloudPath),
      driveId,
      internalPath: "",
      subPath: "",
      access: "none",
      why,
      ...(missing ? { missing: true as const } : {}),
    });

    const parsed = parseUcloudPath(ucloudPath);
    if ("why" in parsed) return none(parsed.why, parsed.driveId);
    const { driveId, rest } = parsed;
    const display = `/${[driveId, ...rest].join("/")}`;
    const username = owner.createdBy;

    // Who may use the drive, and the folder in it: an error opening the drive is answered below.
    const folderIn = async (drive: Directory): Promise<FolderAccess> => {
      // Who may use it: its metadata (outside the drive), never a file inside it.
      const metadata = await metadataOf(driveId);
      if (typeof metadata === "string") return none(`the drive ${driveId} is not usable: ${metadata}`, driveId);
      if (metadata === null) return none(`the drive ${driveId} is not usable: it has no metadata (an operator gives it some with 'drive create')`, driveId);
      const role: Access = metadata.owner === username ? "write" : Object.hasOwn(metadata.members, username) ? metadata.members[username]! : "none";
      if (role === "none") return none(`you have no access to drive ${driveId}`, driveId);
      if (metadata.locked) return none(`the drive ${driveId} is locked`, driveId);

      // The folder: an existing directory, reached from the drive (open, and no link) without
      // following a link (each folder on the way opened, the last one looked at); the drive
      // itself needs no second look.
      if (rest.length > 0) {
        try {
          await drive.isFolder(rest);
        } catch (error) {
          if (!(error instanceof WalkError)) throw error;
          // Components counted from the drive's: the drive is component 0.
          const index = error.index + 1;
          const at = `/${[driveId, ...rest].slice(0, index + 1).join("/")}`;
          if (error.reason === "missing") return none(`the folder ${display} does not exist`, driveId, true);
          if (error.reason === "too-long") return none(`the path ${display} is too long`, driveId);
          if (error.reason === "symlink") {
            return none(`${at} is a symbolic link: links are not followed, since they can lead outside the drive ${driveId}`, driveId);
          }
          // A file where a folder should be: the last component is not a folder; through it, nothing exists.
          return index === rest.length ? none(`${display} is not a folder`, driveId, true) : none(`the folder ${display} does not exist`, driveId, true);
        }
      }

      const subPath = [driveId, ...rest].join("/");
      const sensitivity = restrictionOf(metadata, rest);
      return {
        ucloudPath,
        driveId,
        internalPath: `${this.root}/${subPath}`,
        subPath,
        access: role,
        ...(sensitivity === null ? {} : { sensitivity }),
      };
    };

    return this.withRoot(async (root) => {
      // The drive: the owner's own home drive appears on first need. Open, shared by the calls
      // in flight; an error opening it is the drive's, one inside is the folder's (`folderIn`).
      const home = driveId === HOME_PREFIX + username;
      try {
        return await (home ? this.withHome(root, owner, folderIn) : this.shared.using(`drive:${driveId}`, () => root.child(driveId), folderIn));
      } catch (error) {
        if (error instanceof UnsafeUsername) return none(error.message, driveId);
        if (!(error instanceof WalkError)) throw error;
        if (error.reason === "missing") return none(`the drive ${driveId} does not exist`, driveId, true);
        if (error.reason === "too-long") return none(`the drive id ${driveId} is too long`, driveId);
        if (error.reason === "symlink") return none(`the drive ${driveId} is a symbolic link, which is not followed`, driveId);
        return none(`the drive ${driveId} is not a folder`, driveId);
      }
    });
  }
}
