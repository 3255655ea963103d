// The generic Kubernetes objects of a record's job (spec §6), before the app shapes them:
// pod `j-<jobId>-job-0`, headless service `j-<jobId>` and network policy `policy-<jobId>`.
// Imports Kubernetes object types and src/domain/app.ts only.

import { createHash } from "node:crypto";
import { resolve } from "node:path";
import type { V1NetworkPolicy, V1OwnerReference, V1Pod, V1Service, V1Volume } from "@kubernetes/client-node";
import type { IntegratedApp, PodContext } from "../domain/app.ts";

export const LABELS = {
  jobId: "ucloud.dk/jobId",
  rank: "ucloud.dk/rank",
  /** Ours, not UCloud's: lets the worker watch exactly the pods, services and policies of integrated apps. */
  app: "ucloud.dk/iapp-name",
  /** Ours: a hash of the record a pod belongs to, so a record finds pods of its earlier jobs too. */
  owner: "ucloud.dk/iapp-owner",
} as const;

/** A label value for a record (`<app>:<createdBy>[:<project>]` may hold characters labels may not). */
export function ownerLabel(recordTag: string): string {
  return createHash("sha256").update(recordTag).digest("hex").slice(0, 32);
}

export const ANNOTATIONS = {
  etag: "ucloud.dk/iapp-etag",
  name: "ucloud.dk/iapp-name",
  version: "ucloud.dk/iapp-version",
  /** Ours: the record (`<app>:<createdBy>[:<project>]`) a pod belongs to, so its events find it. */
  owner: "ucloud.dk/iapp-owner",
} as const;

/** The name of the storage root's volume in every pod, as UCloud names it. */
export const FILESYSTEM_VOLUME = "ucloud-filesystem";

/**
 * The storage root as a pod volume (spec §10): a PersistentVolumeClaim when one is configured,
 * else a hostPath of the root as the nodes see it. Apps mount folders from it by subPath only.
 */
export function filesystemVolume(storage: { root: string; host_path: string; volume_claim: string }): V1Volume {
  if (storage.volume_claim !== "") return { name: FILESYSTEM_VOLUME, persistentVolumeClaim: { claimName: storage.volume_claim } };
  return { name: FILESYSTEM_VOLUME, hostPath: { path: storage.host_path !== "" ? storage.host_path : resolve(storage.root), type: "Directory" } };
}

export const podName = (jobId: string) => `j-${jobId}-job-0`;
export const serviceName = (jobId: string) => `j-${jobId}`;
export const policyName = (jobId: string) => `policy-${jobId}`;

export function buildPod(app: IntegratedApp<unknown>, context: PodContext<unknown>, recordTag: string): V1Pod {
  const version = app.version(context.settings);
  const pod: V1Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName(context.jobId),
      labels: { [LABELS.jobId]: context.jobId, [LABELS.rank]: "0", [LABELS.app]: app.name, [LABELS.owner]: ownerLabel(recordTag) },
      annotations: {
        [ANNOTATIONS.etag]: context.etag,
        [ANNOTATIONS.name]: app.name,
        ...(version === undefined ? {} : { [ANNOTATIONS.version]: version }),
        [ANNOTATIONS.owner]: recordTag,
      },
    },
    spec: {
      restartPolicy: "Never",
      containers: [{ name: "user-job", image: `${context.settings.image}:${context.settings.image_version}` }],
      nodeSelector: { "ucloud.dk/machine": app.name },
    },
  };
  app.mutatePod(pod, context);
  return pod;
}

function ownedBy(pod: V1Pod): V1OwnerReference[] {
  return [{ apiVersion: "v1", kind: "Pod", name: pod.metadata!.name!, uid: pod.metadata!.uid!, blockOwnerDeletion: true }];
}

/** Headless: it gives the job's pods DNS names; the app may add ports. */
export function buildService(app: IntegratedApp<unknown>, context: PodContext<unknown>, pod: V1Pod): V1Service {
  const service: V1Service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: serviceName(context.jobId), labels: companionLabels(app, context), ownerReferences: ownedBy(pod) },
    spec: { clusterIP: "None", selector: { [LABELS.jobId]: context.jobId } },
  };
  app.mutateService(service, context);
  return service;
}

/** Pods of one job may talk to each other; the app adds what else may reach it. */
export function buildNetworkPolicy(app: IntegratedApp<unknown>, context: PodContext<unknown>, pod: V1Pod): V1NetworkPolicy {
  const sameJob = { podSelector: { matchLabels: { [LABELS.jobId]: context.jobId } } };
  const policy: V1NetworkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: policyName(context.jobId), labels: companionLabels(app, context), ownerReferences: ownedBy(pod) },
    spec: {
      podSelector: { matchLabels: { [LABELS.jobId]: context.jobId } },
      policyTypes: ["Ingress"],
      // The client's model names the field `_from`; it is sent as `from`.
      ingress: [{ _from: [sameJob] }],
    },
  };
  app.mutateNetworkPolicy(policy, context);
  return policy;
}

/** An app's extra service, owned by the pod like the job's own, and labelled like it. */
export function ownedService(service: V1Service, pod: V1Pod): V1Service {
  const labels = { ...service.metadata?.labels, [LABELS.app]: pod.metadata!.labels![LABELS.app]! };
  return { ...service, metadata: { ...service.metadata, labels, ownerReferences: ownedBy(pod) } };
}

/** A pod's service and policy carry the job's id and the app's name (what the worker's caches select by). */
function companionLabels(app: IntegratedApp<unknown>, context: PodContext<unknown>): Record<string, string> {
  return { [LABELS.jobId]: context.jobId, [LABELS.app]: app.name };
}

/** Whether an object is owned by this very pod (not by an earlier pod of the same name). */
export function ownedByPod(object: { metadata?: { ownerReferences?: V1OwnerReference[] } }, pod: V1Pod): boolean {
  return (object.metadata?.ownerReferences ?? []).some((ref) => ref.uid === pod.metadata?.uid);
}
