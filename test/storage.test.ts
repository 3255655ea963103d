// The local storage model (src/storage/local.ts, spec §10): drives are folders under a root, home
// drives appear on first need, metadata kept in Redis (never a file in the drive) says who may use
// any other drive, no path escapes its drive, and no symbolic link is ever followed. Temporary
// directories and a real Redis.

import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { LocalStorage } from "../src/storage/local.ts";
import { RedisDriveDirectory } from "../src/store/drives.ts";
import { keys } from "../src/store/keys.ts";
import type { Owner } from "../src/domain/owner.ts";
import { type DriveSpec, makeDrive as makeDriveIn } from "./support/drives.ts";
import { startHarness } from "./support/harness.ts";

const alice: Owner = { createdBy: "alice", project: null };
const bob: Owner = { createdBy: "bob", project: null };
const carol: Owner = { createdBy: "carol", project: null };
const mallory: Owner = { createdBy: "mallory", project: null };

// The storage root is emptied before each test.
const { redis, root } = await startHarness({ api: false, storage: {} });
const client = new Redis(redis.url);
afterAll(() => client.disconnect());
const drives = new RedisDriveDirectory(async () => client);
let storage: LocalStorage;

beforeEach(() => {
  storage = new LocalStorage(root, drives);
});

/** Makes drive `id` with `metadata` in Redis (null: a folder without metadata). */
const makeDrive = (id: string, metadata: DriveSpec | null, folders: string[] = []) => makeDriveIn(drives, root, id, metadata, folders);

/** Makes the owner's home drive, as the service does on first need. */
async function homeDrive(owner: Owner): Promise<string> {
  await storage.serviceFolder(owner, "x");
  rmSync(join(root, `home-${owner.createdBy}`, "x"), { recursive: true });
  return join(root, `home-${owner.createdBy}`);
}

const project: DriveSpec = { owner: "alice", members: { bob: "write", carol: "read" }, locked: false };
describe("a home drive home-<username> is created on first need", () => {
  test("a service folder in it creates <root>/home-<username> first", async () => {
    expect(existsSync(join(root, "home-alice"))).toBe(false);
    const folder = await storage.serviceFolder(alice, "Syncthing");
    expect(folder).toEqual({ subPath: "home-alice/Syncthing", internalPath: join(root, "home-alice/Syncthing") });
    expect(existsSync(join(root, "home-alice/Syncthing"))).toBe(true);
    expect(await storage.serviceFolder(alice, "Syncthing")).toEqual(folder); // and again: nothing changes
  });

  test("access to the owner's own home drive creates it first", async () => {
    const result = await storage.access(alice, "/home-alice");
    expect(result).toEqual({
      ucloudPath: "/home-alice",
      driveId: "home-alice",
      internalPath: join(root, "home-alice"),
      subPath: "home-alice",
      access: "write",
    });
  });

  test("access to someone else's missing home drive does not create it", async () => {
    const result = await storage.access(alice, "/home-bob");
    expect(result.access).toBe("none");
    expect(result.why).toBe("the drive home-bob does not exist");
    expect(existsSync(join(root, "home-bob"))).toBe(false);
  });

  test("a storage root that does not exist yet is made on first need", async () => {
    const fresh = new LocalStorage(join(root, "not-yet", "storage"), drives);
    expect((await fresh.access(alice, "/home-alice")).access).toBe("write");
    expect(existsSync(join(root, "not-yet", "storage", "home-alice"))).toBe(true);
  });

  test("a relative root resolves against the working directory", () => {
    expect(new LocalStorage("var/storage", drives).root).toBe(join(process.cwd(), "var/storage"));
  });

  test("usernames that make an unsafe folder name are refused", async () => {
    for (const createdBy of ["", ".", "..", "a/b", "a\0b", "x".repeat(251)]) {
      await expect(storage.serviceFolder({ createdBy, project: null }, "Syncthing")).rejects.toThrow(/cannot name a home drive/);
    }
    const result = await storage.access({ createdBy: ".", project: null }, "/home-.");
    expect(result.access).toBe("none");
    const long = await storage.access({ createdBy: "x".repeat(251), project: null }, `/home-${"x".repeat(251)}`);
    expect(long.access).toBe("none");
    expect(readdirSync(root)).toEqual([]);
  });

  test("a home drive is someone else's to read only if its metadata says so", async () => {
    await homeDrive(alice);
    expect((await storage.access(bob, "/home-alice")).why).toBe("you have no access to drive home-alice");
    await makeDrive("home-alice", { owner: "alice", members: { bob: "read" }, locked: false });
    expect((await storage.access(bob, "/home-alice")).access).toBe("read");
  });
});

describe("the owner of a drive may write", () => {
  test("in the root folder and in sub-folders, with the folder's place below the root", async () => {
    const drive = await makeDrive("proj-1", project, ["data/raw"]);
    expect(await storage.access(alice, "/proj-1")).toEqual({
      ucloudPath: "/proj-1",
      driveId: "proj-1",
      internalPath: drive,
      subPath: "proj-1",
      access: "write",
    });
    const sub = await storage.access(alice, "/proj-1/data/raw");
    expect(sub.access).toBe("write");
    expect(sub.internalPath).toBe(join(drive, "data/raw"));
    expect(sub.subPath).toBe("proj-1/data/raw");
    expect(sub.why).toBeUndefined();
  });

  test("a trailing or doubled '/' means nothing", async () => {
    const drive = await makeDrive("proj-1", project, ["data/raw"]);
    expect((await storage.access(alice, "/proj-1/data//raw/")).internalPath).toBe(join(drive, "data/raw"));
    expect((await storage.access(alice, "/proj-1/data//raw/")).subPath).toBe("proj-1/data/raw");
  });
});

describe("a write member may write", () => {
  test("bob is a write member of proj-1", async () => {
    await makeDrive("proj-1", project, ["data"]);
    expect((await storage.access(bob, "/proj-1/data")).access).toBe("write");
  });
});

describe("a read member may read", () => {
  test("carol is a read member of proj-1", async () => {
    await makeDrive("proj-1", project, ["data"]);
    const result = await storage.access(carol, "/proj-1/data");
    expect(result.access).toBe("read");
    expect(result.internalPath).toBe(join(root, "proj-1/data"));
  });
});

describe("a stranger has no access", () => {
  test("mallory is neither owner nor member of proj-1", async () => {
    await makeDrive("proj-1", project, ["data"]);
    const result = await storage.access(mallory, "/proj-1/data");
    expect(result).toEqual({
      ucloudPath: "/proj-1/data",
      driveId: "proj-1",
      internalPath: "",
      subPath: "",
      access: "none",
      why: "you have no access to drive proj-1",
    });
  });

  test("the project of the owner does not matter, only the username", async () => {
    await makeDrive("proj-1", project, ["data"]);
    expect((await storage.access({ createdBy: "mallory", project: "proj-1" }, "/proj-1/data")).access).toBe("none");
    expect((await storage.access({ createdBy: "carol", project: "other" }, "/proj-1/data")).access).toBe("read");
  });
});

describe("nobody may use a locked drive, not even its owner", () => {
  test("owner, write member, read member and stranger all get none", async () => {
    await makeDrive("proj-1", { ...project, locked: true }, ["data"]);
    for (const owner of [alice, bob, carol]) {
      const result = await storage.access(owner, "/proj-1/data");
      expect(result.access).toBe("none");
      expect(result.why).toBe("the drive proj-1 is locked");
    }
    expect((await storage.access(mallory, "/proj-1/data")).access).toBe("none");
  });

  test("a home drive is locked by its metadata", async () => {
    await makeDrive("home-bob", { owner: "bob", members: {}, locked: true });
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

  test("a drive folder that is not a home drive and has no metadata is not usable", async () => {
    await makeDrive("proj-2", null, ["data"]);
    const result = await storage.access(alice, "/proj-2/data");
    expect(result.access).toBe("none");
    expect(result.why).toContain("has no metadata");
  });

  test("a drive that is a file is not a drive", async () => {
    writeFileSync(join(root, "proj-3"), "x");
    expect((await storage.access(alice, "/proj-3")).why).toBe("the drive proj-3 is not a folder");
  });
});

describe("a missing folder gives none", () => {
  test("the folder does not exist in an existing drive", async () => {
    await homeDrive(alice);
    const result = await storage.access(alice, "/home-alice/x");
    expect(result.access).toBe("none");
    expect(result.why).toBe("the folder /home-alice/x does not exist");
    expect(result.internalPath).toBe("");
  });

  test("a path through a file does not exist", async () => {
    const home = await homeDrive(alice);
    writeFileSync(join(home, "notes.txt"), "x");
    expect((await storage.access(alice, "/home-alice/notes.txt/x")).why).toBe("the folder /home-alice/notes.txt/x does not exist");
  });
});

describe("a file is not a folder: none", () => {
  test("a regular file in the drive", async () => {
    const home = await homeDrive(alice);
    writeFileSync(join(home, "notes.txt"), "x");
    const result = await storage.access(alice, "/home-alice/notes.txt");
    expect(result.access).toBe("none");
    expect(result.why).toBe("/home-alice/notes.txt is not a folder");
  });
});

describe("a file inside a drive never grants anything (spec §10)", () => {
  test("a .drive.json naming mallory owner of a drive without metadata: still not usable", async () => {
    await makeDrive("proj-2", null, ["data"]);
    writeFileSync(join(root, "proj-2/.drive.json"), JSON.stringify({ owner: "mallory", members: {}, locked: false }));
    const result = await storage.access(mallory, "/proj-2/data");
    expect(result.access).toBe("none");
  });

  test("a member's rewritten .drive.json changes nothing: bob stays a member, alice the owner, the lock holds", async () => {
    await makeDrive("proj-1", { ...project, locked: true }, ["data"]);
    writeFileSync(join(root, "proj-1/.drive.json"), JSON.stringify({ owner: "bob", members: { mallory: "write" }, locked: false }));
    for (const owner of [alice, bob, mallory]) expect((await storage.access(owner, "/proj-1/data")).access).toBe("none");
    await drives.setLocked("proj-1", false);
    expect((await storage.access(bob, "/proj-1/data")).access).toBe("write");
    expect((await storage.access(mallory, "/proj-1/data")).access).toBe("none");
  });

  test("a .drive.json in someone's home drive does not share it", async () => {
    const home = await homeDrive(bob);
    writeFileSync(join(home, ".drive.json"), JSON.stringify({ owner: "mallory", members: {}, locked: false }));
    expect((await storage.access(mallory, "/home-bob")).access).toBe("none");
    expect((await storage.access(bob, "/home-bob")).access).toBe("write");
  });
});

describe("no path escapes its drive", () => {
  beforeEach(async () => {
    await homeDrive(alice);
    await homeDrive(bob);
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
      expect(result.why).toContain("lead outside the drive home-alice");
      expect(result.internalPath).toBe("");
      expect(result.subPath).toBe("");
    }
  });

  test("a symbolic link within the drive is refused too: it could be swapped to lead anywhere", async () => {
    mkdirSync(join(root, "home-alice/x/deep"));
    symlinkSync("x/deep", join(root, "home-alice/shortcut"));
    const result = await storage.access(alice, "/home-alice/shortcut");
    expect(result.access).toBe("none");
    expect(result.why).toBe("/home-alice/shortcut is a symbolic link: links are not followed, since they can lead outside the drive home-alice");
    expect((await storage.access(alice, "/home-alice/x/deep")).access).toBe("write");
  });

  test("a drive that is a symbolic link is refused", async () => {
    symlinkSync(join(root, "home-bob"), join(root, "proj-link"));
    await drives.put("proj-link", { owner: "alice", members: {}, locked: false, sensitivity: {} });
    const result = await storage.access(alice, "/proj-link");
    expect(result.access).toBe("none");
    expect(result.why).toContain("symbolic link");
  });

  test("a loop of symbolic links gives none", async () => {
    symlinkSync("b", join(root, "home-alice/a"));
    symlinkSync("a", join(root, "home-alice/b"));
    const result = await storage.access(alice, "/home-alice/a");
    expect(result.access).toBe("none");
  });
});

describe("metadata that no command wrote makes the drive unusable", () => {
  test.each([
    ["no owner", { locked: "false" }, "no owner"],
    ["a bad role", { owner: "alice", "member:bob": "admin" }, "member:bob"],
    ["locked not a boolean", { owner: "alice", locked: "no" }, "'locked'"],
    ["a bad sensitivity", { owner: "alice", "sensitivity:data": "SECRET" }, "sensitivity:data"],
  ])("%s gives none, for the owner too", async (_name, hash, why) => {
    await makeDrive("proj-1", null, ["data"]);
    await redis.admin.hset(keys.drive("proj-1"), hash);
    const result = await storage.access(alice, "/proj-1/data");
    expect(result.access).toBe("none");
    expect(result.why).toContain("is not usable");
    expect(result.why).toContain(why);
  });

  test("members and locked may be left out", async () => {
    await makeDrive("proj-1", null, ["data"]);
    await redis.admin.hset(keys.drive("proj-1"), { owner: "alice" });
    expect((await storage.access(alice, "/proj-1/data")).access).toBe("write");
    expect((await storage.access(bob, "/proj-1/data")).access).toBe("none");
  });

  test("a member named like an Object property is no member", async () => {
    await makeDrive("proj-1", project, ["data"]);
    for (const createdBy of ["constructor", "__proto__", "toString"]) {
      expect((await storage.access({ createdBy, project: null }, "/proj-1/data")).access).toBe("none");
    }
  });
});

describe("sensitivity (spec §7): a folder's own mark, or the nearest above it", () => {
  test("marks of the folder, of a folder above, of the drive; CONFIDENTIAL over SENSITIVE", async () => {
    await makeDrive("proj-1", { ...project, sensitivity: { "data/secret": "CONFIDENTIAL", data: "SENSITIVE" } }, ["data/secret/inner", "data/open", "other"]);
    expect(await storage.sensitivity("/proj-1/data/secret")).toBe("CONFIDENTIAL");
    expect(await storage.sensitivity("/proj-1/data/secret/inner")).toBe("CONFIDENTIAL");
    expect(await storage.sensitivity("/proj-1/data/open")).toBe("SENSITIVE");
    expect(await storage.sensitivity("/proj-1/other")).toBeNull();
    expect(await storage.sensitivity("/proj-1")).toBeNull();
    expect((await storage.access(alice, "/proj-1/data/secret/inner")).sensitivity).toBe("CONFIDENTIAL");
    expect((await storage.access(alice, "/proj-1/other")).sensitivity).toBeUndefined();
    await drives.mark("proj-1", "", "SENSITIVE");
    expect(await storage.sensitivity("/proj-1/other")).toBe("SENSITIVE");
  });

  test("a home drive may carry marks too; paths that name no drive have none", async () => {
    await makeDrive("home-alice", { owner: "alice", sensitivity: { Private: "SENSITIVE" } }, ["Private"]);
    expect(await storage.sensitivity("/home-alice/Private")).toBe("SENSITIVE");
    expect(await storage.sensitivity("/home-alice/Public")).toBeNull();
    expect(await storage.sensitivity("/")).toBeNull();
    expect(await storage.sensitivity("/../x")).toBeNull();
  });
});

describe("accessAll: access for several folders, each drive's metadata read once (issue 13)", () => {
  test("answers what access answers for each folder, in order", async () => {
    await homeDrive(alice);
    mkdirSync(join(root, "home-alice", "Documents"));
    await makeDrive("proj-1", project, ["data"]);
    await makeDrive("proj-locked", { ...project, locked: true }, ["data"]);
    const paths = ["/home-alice/Documents", "/proj-1/data", "/home-alice/missing", "/proj-locked/data", "/home-bob/x", "../bad", "/proj-1/data"];
    const one = await Promise.all(paths.map((path) => storage.access(alice, path)));
    expect(await storage.accessAll(alice, paths)).toEqual(one);
  });

  test("reads each drive's metadata once, however many of its folders are asked about", async () => {
    await homeDrive(alice);
    for (const name of ["A", "B", "C"]) mkdirSync(join(root, "home-alice", name));
    await makeDrive("proj-1", project, ["data", "more"]);
    const asked: string[] = [];
    const counting = new LocalStorage(root, {
      get: (driveId) => {
        asked.push(driveId);
        return drives.get(driveId);
      },
    });
    const found = await counting.accessAll(alice, ["/home-alice/A", "/proj-1/data", "/home-alice/B", "/proj-1/more", "/home-alice/C"]);
    expect(found.map((f) => f.access)).toEqual(["write", "write", "write", "write", "write"]);
    expect(asked.sort()).toEqual(["home-alice", "proj-1"]);
  });
});

describe("writeServiceFiles writes atomically inside the service folder, through no link", () => {
  test("writes new files, creating the folder (and the home drive)", async () => {
    await storage.writeServiceFiles(alice, "Syncthing", { "config.json": "one", "job_id.txt": "7\n" });
    const folder = join(root, "home-alice/Syncthing");
    expect(readFileSync(join(folder, "config.json"), "utf8")).toBe("one");
    expect(readdirSync(folder).sort()).toEqual(["config.json", "job_id.txt"]);
  });

  test("replaces an existing file", async () => {
    const folder = join(root, "home-alice/Syncthing");
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, "config.json"), "old content that is longer");
    await storage.writeServiceFiles(alice, "Syncthing", { "config.json": "new" });
    expect(readFileSync(join(folder, "config.json"), "utf8")).toBe("new");
    expect(readdirSync(folder)).toEqual(["config.json"]);
  });

  test("concurrent writes leave one whole content and no temporary files", async () => {
    const contents = Array.from({ length: 20 }, (_, i) => `content ${i} `.repeat(1000));
    await Promise.all(contents.map((content) => storage.writeServiceFiles(alice, "Syncthing", { "config.json": content })));
    const folder = join(root, "home-alice/Syncthing");
    expect(contents).toContain(readFileSync(join(folder, "config.json"), "utf8"));
    expect(readdirSync(folder)).toEqual(["config.json"]);
  });

  test("a link planted at a file's name is replaced, not written through", async () => {
    const bobs = join(await homeDrive(bob), "precious");
    writeFileSync(bobs, "bob's");
    const folder = join(root, "home-alice/Syncthing");
    mkdirSync(folder, { recursive: true });
    symlinkSync(bobs, join(folder, "config.json"));
    await storage.writeServiceFiles(alice, "Syncthing", { "config.json": "alice's" });
    expect(readFileSync(bobs, "utf8")).toBe("bob's");
    expect(lstatSync(join(folder, "config.json")).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(folder, "config.json"), "utf8")).toBe("alice's");
  });

  test("a service folder that is a link or a file is refused, and nothing is written", async () => {
    const target = join(await homeDrive(bob), "Syncthing");
    mkdirSync(target);
    await homeDrive(alice);
    symlinkSync(target, join(root, "home-alice/Syncthing"));
    await expect(storage.writeServiceFiles(alice, "Syncthing", { "config.json": "x" })).rejects.toThrow("not a plain folder");
    expect(readdirSync(target)).toEqual([]);
    rmSync(join(root, "home-alice/Syncthing"));
    writeFileSync(join(root, "home-alice/Syncthing"), "a file");
    await expect(storage.writeServiceFiles(alice, "Syncthing", { "config.json": "x" })).rejects.toThrow("not a plain folder");
  });

  test("a home drive that is a link is refused", async () => {
    await homeDrive(bob);
    symlinkSync(join(root, "home-bob"), join(root, "home-alice"));
    await expect(storage.writeServiceFiles(alice, "Syncthing", { "config.json": "x" })).rejects.toThrow();
    expect(readdirSync(join(root, "home-bob"))).toEqual([]);
  });

  test("names that are not plain folder or file names are refused", async () => {
    await expect(storage.writeServiceFiles(alice, "../x", { a: "x" })).rejects.toThrow("not a folder name");
    await expect(storage.writeServiceFiles(alice, "Syncthing", { "../a": "x" })).rejects.toThrow("not a plain file name");
  });
});

describe("wipeServiceFolder empties the service folder and never leaves it", () => {
  test("everything in it is gone and the folder exists, empty", async () => {
    const folder = join(root, "home-alice/Syncthing");
    mkdirSync(join(folder, "sub/deeper"), { recursive: true });
    writeFileSync(join(folder, "sub/deeper/file"), "x");
    writeFileSync(join(folder, "top"), "x");
    await storage.wipeServiceFolder(alice, "Syncthing");
    expect(readdirSync(folder)).toEqual([]);
  });

  test("a missing folder is created", async () => {
    await storage.wipeServiceFolder(alice, "Syncthing");
    expect(readdirSync(join(root, "home-alice/Syncthing"))).toEqual([]);
  });

  test("a symbolic link inside is removed, not followed", async () => {
    const keep = join(root, "keep");
    mkdirSync(keep);
    writeFileSync(join(keep, "precious"), "x");
    const folder = join(root, "home-alice/Syncthing");
    mkdirSync(join(folder, "sub"), { recursive: true });
    symlinkSync(keep, join(folder, "link"));
    symlinkSync(keep, join(folder, "sub/link"));
    await storage.wipeServiceFolder(alice, "Syncthing");
    expect(readdirSync(folder)).toEqual([]);
    expect(readdirSync(keep)).toEqual(["precious"]);
  });

  test("a service folder that is a link is removed as a link, its target untouched", async () => {
    const target = join(await homeDrive(bob), "Syncthing");
    mkdirSync(target);
    writeFileSync(join(target, "precious"), "x");
    await homeDrive(alice);
    symlinkSync(target, join(root, "home-alice/Syncthing"));
    await storage.wipeServiceFolder(alice, "Syncthing");
    expect(readdirSync(target)).toEqual(["precious"]);
    expect(lstatSync(join(root, "home-alice/Syncthing")).isDirectory()).toBe(true);
  });
});
