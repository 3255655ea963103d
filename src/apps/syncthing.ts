// Syncthing: file synchronisation between UCloud drives and the user's own devices (spec §7).
// This module holds its configuration rules, job specification and pod image. The rest of its
// runtime side (storage access, ports, state folder files, env and mounts) arrives with the
// storage model of the apps issue.

import { createHash } from "node:crypto";
import * as v from "valibot";
import { defineApp } from "./app.ts";
import { deviceIdProblem } from "./syncthing-device-id.ts";
import { homeDrivePath, ucloudPath } from "./paths.ts";

export const MAX_FOLDERS = 1000;
export const MAX_DEVICES = 1000;

const FolderSchema = v.object({
  ucloudPath,
  path: v.optional(v.pipe(v.string("expected a string"), v.maxLength(4096, "must be at most 4096 characters"))),
  id: v.optional(v.pipe(v.string("expected a string"), v.maxLength(256, "must be at most 256 characters")), ""),
});

const DeviceSchema = v.object({
  deviceId: v.pipe(
    v.string("expected a string"),
    v.maxLength(128, "must be at most 128 characters"),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const problem = deviceIdProblem(dataset.value);
      if (problem) addIssue({ message: problem });
    }),
  ),
  label: v.optional(v.pipe(v.string("expected a string"), v.maxLength(256, "must be at most 256 characters")), ""),
});

export const SyncthingConfigSchema = v.object({
  folders: v.pipe(v.array(FolderSchema, "expected an array"), v.maxLength(MAX_FOLDERS, `at most ${MAX_FOLDERS} folders`)),
  devices: v.pipe(v.array(DeviceSchema, "expected an array"), v.maxLength(MAX_DEVICES, `at most ${MAX_DEVICES} devices`)),
});

export type SyncthingConfig = v.InferOutput<typeof SyncthingConfigSchema>;

/** A folder's id, or (when empty) the first 16 hex characters of SHA-256 of its UCloud path. */
export function folderId(folder: { ucloudPath: string; id?: string }): string {
  if (folder.id) return folder.id;
  return createHash("sha256").update(folder.ucloudPath).digest("hex").slice(0, 16);
}

/** Syncthing ignores dashes, spaces and case in device IDs, so duplicates are found that way too. */
const canonicalDeviceId = (id: string) => id.replace(/[-\s]/g, "").toUpperCase();

export const syncthing = defineApp<SyncthingConfig>({
  name: "syncthing",
  internal: false,
  configSchema: SyncthingConfigSchema,
  defaultConfig: () => ({ folders: [], devices: [] }),
  validate(config) {
    const folderIds = new Map<string, number>();
    for (const [index, folder] of config.folders.entries()) {
      const id = folderId(folder);
      const first = folderIds.get(id);
      if (first !== undefined) {
        return { path: `folders[${index}].id`, reason: `duplicate folder id '${id}' (also used by folders[${first}])` };
      }
      folderIds.set(id, index);
    }
    const deviceIds = new Map<string, number>();
    for (const [index, device] of config.devices.entries()) {
      const id = canonicalDeviceId(device.deviceId);
      const first = deviceIds.get(id);
      if (first !== undefined) {
        return { path: `devices[${index}].deviceId`, reason: `duplicate device ID (also used by devices[${first}])` };
      }
      deviceIds.set(id, index);
    }
    return null;
  },
  version: (settings) => settings.image_version,
  // Spec §7: it runs with at least one accessible folder and one device. Until the storage model
  // exists (apps issue) every configured folder counts as accessible.
  shouldRun: ({ config }) => config.folders.length > 0 && config.devices.length > 0,
  podMatches: () => true,
  mutatePod(pod, { settings }) {
    const container = pod.spec!.containers[0]!;
    container.image = `${settings.image}:${settings.image_version}`;
  },
  mutateService: () => {},
  mutateNetworkPolicy: () => {},
  mutateJobSpec: (owner, spec) => ({
    ...spec,
    application: { name: "syncthing", version: "1" },
    labels: { ...spec.labels, "ucloud.dk/ucxport": "8435" },
    parameters: {
      ...spec.parameters,
      stateFolder: { type: "file", path: `${homeDrivePath(owner)}/Syncthing`, readOnly: false },
    },
  }),
});
