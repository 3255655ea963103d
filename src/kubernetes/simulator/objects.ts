// The shape of stored Kubernetes objects as the simulator sees them: only the fields it reads
// or writes are typed, everything else a client sends is kept as it came. Imports nothing.

export interface OwnerReference {
  apiVersion?: string;
  kind?: string;
  name?: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  [field: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { name: string; namespace: string; uid: string; resourceVersion: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface Container {
  name?: string;
  image?: string;
  [field: string]: unknown;
}

export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  state?: { waiting?: { reason?: string }; running?: { startedAt?: string }; terminated?: { reason?: string } };
  [field: string]: unknown;
}

/** Kubernetes timestamps are RFC 3339 in whole seconds. */
export function timestamp(at: Date = new Date()): string {
  return at.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function containersOf(pod: KubeObject): Container[] {
  const containers = pod.spec?.containers;
  return Array.isArray(containers) ? (containers as Container[]) : [];
}

export function containerStatusesOf(pod: KubeObject): ContainerStatus[] {
  const statuses = pod.status?.containerStatuses;
  return Array.isArray(statuses) ? (statuses as ContainerStatus[]) : [];
}
