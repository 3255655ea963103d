// Directories held open, and paths walked one component at a time below them: how the service
// reaches into folders its users control without ever following a path they can change.
//
// A user owns everything inside their drives and can swap any folder for a symbolic link at any
// moment (`renameat2(RENAME_EXCHANGE)` does it atomically). A check ("is not a symlink") followed
// by a write by name is two steps, and the swap lands between them. So nothing here acts on a
// path by name from the root: a walk opens each component with O_NOFOLLOW relative to the
// directory it has open, and every write, rename and delete then happens inside a directory
// handle, which keeps naming the same directory whatever is renamed around it.
//
// Node has no openat(2); on Linux `/proc/self/fd/<fd>/<name>` resolves `<name>` inside the open
// directory `<fd>` (the fd link itself is the directory, wherever it now is), which gives the
// same guarantee. Imports node:fs only.

import { randomBytes } from "node:crypto";
import { constants, promises as fs, type Stats } from "node:fs";

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Why a walk stopped: the component at `index` of the path is missing, a link, or not a folder. */
export class WalkError extends Error {
  constructor(
    readonly reason: "missing" | "symlink" | "not-a-folder" | "too-long",
    /** Index of the component that stopped the walk. */
    readonly index: number,
    readonly code: string,
  ) {
    super(`walk stopped at component ${index}: ${reason} (${code})`);
  }
}

/** An error code of a failed file system call, if any. */
export function errorCode(error: unknown): string {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
}

/** Whether `name` is one plain path component: no '/', no NUL, not '.' or '..', not empty. */
export function isPlainName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

function plainName(name: string): string {
  if (!isPlainName(name)) throw new Error(`not a plain file name: ${JSON.stringify(name)}`);
  return name;
}

/** A directory held open. Close it when done (or use `Directory.using`). */
export class Directory {
  private constructor(private readonly handle: fs.FileHandle) {}

  /**
   * Opens a directory the operator named (the storage root). Its own path is trusted (the
   * operator's); only what lies below it is walked.
   */
  static async open(path: string): Promise<Directory> {
    return new Directory(await fs.open(path, O_RDONLY | O_DIRECTORY));
  }

  /** Runs `use` with the directory open, and closes it afterwards. */
  static async using<T>(directory: Promise<Directory>, use: (directory: Directory) => Promise<T>): Promise<T> {
    const open = await directory;
    try {
      return await use(open);
    } finally {
      await open.close();
    }
  }

  /** The open descriptor: for handing the directory itself to another process (a sandbox's bind mount). */
  get fd(): number {
    return this.handle.fd;
  }

  /** `<name>` inside this directory, for a system call that does not follow a final link. */
  private at(name: string): string {
    return `/proc/self/fd/${this.handle.fd}/${plainName(name)}`;
  }

  /** The path of this directory for calls that take one (readdir). */
  private get self(): string {
    return `/proc/self/fd/${this.handle.fd}`;
  }

  /** Opens the folder `name` inside this one; refuses a symbolic link. Throws WalkError(index 0). */
  async child(name: string, options: { create?: boolean } = {}): Promise<Directory> {
    return this.walk([name], options);
  }

  /**
   * Opens the folder at `components` below this one, one component at a time, each with
   * O_NOFOLLOW: a symbolic link anywhere on the way stops the walk (WalkError "symlink"), as does
   * a missing component or a file. With `create`, missing folders are made on the way (mkdir
   * never follows a link either: a link in the way is EEXIST, then refused by the open).
   */
  async walk(components: string[], options: { create?: boolean } = {}): Promise<Directory> {
    let current: Directory = this;
    try {
      for (const [index, name] of components.entries()) {
        const next: Directory = await current.openChild(name, index, options.create === true);
        if (current !== this) await current.close();
        current = next;
      }
    } catch (error) {
      if (current !== this) await current.close();
      throw error;
    }
    // An empty walk is this directory again, as a handle of its own to close.
    return current === this ? new Directory(await fs.open(this.self, O_RDONLY | O_DIRECTORY)) : current;
  }

  /**
   * Whether `components` below this one name a folder, reached as `walk` reaches it (every
   * component before the last opened with O_NOFOLLOW), but the last one only looked at (lstat,
   * which does not follow a link there either) rather than opened: for a check that keeps no
   * handle, two calls fewer. Throws the WalkError `walk` would; an empty path is this folder.
   * With `create`, a missing last folder is made (mkdir never follows a link), then looked at.
   */
  async isFolder(components: string[], options: { create?: boolean } = {}): Promise<void> {
    if (components.length === 0) return;
    const last = components.length - 1;
    const parent = last === 0 ? this : await this.walk(components.slice(0, last));
    try {
      const path = parent.at(components[last]!);
      let stats: Stats;
      try {
        stats = await fs.lstat(path);
      } catch (error) {
        const code = errorCode(error);
        if (code === "ENOENT" && options.create) {
          await parent.makeFolder(components[last]!);
          stats = await fs.lstat(path).catch((again) => {
            throw errorCode(again) === "ENOENT" ? new WalkError("missing", last, "ENOENT") : again;
          });
        } else if (code === "ENOENT") {
          throw new WalkError("missing", last, code);
        } else if (code === "ENAMETOOLONG") {
          throw new WalkError("too-long", last, code);
        } else {
          throw error;
        }
      }
      if (stats.isSymbolicLink()) throw new WalkError("symlink", last, "ELOOP");
      if (!stats.isDirectory()) throw new WalkError("not-a-folder", last, "ENOTDIR");
    } finally {
      if (parent !== this) await parent.close();
    }
  }

  private async openChild(name: string, index: number, create: boolean): Promise<Directory> {
    const path = this.at(name);
    if (create) {
      await fs.mkdir(path).catch((error) => {
        if (errorCode(error) !== "EEXIST") throw error;
      });
    }
    try {
      return new Directory(await fs.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    } catch (error) {
      const code = errorCode(error);
      if (code === "ENOENT") throw new WalkError("missing", index, code);
      if (code === "ENAMETOOLONG") throw new WalkError("too-long", index, code);
      if (code === "ELOOP" || code === "ENOTDIR") {
        // Linux answers either for a link opened with O_NOFOLLOW | O_DIRECTORY; tell them apart.
        const link = await fs.lstat(path).then((s) => s.isSymbolicLink()).catch(() => false);
        throw new WalkError(link ? "symlink" : "not-a-folder", index, code);
      }
      throw error;
    }
  }

  /**
   * Writes `name` in this directory atomically: a new temporary file (O_EXCL | O_NOFOLLOW, so
   * never through a link someone planted), synced, then renamed over `name`. A rename replaces a
   * link named `name` rather than following it.
   */
  async writeFileAtomic(name: string, contents: string): Promise<void> {
    const target = this.at(name);
    const temp = this.at(`.${name}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      const file = await fs.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      try {
        await file.writeFile(contents, "utf8");
        await file.sync();
      } finally {
        await file.close();
      }
      await fs.rename(temp, target);
    } catch (error) {
      await fs.unlink(temp).catch(() => {});
      throw error;
    }
  }

  /** The text of the regular file `name` here; a link there is refused (ELOOP), never followed. */
  async readFile(name: string): Promise<string> {
    // O_NONBLOCK: a FIFO planted under that name must not hang the reader.
    const file = await fs.open(this.at(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    try {
      if (!(await file.stat()).isFile()) throw Object.assign(new Error(`${name} is not a regular file`), { code: "EISDIR" });
      return await file.readFile("utf8");
    } finally {
      await file.close();
    }
  }

  /** The names in this directory. */
  async list(): Promise<string[]> {
    return fs.readdir(this.self);
  }

  /**
   * Removes `name` from this directory and, when it is a folder, everything in it: each folder
   * is opened (O_NOFOLLOW) and emptied through its own handle, so the removal never leaves the
   * tree it started in, whatever is swapped meanwhile. A link is removed, never followed.
   * Nothing there: nothing to do.
   */
  async remove(name: string): Promise<void> {
    const path = this.at(name);
    for (let attempt = 0; ; attempt++) {
      let folder: Directory;
      try {
        folder = await this.openChild(name, 0, false);
      } catch (error) {
        if (!(error instanceof WalkError)) throw error;
        if (error.reason === "missing") return;
        // A file or a link: unlink removes the entry itself.
        try {
          await fs.unlink(path);
          return;
        } catch (unlinkError) {
          const code = errorCode(unlinkError);
          if (code === "ENOENT") return;
          // Swapped for a folder between the open and the unlink: look again.
          if ((code === "EISDIR" || code === "EPERM") && attempt < 10) continue;
          throw unlinkError;
        }
      }
      try {
        for (const entry of await folder.list()) await folder.remove(entry);
      } finally {
        await folder.close();
      }
      try {
        await fs.rmdir(path);
        return;
      } catch (error) {
        const code = errorCode(error);
        if (code === "ENOENT") return;
        // Something was put in meanwhile, or the entry was swapped: empty it again.
        if ((code === "ENOTEMPTY" || code === "EEXIST" || code === "ENOTDIR") && attempt < 10) continue;
        throw error;
      }
    }
  }

  /** Makes the folder `name` here (nothing when a folder or anything else is there already). */
  async makeFolder(name: string): Promise<void> {
    await fs.mkdir(this.at(name)).catch((error) => {
      if (errorCode(error) !== "EEXIST") throw error;
    });
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Directories held open for the calls in flight that use them, by a key the caller chooses: the
 * first call opens, the others share its handle, and it is closed once none uses it, on the next
 * turn of the timers (so calls made one after another in the same turn, as a check reads a
 * folder and then the state folder of one home, share it too). A failed open is not kept.
 */
export class SharedDirectories {
  private readonly held = new Map<string, { directory: Promise<Directory>; users: number; closing: ReturnType<typeof setTimeout> | null }>();

  async using<T>(key: string, open: () => Promise<Directory>, use: (directory: Directory) => Promise<T>): Promise<T> {
    let entry = this.held.get(key);
    if (entry === undefined) {
      const opened = { directory: open(), users: 0, closing: null };
      entry = opened;
      this.held.set(key, opened);
      opened.directory.catch(() => {
        if (this.held.get(key) === opened) this.held.delete(key);
      });
    }
    if (entry.closing !== null) clearTimeout(entry.closing);
    entry.closing = null;
    entry.users++;
    const shared = entry;
    try {
      return await use(await shared.directory);
    } finally {
      if (--shared.users === 0) {
        shared.closing = setTimeout(() => {
          if (this.held.get(key) === shared) this.held.delete(key);
          shared.directory.then((directory) => directory.close()).catch(() => {});
        }, 0);
      }
    }
  }
}
