// Syncthing: file synchronisation between UCloud drives and the user's own devices (spec §7):
// its configuration rules, job specification, and runtime: which folders it may use, its port,
// the state files it starts from, and the shape of its pod, services and network policy.

import { createHash } from "node:crypto";
import * as v from "valibot";
import type { V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import type { FolderAccess, ServiceFolder } from "../domain/storage.ts";
import type { Owner } from "../domain/owner.ts";
import { type AppSettings, defineApp } from "../domain/app.ts";
import type { PortRange } from "../domain/runtime.ts";
import { canonicalDeviceId, deviceIdProblem } from "./syncthing-device-id.ts";
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
    v.description(
      "A Syncthing device ID: 8 groups of 7 base32 characters (either case; '-' or ' ' between groups, optional), with Syncthing's check characters. No other white space.",
    ),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const problem = deviceIdProblem(dataset.value);
      if (problem) addIssue({ message: problem });
    }),
    // Spec §7: stored in Syncthing's canonical form (upper case, 8 groups of 7 joined by '-').
    v.transform(canonicalDeviceId),
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

/** A folder Syncthing may use: its access as storage found it, and its id filled in. */
export interface SyncthingFolderAccess extends FolderAccess {
  id: string;
  path?: string;
}

export interface SyncthingFacts {
  /** The accessible folders (the owner may write them, and none is restricted); the others are left out. */
  folders: SyncthingFolderAccess[];
  /** Folders of the configuration that are marked SENSITIVE or CONFIDENTIAL (or lie in one). */
  restricted: string[];
  /** The state folder, `<home drive>/Syncthing` (a plain folder, never a symlink). */
  stateFolder: ServiceFolder;
  /** The port the job's pod runs with (null without a pod: prepareStart claims one). */
  port: number | null;
}

export const PORT_POOL = "syncthing";
/** UCloud's UCX port: never handed out as a Syncthing port. */
export const UCX_PORT = 8435;
const STATE_MOUNT = "/syncthing-state";

export const SYNCTHING_ANNOTATIONS = {
  port: "ucloud.dk/syncthingPort",
  folders: "ucloud.dk/syncthingFolders",
  ucxVersion: "ucloud.dk/syncthingUcxVersion",
} as const;

/** SHA-256 hex of the JSON array of the sorted accessible UCloud paths (spec §7). */
export function foldersHash(folders: { ucloudPath: string }[]): string {
  const paths = folders.map((f) => f.ucloudPath).sort();
  return createHash("sha256").update(JSON.stringify(paths)).digest("hex");
}

/** `Syncthing` in the owner's home drive; an owner in a project gets a folder of its own beside it. */
export function stateFolderName(owner: Owner): string {
  return owner.project === null ? "Syncthing" : `Syncthing-${owner.project}`;
}

/** Why a folder cannot be synchronised (UCloud/Core's words). */
export const restrictedReason = (path: string) => `Sensitive or confidential folders cannot be synchronized: ${path}`;

/** A read-write mount of `subPath` of the storage volume. */
function filesystemMount(filesystem: V1Volume, subPath: string, mountPath: string): V1VolumeMount {
  return { name: filesystem.name, mountPath, subPath, readOnly: false };
}

function portRange(settings: AppSettings): PortRange {
  return { min: settings.port_min ?? 21000, max: settings.port_max ?? 21100, exclude: [UCX_PORT] };
}

export const syncthing = defineApp<SyncthingConfig, SyncthingFacts>({
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
    // Syncthing ignores dashes, spaces and case in device IDs, so duplicates are found that way too.
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

  // Spec §7 (as UCloud/Core): a restricted folder is never synchronised.
  async admit(_owner, config, { storage }) {
    for (const [index, folder] of config.folders.entries()) {
      if ((await storage.sensitivity(folder.ucloudPath)) !== null) {
        return { path: `folders[${index}].ucloudPath`, reason: restrictedReason(folder.ucloudPath) };
      }
    }
    return null;
  },

  async observe({ owner, jobId, config, pod }, { storage, ports }) {
    const folders: SyncthingFolderAccess[] = [];
    const restricted: string[] = [];
    // Each drive's metadata read once, however many folders are on it.
    const access = await storage.accessAll(owner, config.folders.map((folder) => folder.ucloudPath));
    for (const [index, folder] of config.folders.entries()) {
      const found = access[index]!;
      if (found.sensitivity !== undefined) {
        restricted.push(folder.ucloudPath);
        continue;
      }
      // Spec §7: accessible means the owner may write it; the rest is left out of what it runs with.
      if (found.access === "write") folders.push({ ...found, id: folderId(folder), path: folder.path });
    }
    // The port a pod was started with is the one its job holds (prepareStart claimed it for that
    // pod): no read (issue 13: a resync of an unchanged record costs Redis 2 reads). Without a
    // pod nothing uses it before prepareStart claims it.
    const annotated = Number(pod?.metadata?.annotations?.[SYNCTHING_ANNOTATIONS.port]);
    const port = !pod ? null : Number.isInteger(annotated) && annotated > 0 ? annotated : await ports.portOf(PORT_POOL, jobId);
    return { folders, restricted, stateFolder: await storage.serviceFolder(owner, stateFolderName(owner)), port };
  },
  // A folder marked restricted after it was configured goes from the configuration (as UCloud's
  // sensitivity reconciler does), with a new ETag, so the pod restarts without it.
  prune({ config, facts }) {
    if (facts.restricted.length === 0) return null;
    const gone = new Set(facts.restricted);
    return {
      config: { ...config, folders: config.folders.filter((folder) => !gone.has(folder.ucloudPath)) },
      warnings: facts.restricted.map((path) => `${path} was removed: ${restrictedReason(path)}`),
    };
  },
  shouldRun: ({ config, facts }) => facts.folders.length > 0 && config.devices.length > 0,
  // A change of folder access (a drive locked, a member removed) must restart the pod.
  podMatches: (pod, { facts }) => pod.metadata?.annotations?.[SYNCTHING_ANNOTATIONS.folders] === foldersHash(facts.folders),

  async prepareStart(context, { storage, ports }) {
    const { settings, facts, jobId, config } = context;
    const range = portRange(settings);
    facts.port = await ports.allocate(PORT_POOL, jobId, range);
    if (facts.port === null) {
      return `No free Syncthing port: every port in [${range.min}, ${range.max}) is taken. Widen [apps.syncthing] port_min/port_max.`;
    }
    // What the container reads at start: the folders it may use (ids filled in), the devices.
    const runtimeConfig = {
      folders: facts.folders.map(({ id, ucloudPath, path }) => ({ id, ucloudPath, ...(path === undefined ? {} : { path }) })),
      devices: config.devices,
    };
    await storage.writeServiceFiles(context.owner, stateFolderName(context.owner), {
      "ucloud_config.json": `${JSON.stringify(runtimeConfig, null, 2)}\n`,
      "job_id.txt": `${jobId}\n`,
    });
    return null;
  },
  release: (jobId, { ports }) => ports.release(PORT_POOL, jobId),

  mutatePod(pod, { settings, facts, filesystem }) {
    const spec = pod.spec!;
    const container = spec.containers[0]!;
    const port = facts.port!;
    container.image = `${settings.image}:${settings.image_version}`;
    container.env = [
      { name: "SYNCTHING_PORT", value: String(port) },
      { name: "SYNCTHING_RELAYS", value: String(settings.relays ?? true) },
      { name: "STATE_DIR", value: STATE_MOUNT },
    ];
    container.resources = { requests: { cpu: "400m", memory: "2000000000" } };
    // Spec §7, §10: every mount is a subPath of the one storage volume, as UCloud mounts them.
    spec.volumes = [filesystem];
    container.volumeMounts = [filesystemMount(filesystem, facts.stateFolder.subPath, STATE_MOUNT)];
    for (const [index, folder] of facts.folders.entries()) {
      const mountPath = `/work/${index}`;
      container.volumeMounts.push(filesystemMount(filesystem, folder.subPath, mountPath));
      // The container finds each folder through f<id> (as UCloud's syncthing-go does).
      if (/^[A-Za-z_.-][A-Za-z0-9_.-]*$/.test(`f${folder.id}`)) container.env.push({ name: `f${folder.id}`, value: mountPath });
    }
    container.ports = [
      { name: "syncthing", containerPort: port, protocol: "TCP" },
      { name: "ucx", containerPort: UCX_PORT, protocol: "TCP" },
    ];
    pod.metadata!.annotations = {
      ...pod.metadata!.annotations,
      [SYNCTHING_ANNOTATIONS.port]: String(port),
      [SYNCTHING_ANNOTATIONS.folders]: foldersHash(facts.folders),
      [SYNCTHING_ANNOTATIONS.ucxVersion]: "1",
    };
  },
  mutateService: () => {},
  mutateNetworkPolicy(policy, { facts }) {
    // Devices connect from anywhere: to the Syncthing port, and to UCX.
    policy.spec!.ingress = [
      ...(policy.spec!.ingress ?? []),
      {
        _from: [{ ipBlock: { cidr: "0.0.0.0/0" } }],
        ports: [
          { protocol: "TCP", port: facts.port! },
          { protocol: "TCP", port: UCX_PORT },
        ],
      },
    ];
  },
  extraServices: ({ jobId, settings, facts }) => [
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: `j-${jobId}-syncthing`, labels: { "ucloud.dk/jobId": jobId } },
      spec: {
        type: "ClusterIP",
        externalIPs: [settings.ip_address ?? "127.0.0.1"],
        ports: [{ name: "syncthing", protocol: "TCP", port: facts.port!, targetPort: facts.port! }],
        selector: { "ucloud.dk/jobId": jobId },
      },
    },
  ],
  recheckAfter: () => null,
  // Spec §7: a reset wipes the state folder (devices, keys, Syncthing's own state), not user data.
  async reset(owner, { storage }) {
    await storage.wipeServiceFolder(owner, stateFolderName(owner));
  },

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
