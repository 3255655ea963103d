// The discovery documents kubectl reads before anything else (`/version`, `/api`, `/apis`,
// `/api/v1`, `/apis/networking.k8s.io/v1`) and the synthetic Namespace objects: namespaces are
// not stored, every name exists. Imports ./objects.ts, ./resources.ts, ./tables.ts.

import { type KubeObject, timestamp } from "./objects.ts";
import { RESOURCE_TYPES } from "./resources.ts";
import { age, ageColumn, nameColumn, type TablePrinter } from "./tables.ts";

/** The Kubernetes version the simulator claims; kubectl and client-node accept any recent one. */
export const SIMULATED_VERSION = { major: "1", minor: "32", gitVersion: "v1.32.0" };

export function versionInfo() {
  return {
    ...SIMULATED_VERSION,
    gitCommit: "0000000000000000000000000000000000000000",
    gitTreeState: "clean",
    buildDate: "2024-12-11T00:00:00Z",
    goVersion: "go1.23.0",
    compiler: "gc",
    platform: "linux/amd64",
  };
}

export function apiVersions(serverAddress: string) {
  return {
    kind: "APIVersions",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
  };
}

const GROUPS = [...new Set(RESOURCE_TYPES.map((type) => type.group).filter((group) => group !== ""))];

function apiGroup(group: string) {
  const version = { groupVersion: `${group}/v1`, version: "v1" };
  return { name: group, versions: [version], preferredVersion: version };
}

export function apiGroupList() {
  return { kind: "APIGroupList", apiVersion: "v1", groups: GROUPS.map(apiGroup) };
}

/** `/apis/<group>`, or undefined for a group the simulator does not serve. */
export function apiGroupDocument(group: string) {
  return GROUPS.includes(group) ? { kind: "APIGroup", apiVersion: "v1", ...apiGroup(group) } : undefined;
}

const VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"];
/** Pods and services are in kubectl's `get all`; network policies are not, as in Kubernetes. */
const IN_CATEGORY_ALL = new Set(["pods", "services"]);

/** `/api/v1` (group "") or `/apis/<group>/v1`, or undefined for a group the simulator does not serve. */
export function apiResourceList(group: string) {
  if (group !== "" && !GROUPS.includes(group)) return undefined;
  const resources = RESOURCE_TYPES.filter((type) => type.group === group).map((type) => ({
    name: type.plural,
    singularName: type.singular,
    namespaced: true,
    kind: type.kind,
    verbs: VERBS,
    shortNames: type.shortNames,
    ...(IN_CATEGORY_ALL.has(type.plural) ? { categories: ["all"] } : {}),
  }));
  if (group === "") {
    resources.push({
      name: "namespaces",
      singularName: "namespace",
      namespaced: false,
      kind: "Namespace",
      verbs: ["get", "list"],
      shortNames: ["ns"],
    });
  }
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion: group === "" ? "v1" : `${group}/v1`, resources };
}

/** Synthetic namespaces: Active, created when the simulator started, with a uid stable per name. */
export class Namespaces {
  private readonly uids = new Map<string, string>();
  private readonly createdAt = timestamp();

  get(name: string): KubeObject {
    let uid = this.uids.get(name);
    if (!uid) {
      uid = crypto.randomUUID();
      this.uids.set(name, uid);
    }
    // Cluster-scoped: the metadata has no namespace, unlike the KubeObjects that are stored.
    const metadata = {
      name,
      uid,
      resourceVersion: "1",
      creationTimestamp: this.createdAt,
      labels: { "kubernetes.io/metadata.name": name },
    } as unknown as KubeObject["metadata"];
    return {
      apiVersion: "v1",
      kind: "Namespace",
      metadata,
      spec: { finalizers: ["kubernetes"] },
      status: { phase: "Active" },
    };
  }

  readonly table: TablePrinter = {
    columns: [
      nameColumn,
      { name: "Status", type: "string", format: "", description: "The phase of the namespace.", priority: 0 },
      ageColumn,
    ],
    cells: (namespace, now) => [namespace.metadata.name, namespace.status?.phase, age(namespace, now)],
  };
}
