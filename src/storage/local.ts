// The storage model on this machine's file system: drive `<driveId>` is the folder
// `<root>/<driveId>`; who may use it comes from its `.drive.json`, or, for a home drive
// `home-<username>` without one, from the username in its id (see storage.ts).
//
// Every path a user sends is checked before it names a folder: no `.`/`..` segments, no NUL, a
// drive id that is a plain folder name, and a real path (symbolic links followed) that stays
// inside the drive. Bad input gives access "none" with a reason; only unexpected I/O errors throw.
// Imports src/storage/storage.ts and src/store/keys.ts (types) only.

import { randomBytes } from "node:crypto";
import { lstat, mkdir, open, readFile, realpath, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import type { Owner } from "../store/keys.ts";
import type { Access, FolderAccess, Storage } from "./storage.ts";

/** The metadata file of a drive, in the drive's root folder. Never a folder a user may use. */
export const DRIVE_METADATA = ".drive.json";

const HOME_PREFIX = "home-";

export interface DriveMetadata {
  owner: string;
  members: Record<string, "read" | "write">;
  locked: boolean;
}

/** Why a username cannot name a home drive, or null when it can. */
export function unsafeUsername(username: unknown): string | null {
  if (typeof username !== "string") return "the username is not a string";
  if (username === "") return "the username is empty";
  if (username === "." || username === "..") return `the username '${username}' is not a folder name`;
  if (username.includes("/")) return `the username '${username}' contains '/'`;
  if (username.includes("\0")) return "the username contains a NUL byte";
  return null;
}

/** Why `driveId` cannot name a drive folder, or null when it can. */
function unsafeDriveId(driveId: string): string | null {
  if (driveId === "") return "the path names no drive: expected /<driveId>/<folder>";
  if (driveId.includes("/")) return `the drive id '${driveId}' contains '/'`;
  if (driveId.startsWith(".")) return `the drive id '${driveId}' must not start with '.'`;
  return null;
}

/** The metadata in a `.drive.json` text, or why it is invalid. */
export function parseDriveMetadata(text: string): DriveMetadata | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return "it is not valid JSON";
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return "it is not a JSON object";
  const record = json as Record<string, unknown>;
  if (typeof record.owner !== "string" || record.owner === "") return "'owner' must be a non-empty string";
  const members: Record<string, "read" | "write"> = Object.create(null);
  if (record.members !== undefined) {
    if (typeof record.members !== "object" || record.members === null || Array.isArray(record.members)) {
      return "'members' must be an object of username to \"read\" or \"write\"";
    }
    for (const [name, role] of Object.entries(record.members)) {
      if (role !== "read" && role !== "write") return `'members.${name}' must be "read" or "write"`;
      members[name] = role;
    }
  }
  if (record.locked !== undefined && typeof record.locked !== "boolean") return "'locked' must be true or false";
  return { owner: record.owner, members, locked: record.locked === true };
}

/** An error code of a failed file system call, if any. */
function code(error: unknown): string {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
}

/** Error codes that say "this path names nothing usable", as opposed to an I/O failure. */
const NOT_THERE = new Set(["ENOENT", "ENOTDIR"]);

class UnsafeUsername extends Error {}

export class LocalStorage implements Storage {
  /** The absolute root folder of all drives. */
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  async homeDrive(owner: Owner): Promise<string> {
    const reason = unsafeUsername(owner.createdBy);
    if (reason !== null) throw new UnsafeUsername(`cannot name a home drive: ${reason}`);
    const folder = join(this.root, HOME_PREFIX + owner.createdBy);
    await mkdir(folder, { recursive: true });
    return await realpath(folder);
  }

  async serviceFolder(owner: Owner, name: string): Promise<string> {
    if (name === "" || name === "." || name === ".." || /[/\\\0]/.test(name)) throw new Error(`not a folder name: '${name}'`);
    const folder = join(await this.homeDrive(owner), name);
    let found;
    try {
      found = await lstat(folder);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      await mkdir(folder).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "EEXIST") throw error;
      });
      found = await lstat(folder);
    }
    // The user owns the home drive: a symlink here could point the service's writes (and the
    // pod's mount) anywhere on the host.
    if (found.isSymbolicLink() || !found.isDirectory()) {
      throw new Error(`${folder} is not a plain folder (a symlink or a file); remove it so that it can be recreated`);
    }
    return folder;
  }

  async access(owner: Owner, ucloudPath: string): Promise<FolderAccess> {
    const none = (why: string, driveId = ""): FolderAccess => ({
      ucloudPath: String(ucloudPath),
      driveId,
      internalPath: "",
      access: "none",
      why,
    });

    if (typeof ucloudPath !== "string") return none("the path is not a string");
    if (!ucloudPath.startsWith("/")) {
      return none(`the path '${ucloudPath}' must start with '/', as in /<driveId>/<folder>`);
    }
    if (ucloudPath.includes("\0")) return none("the path contains a NUL byte");

    const [driveId = "", ...rawRest] = ucloudPath.slice(1).split("/");
    const unsafeDrive = unsafeDriveId(driveId);
    if (unsafeDrive !== null) return none(unsafeDrive);
    // Empty segments (`a//b`, a trailing `/`) mean nothing, as in POSIX.
    const rest = rawRest.filter((segment) => segment !== "");
    if (rest.some((segment) => segment === "." || segment === "..")) {
      return none(`the path ${ucloudPath} must not contain '.' or '..' segments`, driveId);
    }
    if (rest[0] === DRIVE_METADATA) return none(`${ucloudPath} is the drive's metadata, not a folder`, driveId);

    // The drive, and who may use it.
    const driveFolder = join(this.root, driveId);
    const username = owner.createdBy;
    const ownHome = driveId === HOME_PREFIX + username;
    if (ownHome) {
      try {
        await this.homeDrive(owner);
      } catch (error) {
        if (error instanceof UnsafeUsername) return none(error.message, driveId);
        throw error;
      }
    }
    let driveReal: string;
    try {
      if (!(await stat(driveFolder)).isDirectory()) return none(`the drive ${driveId} is not a folder`, driveId);
      driveReal = await realpath(driveFolder);
    } catch (error) {
      if (NOT_THERE.has(code(error))) return none(`the drive ${driveId} does not exist`, driveId);
      if (code(error) === "ENAMETOOLONG") return none(`the drive id ${driveId} is too long`, driveId);
      if (code(error) === "ELOOP") return none(`the drive ${driveId} cannot be resolved`, driveId);
      throw error;
    }

    const metadata = await this.readMetadata(driveId, driveReal);
    if (typeof metadata === "string") return none(metadata, driveId);
    const role: Access =
      metadata.owner === username ? "write" : (Object.hasOwn(metadata.members, username) ? metadata.members[username]! : "none");
    if (role === "none") return none(`you have no access to drive ${driveId}`, driveId);
    if (metadata.locked) return none(`the drive ${driveId} is locked`, driveId);

    // The folder: an existing directory whose real path stays in the drive.
    const display = "/" + [driveId, ...rest].join("/");
    let folderReal: string;
    try {
      folderReal = await realpath(join(driveReal, ...rest));
    } catch (error) {
      if (NOT_THERE.has(code(error))) return none(`the folder ${display} does not exist`, driveId);
      if (code(error) === "ENAMETOOLONG") return none(`the path ${display} is too long`, driveId);
      if (code(error) === "ELOOP") return none(`the folder ${display} has a loop of symbolic links`, driveId);
      throw error;
    }
    if (folderReal !== driveReal && !folderReal.startsWith(driveReal.endsWith(sep) ? driveReal : driveReal + sep)) {
      return none(`the folder ${display} leads outside the drive ${driveId} (through a symbolic link)`, driveId);
    }
    if (folderReal === join(driveReal, DRIVE_METADATA)) {
      return none(`${display} is the drive's metadata, not a folder`, driveId);
    }
    try {
      if (!(await stat(folderReal)).isDirectory()) return none(`${display} is not a folder`, driveId);
    } catch (error) {
      // Removed between realpath and stat.
      if (NOT_THERE.has(code(error))) return none(`the folder ${display} does not exist`, driveId);
      throw error;
    }

    return { ucloudPath, driveId, internalPath: folderReal, access: role };
  }

  /** The drive's metadata: its `.drive.json`, or the home drive's implicit one; else why it has none. */
  private async readMetadata(driveId: string, driveReal: string): Promise<DriveMetadata | string> {
    const file = join(driveReal, DRIVE_METADATA);
    let text: string;
    try {
      // A symbolic link could make us read any file on the machine: only a regular file counts.
      const info = await lstat(file);
      if (!info.isFile()) return `the drive ${driveId} is not usable: its ${DRIVE_METADATA} is not a regular file`;
      text = await readFile(file, "utf8");
    } catch (error) {
      if (!NOT_THERE.has(code(error))) {
        if (code(error) === "EACCES" || code(error) === "EISDIR") {
          return `the drive ${driveId} is not usable: its ${DRIVE_METADATA} cannot be read`;
        }
        throw error;
      }
      if (driveId.startsWith(HOME_PREFIX) && driveId.length > HOME_PREFIX.length) {
        return { owner: driveId.slice(HOME_PREFIX.length), members: Object.create(null), locked: false };
      }
      return `the drive ${driveId} is not usable: it has no ${DRIVE_METADATA}`;
    }
    const metadata = parseDriveMetadata(text);
    if (typeof metadata === "string") {
      return `the drive ${driveId} is not usable: its ${DRIVE_METADATA} is invalid (${metadata})`;
    }
    return metadata;
  }

  async writeFileAtomic(internalPath: string, contents: string): Promise<void> {
    if (!isAbsolute(internalPath)) throw new Error(`writeFileAtomic needs an absolute path, not '${internalPath}'`);
    const folder = dirname(internalPath);
    await mkdir(folder, { recursive: true });
    const temp = join(folder, `.${basename(internalPath)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      const handle = await open(temp, "wx");
      try {
        await handle.writeFile(contents, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, internalPath);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
  }

  async recreateFolder(internalPath: string): Promise<void> {
    if (!isAbsolute(internalPath)) throw new Error(`recreateFolder needs an absolute path, not '${internalPath}'`);
    const target = resolve(internalPath);
    // A last guard against wiping far more than a folder: the file system root, the storage root,
    // or a folder that holds the storage root.
    const roots = [this.root, await realpath(this.root).catch(() => this.root)];
    if (target === dirname(target) || roots.some((root) => root === target || root.startsWith(target + sep))) {
      throw new Error(`recreateFolder refuses to delete ${target}: it is or holds the storage root`);
    }
    await rm(target, { recursive: true, force: true });
    await mkdir(target, { recursive: true });
  }
}
