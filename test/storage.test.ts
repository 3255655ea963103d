// The local storage model (src/storage/local.ts): drives are folders under a root, home drives
// appear on first need, `.drive.json` says who may use any other drive, and no path escapes its
// drive. Temporary directories only; no Redis.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStorage } from "../src/storage/local.ts";
import type { Owner } from "../src/store/keys.ts";

const alice: Owner = { createdBy: "alice", project: null };
const bob: Owner = { createdBy: "bob", project: null };
const carol: Owner = { createdBy: "carol", project: null };
const mallory: Owner = { createdBy: "mallory", project: null };

let root: string;
let storage: LocalStorage;

beforeEach(() => {
  root = realpathSync(mkdtempSync(join(tmpdir(), "iapps-storage-")));
  storage = new LocalStorage(root);
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

/** Makes drive `id` with `.drive.json` holding `metadata` (a string is written as is). */
function makeDrive(id: string, metadata: object | string | null, folders: string[] = []): string {
  const drive = join(root, id);
  mkdirSync(drive, { recursive: true });
  if (metadata !== null) {
    writeFileSync(join(drive, ".drive.json"), typeof metadata === "string" ? metadata : JSON.stringify(metadata));
  }
  for (const folder of folders) mkdirSync(join(drive, folder), { recursive: true });
  return drive;
}

const project = { owner: "alice", members: { bob: "write", carol: "read" }, locked: false };

describe("a home drive home-<username> is created on first need", () => {
  test("homeDrive creates <root>/home-<username> and returns its absolute path", async () => {
    expect(existsSync(join(root, "home-alice"))).toBe(false);
    const path = await storage.homeDrive(alice);
    expect(path).toBe(join(root, "home-alice"));
    expect(existsSync(path)).toBe(true);
    expect(await storage.homeDrive(alice)).toBe(path); // and again: nothing changes
  });

  test("access to the owner's own home drive creates it first", async () => {
    const result = await storage.access(alice, "/home-alice");
    expect(result).toEqual({ ucloudPath: "/home-alice", driveId: "home-alice", internalPath: join(root, "home-alice"), access: "write" });
  });

  test("access to someone else's missing home drive does not create it", async () => {
    const result = await storage.access(alice, "/home-bob");
    expect(result.access).toBe("none");
    expect(result.why).toBe("the drive home-bob does not exist");
    expect(existsSync(join(root, "home-bob"))).toBe(false);
  });

  test("a relative root resolves against the working directory", () => {
    expect(new LocalStorage("var/storage").root).toBe(join(process.cwd(), "var/storage"));
  });

  test("usernames that make an unsafe folder name are refused", async () => {
    for (const createdBy of ["", ".", "..", "a/b", "a\0b"]) {
      await expect(storage.homeDrive({ createdBy, project: null })).rejects.toThrow(/cannot name a home drive/);
    }
    const result = await storage.access({ createdBy: ".", project: null }, "/home-.");
    expect(result.access).toBe("none");
    expect(readdirSync(root)).toEqual([]);
  });

  test("a home drive is someone else's to read only if its .drive.json says so", async () => {
    await storage.homeDrive(alice);
    expect((await storage.access(bob, "/home-alice")).why).toBe("you have no access to drive home-alice");
    makeDrive("home-alice", { owner: "alice", members: { bob: "read" }, locked: false });
    expect((await storage.access(bob, "/home-alice")).access).toBe("read");
  });
});

describe("the owner of a drive may write", () => {
  test("in the root folder and in sub-folders, with the internal path of the folder", async () => {
    const drive = makeDrive("proj-1", project, ["data/raw"]);
    expect(await storage.access(alice, "/proj-1")).toEqual({
      ucloudPath: "/proj-1",
      driveId: "proj-1",
      internalPath: drive,
      access: "write",
    });
    const sub = await storage.access(alice, "/proj-1/data/raw");
    expect(sub.access).toBe("write");
    expect(sub.internalPath).toBe(join(drive, "data/raw"));
    expect(sub.why).toBeUndefined();
  });

  test("a trailing or doubled '/' means nothing", async () => {
    const drive = makeDrive("proj-1", project, ["data/raw"]);
    expect((await storage.access(alice, "/proj-1/data//raw/")).internalPath).toBe(join(drive, "data/raw"));
  });
});

describe("a write member may write", () => {
  test("bob is a write member of proj-1", async () => {
    makeDrive("proj-1", project, ["data"]);
    expect((await storage.access(bob, "/proj-1/data")).access).toBe("write");
  });
});

describe("a read member may read", () => {
  test("carol is a read member of proj-1", async () => {
    makeDrive("proj-1", project, ["data"]);
    const result = await storage.access(carol, "/proj-1/data");
    expect(result.access).toBe("read");
    expect(result.internalPath).toBe(join(root, "proj-1/data"));
  });
});

describe("a stranger has no access", () => {
  test("mallory is neither owner nor member of proj-1", async () => {
    makeDrive("proj-1", project, ["data"]);
    const result = await storage.access(mallory, "/proj-1/data");
    expect(result).toEqual({
      ucloudPath: "/proj-1/data",
      driveId: "proj-1",
      internalPath: "",
      access: "none",
      why: "you have no access to drive proj-1",
    });
  });

  test("the project of the owner does not matter, only the username", async () => {
    makeDrive("proj-1", project, ["data"]);
    expect((await storage.access({ createdBy: "mallory", project: "proj-1" }, "/proj-1/data")).access).toBe("none");
    expect((await storage.access({ createdBy: "carol", project: "other" }, "/proj-1/data")).access).toBe("read");
  });
});

describe("nobody may use a locked drive, not even its owner", () => {
  test("owner, write member, read member and stranger all get none", async () => {
    makeDrive("proj-1", { ...project, locked: true }, ["data"]);
    for (const owner of [alice, bob, carol]) {
      const result = await storage.access(owner, "/proj-1/data");
      expect(result.access).toBe("none");
      expect(result.why).toBe("the drive proj-1 is locked");
    }
    expect((await storage.access(mallory, "/proj-1/data")).access).toBe("none");
  });

  test("a home drive is locked by a .drive.json", async () => {
    makeDrive("home-bob", { owner: "bob", members: {}, locked: true });
    const result = await storage.access(bob, "/home-bob");
    expect(result.access).toBe("none");
    expect(result.why).toBe("the drive home-bob is locked");
  });
});

describe("a missing drive gives none", () => {
  test("a drive folder that does not exist", async () => {
    const result = await storage.access(alice, "/proj-9/data");
    expect(result).toMatchObject({ driveId: "proj-9", access: "none", why: "the drive proj-9 does not exist" });
  });

  test("a drive folder that is not a home drive and has no .drive.json is not usable", async () => {
    makeDrive("proj-2", null, ["data"]);
    const result = await storage.access(alice, "/proj-2/data");
    expect(result.access).toBe("none");
    expect(result.why).toContain("has no .drive.json");
  });

  test("a drive that is a file is not a drive", async () => {
    writeFileSync(join(root, "proj-3"), "x");
    expect((await storage.access(alice, "/proj-3")).why).toBe("the drive proj-3 is not a folder");
  });
});

describe("a missing folder gives none", () => {
  test("the folder does not exist in an existing drive", async () => {
    await storage.homeDrive(alice);
    const result = await storage.access(alice, "/home-alice/x");
    expect(result.access).toBe("none");
    expect(result.why).toBe("the folder /home-alice/x does not exist");
    expect(result.internalPath).toBe("");
  });

  test("a path through a file does not exist", async () => {
    const home = await storage.homeDrive(alice);
    writeFileSync(join(home, "notes.txt"), "x");
    expect((await storage.access(alice, "/home-alice/notes.txt/x")).why).toBe("the folder /home-alice/notes.txt/x does not exist");
  });
});

describe("a file is not a folder: none", () => {
  test("a regular file in the drive", async () => {
    const home = await storage.homeDrive(alice);
    writeFileSync(join(home, "notes.txt"), "x");
    const result = await storage.access(alice, "/home-alice/notes.txt");
    expect(result.access).toBe("none");
    expect(result.why).toBe("/home-alice/notes.txt is not a folder");
  });

  test(".drive.json is never a folder", async () => {
    makeDrive("proj-1", project);
    expect((await storage.access(alice, "/proj-1/.drive.json")).access).toBe("none");
    // Not even through a symbolic link inside the drive.
    symlinkSync(join(root, "proj-1/.drive.json"), join(root, "proj-1/meta"));
    expect((await storage.access(alice, "/proj-1/meta")).access).toBe("none");
  });
});

describe("no path escapes its drive", () => {
  beforeEach(async () => {
    await storage.homeDrive(alice);
    await storage.homeDrive(bob);
    mkdirSync(join(root, "home-alice/x"));
  });

  test.each([
    ["/home-alice/../home-bob", "'.' or '..' segments"],
    ["/home-alice/x/../../home-bob", "'.' or '..' segments"],
    ["/home-alice/./x", "'.' or '..' segments"],
    ["/home-alice/x/..", "'.' or '..' segments"],
    ["/..", "must not start with '.'"],
    ["/../etc", "must not start with '.'"],
    ["/.", "must not start with '.'"],
    ["/.hidden/x", "must not start with '.'"],
    ["/", "names no drive"],
    ["//home-alice", "names no drive"],
    ["", "must start with '/'"],
    ["home-alice/x", "must start with '/'"],
    ["/home-alice/x\0/y", "NUL"],
  ])("%p is refused", async (path, why) => {
    const result = await storage.access(alice, path);
    expect(result.access).toBe("none");
    expect(result.internalPath).toBe("");
    expect(result.why).toContain(why);
  });

  test("a path that is not a string gives none and does not throw", async () => {
    const result = await storage.access(alice, 42 as unknown as string);
    expect(result.access).toBe("none");
  });

  test("a symbolic link out of the drive is refused", async () => {
    symlinkSync(join(root, "home-bob"), join(root, "home-alice/to-bob"));
    symlinkSync("../../home-bob", join(root, "home-alice/x/relative-to-bob"));
    symlinkSync("/", join(root, "home-alice/to-root"));
    for (const path of ["/home-alice/to-bob", "/home-alice/x/relative-to-bob", "/home-alice/to-root/etc"]) {
      const result = await storage.access(alice, path);
      expect(result.access).toBe("none");
      expect(result.why).toContain("leads outside the drive home-alice");
      expect(result.internalPath).toBe("");
    }
  });

  test("a symbolic link within the drive is fine, and answers its real path", async () => {
    mkdirSync(join(root, "home-alice/x/deep"));
    symlinkSync("x/deep", join(root, "home-alice/shortcut"));
    const result = await storage.access(alice, "/home-alice/shortcut");
    expect(result.access).toBe("write");
    expect(result.internalPath).toBe(join(root, "home-alice/x/deep"));
  });

  test("a loop of symbolic links gives none", async () => {
    symlinkSync("b", join(root, "home-alice/a"));
    symlinkSync("a", join(root, "home-alice/b"));
    const result = await storage.access(alice, "/home-alice/a");
    expect(result.access).toBe("none");
  });
});

describe("an invalid .drive.json makes the drive unusable", () => {
  test.each([
    ["not JSON", "{owner: alice", "not valid JSON"],
    ["an array", "[]", "not a JSON object"],
    ["no owner", JSON.stringify({ members: {}, locked: false }), "'owner'"],
    ["a bad role", JSON.stringify({ owner: "alice", members: { bob: "admin" }, locked: false }), "members.bob"],
    ["members not an object", JSON.stringify({ owner: "alice", members: ["bob"], locked: false }), "'members'"],
    ["locked not a boolean", JSON.stringify({ owner: "alice", members: {}, locked: "no" }), "'locked'"],
  ])("%s gives none, for the owner too", async (_name, text, why) => {
    makeDrive("proj-1", text, ["data"]);
    const result = await storage.access(alice, "/proj-1/data");
    expect(result.access).toBe("none");
    expect(result.why).toContain("is not usable");
    expect(result.why).toContain(why);
  });

  test("an invalid .drive.json in a home drive makes it unusable too (it does not fall back to the id)", async () => {
    makeDrive("home-alice", "not json");
    expect((await storage.access(alice, "/home-alice")).access).toBe("none");
  });

  test("a .drive.json that is a symbolic link is not read", async () => {
    const elsewhere = join(root, "elsewhere.json");
    writeFileSync(elsewhere, JSON.stringify(project));
    makeDrive("proj-1", null, ["data"]);
    symlinkSync(elsewhere, join(root, "proj-1/.drive.json"));
    const result = await storage.access(alice, "/proj-1/data");
    expect(result.access).toBe("none");
    expect(result.why).toContain("not a regular file");
  });

  test("members and locked may be left out", async () => {
    makeDrive("proj-1", { owner: "alice" }, ["data"]);
    expect((await storage.access(alice, "/proj-1/data")).access).toBe("write");
    expect((await storage.access(bob, "/proj-1/data")).access).toBe("none");
  });

  test("a member named like an Object property is no member", async () => {
    makeDrive("proj-1", project, ["data"]);
    for (const createdBy of ["constructor", "__proto__", "toString"]) {
      expect((await storage.access({ createdBy, project: null }, "/proj-1/data")).access).toBe("none");
    }
  });
});

describe("writeFileAtomic replaces the content and leaves no temporary files", () => {
  test("writes a new file, creating its folder", async () => {
    const file = join(root, "a/b/config.xml");
    await storage.writeFileAtomic(file, "one");
    expect(readFileSync(file, "utf8")).toBe("one");
    expect(readdirSync(join(root, "a/b"))).toEqual(["config.xml"]);
  });

  test("replaces an existing file", async () => {
    const file = join(root, "config.xml");
    writeFileSync(file, "old content that is longer");
    await storage.writeFileAtomic(file, "new");
    expect(readFileSync(file, "utf8")).toBe("new");
    expect(readdirSync(root)).toEqual(["config.xml"]);
  });

  test("concurrent writes leave one whole content and no temporary files", async () => {
    const file = join(root, "config.xml");
    const contents = Array.from({ length: 20 }, (_, i) => `content ${i} `.repeat(1000));
    await Promise.all(contents.map((content) => storage.writeFileAtomic(file, content)));
    expect(contents).toContain(readFileSync(file, "utf8"));
    expect(readdirSync(root)).toEqual(["config.xml"]);
  });

  test("a failed write throws and leaves no temporary file", async () => {
    mkdirSync(join(root, "target-is-a-folder/inner"), { recursive: true });
    await expect(storage.writeFileAtomic(join(root, "target-is-a-folder"), "x")).rejects.toThrow();
    expect(readdirSync(root)).toEqual(["target-is-a-folder"]);
  });

  test("a relative path is refused", async () => {
    await expect(storage.writeFileAtomic("config.xml", "x")).rejects.toThrow(/absolute/);
  });
});

describe("recreateFolder empties a folder", () => {
  test("everything in it is gone and the folder exists, empty", async () => {
    const folder = join(root, "home-alice/.config/syncthing");
    mkdirSync(join(folder, "sub/deeper"), { recursive: true });
    writeFileSync(join(folder, "sub/deeper/file"), "x");
    writeFileSync(join(folder, "top"), "x");
    await storage.recreateFolder(folder);
    expect(readdirSync(folder)).toEqual([]);
  });

  test("a missing folder is created", async () => {
    const folder = join(root, "a/b");
    await storage.recreateFolder(folder);
    expect(readdirSync(folder)).toEqual([]);
  });

  test("a symbolic link inside is removed, not followed", async () => {
    const keep = join(root, "keep");
    mkdirSync(keep);
    writeFileSync(join(keep, "precious"), "x");
    const folder = join(root, "scratch");
    mkdirSync(folder);
    symlinkSync(keep, join(folder, "link"));
    await storage.recreateFolder(folder);
    expect(readdirSync(folder)).toEqual([]);
    expect(readdirSync(keep)).toEqual(["precious"]);
  });

  test("the storage root, a folder holding it, and relative paths are refused", async () => {
    writeFileSync(join(root, "stays"), "x");
    await expect(storage.recreateFolder(root)).rejects.toThrow(/storage root/);
    await expect(storage.recreateFolder(join(root, ".."))).rejects.toThrow(/storage root/);
    await expect(storage.recreateFolder("/")).rejects.toThrow(/storage root/);
    await expect(storage.recreateFolder("scratch")).rejects.toThrow(/absolute/);
    expect(readdirSync(root)).toEqual(["stays"]);
  });
});

describe("a folder of the service's own in a home drive", () => {
  test("is created when missing, and refused when the user made it a symlink or a file", async () => {
    const [write, remove] = [writeFileSync, rmSync];
    const base = mkdtempSync(join(tmpdir(), "iapps-service-folder-"));
    try {
      const storage = new LocalStorage(base);
      const alice = { createdBy: "alice", project: null };
      const created = await storage.serviceFolder(alice, "Syncthing");
      expect(created).toBe(join(realpathSync(base), "home-alice", "Syncthing"));
      remove(created, { recursive: true });
      symlinkSync("/", created);
      await expect(storage.serviceFolder(alice, "Syncthing")).rejects.toThrow("not a plain folder");
      remove(created);
      write(created, "a file");
      await expect(storage.serviceFolder(alice, "Syncthing")).rejects.toThrow("not a plain folder");
      await expect(storage.serviceFolder(alice, "../x")).rejects.toThrow("not a folder name");
    } finally {
      remove(base, { recursive: true, force: true });
    }
  });
});
