// The integrated terminal: an idle shell container over the drives a user opened it in (spec §8).
// Internal: it has no configuration routes; the service changes its folder list when a terminal
// is opened (src/service/terminal.ts). It runs while its inactivity lease (Redis, refreshed by
// open and activity) is alive and every folder can be used; each folder is mounted read-write
// where the owner may write it, else read-only.
// Imports node:crypto, valibot, src/domain (the app interface, storage types) and ./paths.ts.

import { createHash } from "node:crypto";
import * as v from "valibot";
import type { FolderAccess } from "../domain/storage.ts";
import { defineApp } from "../domain/app.ts";
import { ucloudPath } from "./paths.ts";

export const MAX_TERMINAL_FOLDERS = 1000;

export const TerminalConfigSchema = v.object({
  folders: v.pipe(
    v.array(ucloudPath, "expected an array"),
    v.maxLength(MAX_TERMINAL_FOLDERS, `at most ${MAX_TERMINAL_FOLDERS} folders`),
  ),
});

export type TerminalConfig = v.InferOutput<typeof TerminalConfigSchema>;

/** What one reconcile reads: the lease left, and what the owner may do with each folder (config order). */
export interface TerminalFacts {
  leaseMs: number;
  folders: FolderAccess[];
}

export const TERMINAL_ANNOTATIONS = {
  /** SHA-256 hex of the mounted folders and their access: a change of access restarts the pod. */
  folders: "ucloud.dk/terminalFolders",
} as const;

/** Where a folder appears in the container: `/work/<driveId>` for a drive, `/work<path>` in general. */
export const TERMINAL_WORK_DIR = "/work";
export const terminalMountPath = (ucloudPath: string) => `${TERMINAL_WORK_DIR}/${ucloudPath.split("/").filter(Boolean).join("/")}`;

/** The drive of a UCloud path (`/<driveId>`, from its first segment), or null when it names none. */
export function drivePathOf(ucloudPath: string): string | null {
  const first = ucloudPath.split("/").find((segment) => segment !== "");
  return first === undefined ? null : `/${first}`;
}

/** SHA-256 hex of the JSON array of `[ucloudPath, access]` in configuration order. */
export function terminalFoldersHash(folders: Pick<FolderAccess, "ucloudPath" | "access">[]): string {
  const list = folders.map((f) => [f.ucloudPath, f.access]);
  return createHash("sha256").update(JSON.stringify(list)).digest("hex");
}

export const terminal = defineApp<TerminalConfig, TerminalFacts>({
  name: "terminal",
  internal: true,
  configSchema: TerminalConfigSchema,
  defaultConfig: () => ({ folders: [] }),
  validate(config) {
    const seen = new Map<string, number>();
    for (const [index, folder] of config.folders.entries()) {
      const first = seen.get(folder);
      if (first !== undefined) return { path: `folders[${index}]`, reason: `duplicate folder (also folders[${first}])` };
      seen.set(folder, index);
    }
    return null;
  },
  mutateJobSpec: (_owner, spec) => ({
    ...spec,
    name: "Integrated terminal",
    application: { name: "unknown", version: "unknown" },
  }),
  version: () => undefined,

  async observe({ owner, config }, { leases, storage }) {
    const [leaseMs, folders] = await Promise.all([
      leases.remaining("terminal", owner),
      Promise.all(config.folders.map((folder) => storage.access(owner, folder))),
    ]);
    return { leaseMs, folders };
  },
  // Spec §8: only while the lease is alive and every folder can be used (a folder the owner may
  // only read is mounted read-only). As in UCloud, a terminal without folders does not run: an
  // open whose only drive was refused leaves it empty, and it has nothing to work on.
  shouldRun: ({ facts }) => facts.leaseMs > 0 && facts.folders.length > 0 && facts.folders.every((f) => f.access !== "none"),
  // A drive locked, a member's write permission taken away: the mounts no longer fit.
  podMatches: (pod, { facts }) => pod.metadata?.annotations?.[TERMINAL_ANNOTATIONS.folders] === terminalFoldersHash(facts.folders),
  prepareStart: async () => null,
  release: async () => {},

  mutatePod(pod, { settings, facts, filesystem }) {
    const spec = pod.spec!;
    const container = spec.containers[0]!;
    container.image = `${settings.image}:${settings.image_version}`;
    container.command = ["sleep", "inf"];
    container.resources = { requests: { cpu: "500m", memory: "2000000000" }, limits: { cpu: "1000m", memory: "2000000000" } };
    spec.terminationGracePeriodSeconds = 0;
    // Spec §8, §10: each drive is a subPath of the one storage volume, as UCloud mounts them.
    spec.volumes = [...(spec.volumes ?? []), filesystem];
    container.volumeMounts = [...(container.volumeMounts ?? [])];
    for (const folder of facts.folders) {
      if (folder.access === "none") continue;
      container.volumeMounts.push({
        name: filesystem.name,
        mountPath: terminalMountPath(folder.ucloudPath),
        subPath: folder.subPath,
        readOnly: folder.access !== "write",
      });
    }
    container.workingDir = TERMINAL_WORK_DIR;
    pod.metadata!.annotations = {
      ...pod.metadata!.annotations,
      [TERMINAL_ANNOTATIONS.folders]: terminalFoldersHash(facts.folders),
    };
  },
  mutateService: () => {},
  mutateNetworkPolicy: () => {},
  extraServices: () => [],
  // The lease runs out by itself: look again then (nothing changes by itself without one).
  recheckAfter: ({ facts }) => (facts.leaseMs > 0 ? facts.leaseMs : null),
  reset: async () => {},
});
