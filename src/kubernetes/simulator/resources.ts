// The three kinds the simulator serves (pods, services, network policies): where they live in
// the API, what the server fills in when one is created or replaced, which names and field
// selectors are valid, and the columns `kubectl get` prints. Everything kind-specific is here;
// the store and the HTTP layer are generic. Imports ./objects.ts, ./status.ts, ./tables.ts.

import {
  containersOf,
  containerStatusesOf,
  isRecord,
  type KubeObject,
  type ObjectMeta,
} from "./objects.ts";
import { KubeStatusError } from "./status.ts";
import { age, ageColumn, nameColumn, type TablePrinter } from "./tables.ts";

/** Hands out addresses for pods and services; unique per simulator instance. */
export class AddressPool {
  private podCount = 0;
  private serviceCount = 0;

  podIp(): string {
    return address("10.244", ++this.podCount);
  }

  clusterIp(): string {
    return address("10.96", ++this.serviceCount);
  }
}

const address = (prefix: string, count: number) => `${prefix}.${Math.floor(count / 250) % 250}.${(count % 250) + 1}`;

export interface ResourceType {
  /** The path segment, and what Status details call the kind. */
  plural: string;
  singular: string;
  kind: string;
  group: string;
  apiVersion: string;
  shortNames: string[];
  /** Only pods are deleted gracefully (deletionTimestamp first, gone later). */
  gracefulDeletion: boolean;
  /** Whether DELETE answers with a Status (as for network policies) instead of the object. */
  deleteAnswersStatus: boolean;
  fieldSelectors: readonly string[];
  validName: RegExp;
  table: TablePrinter;
  /** Fills in what the server defaults on create; may reject the object (422 Invalid). */
  prepareNew(object: KubeObject, addresses: AddressPool): void;
  /** On replace: keeps what clients cannot change (a pod's status, a service's cluster IP). */
  carryOver(existing: KubeObject, replacement: KubeObject): void;
}

const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^(?=.{1,63}$)[a-z]([-a-z0-9]*[a-z0-9])?$/;
const METADATA_FIELDS = ["metadata.name", "metadata.namespace"] as const;

export const SIMULATED_NODE = "simulator";

const pods: ResourceType = {
  plural: "pods",
  singular: "pod",
  kind: "Pod",
  group: "",
  apiVersion: "v1",
  shortNames: ["po"],
  gracefulDeletion: true,
  deleteAnswersStatus: false,
  fieldSelectors: [
    ...METADATA_FIELDS,
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
  ],
  validName: DNS1123_SUBDOMAIN,
  prepareNew(pod) {
    const containers = containersOf(pod);
    if (containers.length === 0) throw invalid(pod, "spec.containers: Required value");
    containers.forEach((container, index) => {
      if (!container.name) throw invalid(pod, `spec.containers[${index}].name: Required value`);
      if (!container.image) throw invalid(pod, `spec.containers[${index}].image: Required value`);
    });
    const spec = pod.spec!;
    spec.restartPolicy ??= "Always";
    spec.terminationGracePeriodSeconds ??= 30;
    spec.dnsPolicy ??= "ClusterFirst";
    spec.schedulerName ??= "default-scheduler";
    // Every pod is scheduled at once onto the one simulated node, whatever its nodeSelector.
    spec.nodeName ??= SIMULATED_NODE;
    pod.status = {
      phase: "Pending",
      conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: pod.metadata.creationTimestamp }],
      containerStatuses: containers.map((container) => ({
        name: container.name,
        image: container.image,
        imageID: "",
        ready: false,
        started: false,
        restartCount: 0,
        state: { waiting: { reason: "ContainerCreating" } },
      })),
      qosClass: "BestEffort",
    };
  },
  carryOver(existing, replacement) {
    replacement.status = existing.status;
    if (replacement.spec) replacement.spec.nodeName = existing.spec?.nodeName;
  },
  table: {
    columns: [
      nameColumn,
      { name: "Ready", type: "string", format: "", description: "The aggregate readiness state of this pod for accepting traffic.", priority: 0 },
      { name: "Status", type: "string", format: "", description: "The aggregate status of the containers in this pod.", priority: 0 },
      { name: "Restarts", type: "integer", format: "", description: "The number of times the containers in this pod have been restarted.", priority: 0 },
      ageColumn,
      { name: "IP", type: "string", format: "", description: "The IP address assigned to this pod.", priority: 1 },
      { name: "Node", type: "string", format: "", description: "The node this pod is assigned to.", priority: 1 },
    ],
    cells(pod, now) {
      const statuses = containerStatusesOf(pod);
      const ready = statuses.filter((status) => status.ready).length;
      const restarts = statuses.reduce((sum, status) => sum + (status.restartCount ?? 0), 0);
      return [
        pod.metadata.name,
        `${ready}/${containersOf(pod).length}`,
        podStatusText(pod),
        restarts,
        age(pod, now),
        (pod.status?.podIP as string | undefined) ?? "<none>",
        (pod.spec?.nodeName as string | undefined) ?? "<none>",
      ];
    },
  },
};

/** What kubectl shows in the Status column: a waiting reason beats the phase, Terminating beats all. */
function podStatusText(pod: KubeObject): string {
  if (pod.metadata.deletionTimestamp) return "Terminating";
  for (const status of containerStatusesOf(pod)) {
    const reason = status.state?.waiting?.reason ?? status.state?.terminated?.reason;
    if (reason) return reason;
  }
  return String(pod.status?.reason ?? pod.status?.phase ?? "Unknown");
}

const services: ResourceType = {
  plural: "services",
  singular: "service",
  kind: "Service",
  group: "",
  apiVersion: "v1",
  shortNames: ["svc"],
  gracefulDeletion: false,
  deleteAnswersStatus: false,
  fieldSelectors: METADATA_FIELDS,
  validName: DNS1035_LABEL,
  prepareNew(service, addresses) {
    const spec = service.spec!;
    spec.type ??= "ClusterIP";
    // "None" makes a headless service: no virtual IP, DNS answers with the pods' addresses.
    spec.clusterIP ??= addresses.clusterIp();
    spec.clusterIPs ??= [spec.clusterIP];
    spec.sessionAffinity ??= "None";
    spec.ipFamilies ??= ["IPv4"];
    spec.ipFamilyPolicy ??= "SingleStack";
    spec.internalTrafficPolicy ??= "Cluster";
    if (Array.isArray(spec.ports)) {
      spec.ports = spec.ports.map((port: unknown) =>
        isRecord(port) ? { protocol: "TCP", targetPort: port.port, ...port } : port,
      );
    }
    service.status = { loadBalancer: {} };
  },
  carryOver(existing, replacement) {
    const before = existing.spec?.clusterIP;
    const after = replacement.spec?.clusterIP;
    if (after !== undefined && after !== "" && after !== before) {
      throw invalid(replacement, `spec.clusterIPs[0]: Invalid value: ${JSON.stringify(after)}: may not change once set`);
    }
    replacement.spec!.clusterIP = before;
    replacement.spec!.clusterIPs = existing.spec?.clusterIPs;
    replacement.status = existing.status;
  },
  table: {
    columns: [
      nameColumn,
      { name: "Type", type: "string", format: "", description: "The type of the service.", priority: 0 },
      { name: "Cluster-IP", type: "string", format: "", description: "The IP address of the service.", priority: 0 },
      { name: "External-IP", type: "string", format: "", description: "External IP addresses of the service.", priority: 0 },
      { name: "Port(s)", type: "string", format: "", description: "The ports the service exposes.", priority: 0 },
      ageColumn,
      { name: "Selector", type: "string", format: "", description: "The pods the service sends traffic to.", priority: 1 },
    ],
    cells(service, now) {
      const spec = service.spec ?? {};
      const ports = Array.isArray(spec.ports) ? (spec.ports as { port?: number; nodePort?: number; protocol?: string }[]) : [];
      const selector = isRecord(spec.selector) ? Object.entries(spec.selector).map(([k, v]) => `${k}=${v}`) : [];
      return [
        service.metadata.name,
        spec.type ?? "ClusterIP",
        spec.clusterIP ?? "<none>",
        externalIpText(service),
        ports.length === 0 ? "<none>" : ports.map((port) => `${port.port}${port.nodePort ? `:${port.nodePort}` : ""}/${port.protocol ?? "TCP"}`).join(","),
        age(service, now),
        selector.length === 0 ? "<none>" : selector.join(","),
      ];
    },
  },
};

/** kubectl's External-IP column (Kubernetes' printers.go, getServiceExternalIP). */
function externalIpText(service: KubeObject): string {
  const spec = service.spec ?? {};
  const externalIPs = Array.isArray(spec.externalIPs) ? (spec.externalIPs as string[]) : [];
  switch (spec.type ?? "ClusterIP") {
    case "ExternalName":
      return String(spec.externalName ?? "<none>");
    case "LoadBalancer": {
      const ingress = (service.status?.loadBalancer as { ingress?: { ip?: string; hostname?: string }[] } | undefined)?.ingress ?? [];
      const addresses = [...ingress.map((entry) => entry.ip ?? entry.hostname ?? "").filter(Boolean), ...externalIPs];
      return addresses.length === 0 ? "<pending>" : addresses.join(",");
    }
    default:
      return externalIPs.length === 0 ? "<none>" : externalIPs.join(",");
  }
}

const networkPolicies: ResourceType = {
  plural: "networkpolicies",
  singular: "networkpolicy",
  kind: "NetworkPolicy",
  group: "networking.k8s.io",
  apiVersion: "networking.k8s.io/v1",
  shortNames: ["netpol"],
  gracefulDeletion: false,
  deleteAnswersStatus: true,
  fieldSelectors: METADATA_FIELDS,
  validName: DNS1123_SUBDOMAIN,
  prepareNew(policy) {
    const spec = policy.spec!;
    spec.podSelector ??= {};
    // As Kubernetes defaults it: Ingress always, Egress when egress rules are given.
    spec.policyTypes ??= spec.egress === undefined ? ["Ingress"] : ["Ingress", "Egress"];
  },
  carryOver() {},
  table: {
    columns: [
      nameColumn,
      { name: "Pod-Selector", type: "string", format: "", description: "The pods this policy applies to.", priority: 0 },
      ageColumn,
    ],
    cells(policy, now) {
      return [policy.metadata.name, formatLabelSelector(policy.spec?.podSelector), age(policy, now)];
    },
  },
};

/** A LabelSelector object as kubectl prints it: `a=b,c in (d,e)`, or `<none>` when it selects all. */
function formatLabelSelector(selector: unknown): string {
  if (!isRecord(selector)) return "<none>";
  const parts = Object.entries(isRecord(selector.matchLabels) ? selector.matchLabels : {}).map(([k, v]) => `${k}=${v}`);
  const expressions = Array.isArray(selector.matchExpressions) ? selector.matchExpressions : [];
  for (const expression of expressions as { key: string; operator: string; values?: string[] }[]) {
    const values = `(${(expression.values ?? []).join(",")})`;
    switch (expression.operator) {
      case "In":
        parts.push(`${expression.key} in ${values}`);
        break;
      case "NotIn":
        parts.push(`${expression.key} notin ${values}`);
        break;
      case "Exists":
        parts.push(expression.key);
        break;
      case "DoesNotExist":
        parts.push(`!${expression.key}`);
        break;
    }
  }
  return parts.length === 0 ? "<none>" : parts.join(",");
}

export const RESOURCE_TYPES: readonly ResourceType[] = [pods, services, networkPolicies];

/** The resource type at `/api/v1/<plural>` (group "") or `/apis/<group>/v1/<plural>`. */
export function resourceType(group: string, plural: string): ResourceType | undefined {
  return RESOURCE_TYPES.find((type) => type.group === group && type.plural === plural);
}

export function invalid(object: { kind?: string; metadata?: ObjectMeta }, why: string): KubeStatusError {
  const name = object.metadata?.name ?? object.metadata?.generateName ?? "";
  return new KubeStatusError("Invalid", `${object.kind} "${name}" is invalid: ${why}`, {
    name,
    kind: object.kind,
  });
}
