// `bun src/main.ts drive ...`: the operator's commands for drives (spec §10). A drive's metadata
// (owner, members, lock, restricted folders) lives in Redis, outside every drive; these commands
// are the one way to change it. `import` reads the `.drive.json` files earlier versions trusted
// inside the drives, once, on an operator's word; the files themselves never grant anything.
// Imports src/service/context.ts, src/storage and src/store/drives.ts.

import type { ServiceContext } from "../service/context.ts";
import { Directory, errorCode, WalkError } from "../base/directory.ts";
import { HOME_PREFIX, parseUcloudPath, unsafeDriveId, unsafeUsername } from "../storage/local.ts";
import { folderKey } from "../store/drives.ts";
import type { DriveMetadata, MemberRole, Sensitivity } from "../domain/storage.ts";

export const DRIVE_USAGE = `usage: bun src/main.ts drive <command>
  list                                  drives with metadata
  show <driveId>                        a drive's metadata (a home drive without any: its implicit owner)
  create <driveId> --owner <username>   make the folder <root>/<driveId> and give it an owner
  share <driveId> <username> <read|write|none>
  lock <driveId> | unlock <driveId>     nobody may use a locked drive, not even its owner
  mark <ucloudPath> <SENSITIVE|CONFIDENTIAL|none>
                                        a restricted folder is never synchronised; running
                                        Syncthing configurations drop it at their next reconcile
  forget <driveId>                      delete the metadata (the folder and files stay)
  import [--replace]                    read each <root>/<driveId>/.drive.json of earlier versions
                                        into Redis once (drives with metadata are skipped unless --replace)`;

/** A command's failure: the message is for the operator, the exit status 2. */
export class DriveCommandError extends Error {}

const fail = (message: string): never => {
  throw new DriveCommandError(message);
};

/** The file earlier versions kept in each drive, and trusted in place. */
const LEGACY_METADATA = ".drive.json";

/** Runs one drive command; what it prints goes to `print`, one line at a time. */
export async function driveCommand(context: ServiceContext, args: string[], print: (line: string) => void): Promise<void> {
  const { drives } = context;
  const [command, ...rest] = args;
  const driveIdArgument = (value: string | undefined): string => {
    if (value === undefined) fail(DRIVE_USAGE);
    const why = unsafeDriveId(value!);
    if (why !== null) fail(`drive ${command}: ${why}`);
    return value!;
  };
  // A home drive belongs to its user without metadata: changing it gives it some, with that owner.
  const ensureMetadata = async (driveId: string) => {
    if (driveId.startsWith(HOME_PREFIX) && driveId.length > HOME_PREFIX.length) await drives.create(driveId, driveId.slice(HOME_PREFIX.length));
  };

  switch (command) {
    case "list":
      for (const id of await drives.list(await context.commands())) print(id);
      return;
    case "show": {
      const driveId = driveIdArgument(rest[0]);
      const metadata = await drives.get(driveId);
      if (metadata === null) {
        if (!driveId.startsWith(HOME_PREFIX)) fail(`drive show: ${driveId} has no metadata`);
        print(JSON.stringify({ driveId, owner: driveId.slice(HOME_PREFIX.length), members: {}, locked: false, sensitivity: {}, implicit: true }, null, 2));
        return;
      }
      print(JSON.stringify({ driveId, ...metadata }, null, 2));
      return;
    }
    case "create": {
      const driveId = driveIdArgument(rest[0]);
      const ownerAt = rest.indexOf("--owner");
      const owner = ownerAt === -1 ? undefined : rest[ownerAt + 1];
      if (owner === undefined) fail(`usage: bun src/main.ts drive create <driveId> --owner <username>`);
      const why = unsafeUsername(owner);
      if (why !== null) fail(`drive create: ${why}`);
      await Directory.using(Directory.open(context.config.storage.root), async (root) => {
        try {
          await (await root.child(driveId, { create: true })).close();
        } catch (error) {
          fail(`drive create: <root>/${driveId} exists and is not a folder (or is a symbolic link): ${(error as Error).message}`);
        }
      });
      if (!(await drives.create(driveId, owner!))) fail(`drive create: ${driveId} has metadata already (drive show ${driveId})`);
      print(`created ${driveId}, owned by ${owner}`);
      return;
    }
    case "share": {
      const driveId = driveIdArgument(rest[0]);
      const [, user, role] = rest;
      if (user === undefined || !["read", "write", "none"].includes(role ?? "")) fail("usage: bun src/main.ts drive share <driveId> <username> <read|write|none>");
      const why = unsafeUsername(user);
      if (why !== null) fail(`drive share: ${why}`);
      await ensureMetadata(driveId);
      await drives.share(driveId, user!, role === "none" ? null : (role as MemberRole));
      print(role === "none" ? `${user} is no member of ${driveId}` : `${user} may ${role} ${driveId}`);
      return;
    }
    case "lock":
    case "unlock": {
      const driveId = driveIdArgument(rest[0]);
      await ensureMetadata(driveId);
      await drives.setLocked(driveId, command === "lock");
      print(`${driveId} is ${command}ed`);
      return;
    }
    case "mark": {
      const [path, level] = rest;
      if (path === undefined || !["SENSITIVE", "CONFIDENTIAL", "none"].includes(level ?? "")) {
        fail("usage: bun src/main.ts drive mark <ucloudPath> <SENSITIVE|CONFIDENTIAL|none>");
      }
      const parsed = parseUcloudPath(path);
      if ("why" in parsed) fail(`drive mark: ${parsed.why}`);
      const { driveId, rest: folders } = parsed as { driveId: string; rest: string[] };
      await ensureMetadata(driveId);
      await drives.mark(driveId, folderKey(folders), level === "none" ? null : (level as Sensitivity));
      print(level === "none" ? `${path} is not marked` : `${path} is ${level}: Syncthing configurations drop it at their next reconcile`);
      return;
    }
    case "forget": {
      const driveId = driveIdArgument(rest[0]);
      print((await drives.remove(driveId)) ? `forgot the metadata of ${driveId}` : `${driveId} had no metadata`);
      return;
    }
    case "import":
      await importLegacy(context, rest.includes("--replace"), print);
      return;
    default:
      fail(DRIVE_USAGE);
  }
}

/** Reads every `<root>/<driveId>/.drive.json` (a regular file, opened without following links) into Redis. */
async function importLegacy(context: ServiceContext, replace: boolean, print: (line: string) => void) {
  const { drives } = context;
  let imported = 0;
  await Directory.using(Directory.open(context.config.storage.root), async (root) => {
    for (const driveId of (await root.list()).sort()) {
      if (unsafeDriveId(driveId) !== null) continue;
      let text: string;
      try {
        text = await Directory.using(root.child(driveId), (drive) => drive.readFile(LEGACY_METADATA));
      } catch (error) {
        const code = errorCode(error);
        // No folder, no file, or a link where either should be: nothing to import from here.
        if (error instanceof WalkError || code === "ENOENT" || code === "ELOOP" || code === "ENOTDIR" || code === "EISDIR") continue;
        throw error;
      }
      const metadata = parseLegacyMetadata(text);
      if (typeof metadata === "string") {
        print(`${driveId}: not imported: its ${LEGACY_METADATA} is invalid (${metadata})`);
        continue;
      }
      if (!replace && (await drives.get(driveId).catch(() => "invalid")) !== null) {
        print(`${driveId}: skipped: it has metadata already (--replace to overwrite it)`);
        continue;
      }
      await drives.put(driveId, metadata);
      imported++;
      const members = Object.keys(metadata.members).length;
      print(`${driveId}: imported: owner ${metadata.owner}, ${members} member${members === 1 ? "" : "s"}${metadata.locked ? ", locked" : ""}`);
    }
  });
  print(`imported ${imported} drive${imported === 1 ? "" : "s"}; the ${LEGACY_METADATA} files grant nothing and may be deleted`);
}

/** The metadata in an old `.drive.json` text, or why it is invalid. */
export function parseLegacyMetadata(text: string): DriveMetadata | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return "it is not valid JSON";
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return "it is not a JSON object";
  const record = json as Record<string, unknown>;
  if (typeof record.owner !== "string" || unsafeUsername(record.owner) !== null) return "'owner' must be a username";
  const members: Record<string, MemberRole> = Object.create(null);
  if (record.members !== undefined) {
    if (typeof record.members !== "object" || record.members === null || Array.isArray(record.members)) {
      return "'members' must be an object of username to \"read\" or \"write\"";
    }
    for (const [name, role] of Object.entries(record.members)) {
      if (role !== "read" && role !== "write") return `'members.${name}' must be "read" or "write"`;
      if (unsafeUsername(name) !== null) return `'members.${name}' is not a username`;
      members[name] = role;
    }
  }
  if (record.locked !== undefined && typeof record.locked !== "boolean") return "'locked' must be true or false";
  return { owner: record.owner, members, locked: record.locked === true, sensitivity: Object.create(null) };
}
