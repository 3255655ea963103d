// The simulated cluster's state, in memory: the stored objects, the one global resourceVersion,
// a bounded log of change events for watches to resume from, and what the cluster does on its
// own (pods start after a delay, terminating pods go after their grace, owner-reference garbage
// collection). Every change goes through `commit`, which bumps the resourceVersion, logs the
// event and tells the watchers, in that order and in one synchronous step, so a watch that
// lists and subscribes in one step can neither miss nor repeat an event.
// Imports the rest of src/kubernetes/simulator, nothing outside it.

import {
  containersOf,
  isRecord,
  type KubeObject,
  type ObjectMeta,
  type OwnerReference,
  timestamp,
} from "./objects.ts";
import { AddressPool, invalid, RESOURCE_TYPES, type ResourceType } from "./resources.ts";
import { badRequest, KubeStatusError } from "./status.ts";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

export interface ChangeEvent {
  resourceVersion: number;
  type: EventType;
  resource: ResourceType;
  object: KubeObject;
  /** The object before a MODIFIED, so that a selective watch can tell "started/stopped matching". */
  previous?: KubeObject;
}

export type PropagationPolicy = "Background" | "Foreground" | "Orphan";

export interface DeleteOptions {
  /** Pods only; undefined means the pod's `terminationGracePeriodSeconds` (default 30). */
  gracePeriodSeconds?: number;
  propagationPolicy: PropagationPolicy;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface DeleteResult {
  object: KubeObject;
  /** False while a pod is terminating: it is still there, with a deletionTimestamp. */
  gone: boolean;
}

export interface StateOptions {
  /** How long a pod stays Pending; also how long a gracefully deleted pod takes to stop (at most its grace). */
  startDelayMs: number;
  /** How many change events a watch can resume from; older resourceVersions get 410 Expired. */
  eventLogCapacity: number;
}

const SERVER_SET_METADATA = [
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "selfLink",
  "managedFields",
] as const;

export class ClusterState {
  readonly addresses = new AddressPool();
  private readonly objects = new Map<ResourceType, Map<string, KubeObject>>(
    RESOURCE_TYPES.map((type) => [type, new Map()]),
  );
  /**
   * `<label>=<value>` → keys of the objects that carry it, per kind: a list by label reads the
   * objects that match, not all of them (the worker lists by label once per informer start, and
   * kubectl and tests do often; at 100,000 pods a scan per list would be the busiest thing here).
   */
  private readonly byLabel = new Map<ResourceType, Map<string, Set<string>>>(RESOURCE_TYPES.map((type) => [type, new Map()]));
  /**
   * Every object by uid, and the objects that name each uid as an owner: the garbage collector
   * finds owners and dependents here (a scan of every object per service or policy created made
   * the k-th pod cost k: 50 s of CPU to bring back 10,000 pods).
   */
  private readonly byUid = new Map<string, [ResourceType, string]>();
  private readonly dependents = new Map<string, Map<string, [ResourceType, string]>>();
  private version = 0;
  private readonly log: ChangeEvent[] = [];
  /** Events up to this resourceVersion have been dropped from the log. */
  private forgottenUpTo = 0;
  private readonly listeners = new Set<(event: ChangeEvent) => void>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(private readonly options: StateOptions) {}

  /** The resourceVersion of the latest change, as lists report it. */
  get resourceVersion(): string {
    return String(this.version);
  }

  get(type: ResourceType, namespace: string, name: string): KubeObject {
    const object = this.lookup(type, namespace, name);
    if (!object) throw notFound(type, name);
    return object;
  }

  /**
   * Objects of one namespace (or all, for null) that `matches`, ordered by namespace and name.
   * `required`: label equalities every match has (from the selector), to start from the index.
   */
  list(type: ResourceType, namespace: string | null, matches: (object: KubeObject) => boolean, required: [string, string][] = []): KubeObject[] {
    const objects = this.objectsOf(type);
    let candidates: Iterable<KubeObject> = objects.values();
    for (const [label, value] of required) {
      const keys = this.byLabel.get(type)!.get(`${label}=${value}`);
      if (!keys) return [];
      if (keys.size < (Array.isArray(candidates) ? candidates.length : objects.size)) candidates = [...keys].map((k) => objects.get(k)!);
    }
    // Ordered as etcd orders keys (by their bytes; names are ASCII), as a Kubernetes list is:
    // a plain comparison, since localeCompare made a list of 100,000 pods cost seconds.
    return [...candidates]
      .filter((object) => (namespace === null || object.metadata.namespace === namespace) && matches(object))
      .map((object) => [key(object.metadata.namespace, object.metadata.name), object] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, object]) => object);
  }

  /** Namespaces exist implicitly: "default" and every one that holds an object. */
  namespaces(): string[] {
    const names = new Set(["default"]);
    for (const objects of this.objects.values()) {
      for (const object of objects.values()) names.add(object.metadata.namespace);
    }
    return [...names].sort();
  }

  create(type: ResourceType, namespace: string, body: unknown): KubeObject {
    const object = fromRequestBody(type, namespace, body);
    const metadata = object.metadata as ObjectMeta;
    for (const field of SERVER_SET_METADATA) delete metadata[field];
    if (!metadata.name && metadata.generateName) metadata.name = metadata.generateName + randomSuffix();
    if (!metadata.name) throw badRequest("name or generateName is required");
    if (!type.validName.test(metadata.name)) {
      throw invalid(object, `metadata.name: Invalid value: ${JSON.stringify(metadata.name)}: not a valid ${type.singular} name`);
    }
    if (this.lookup(type, namespace, metadata.name)) {
      throw new KubeStatusError("AlreadyExists", `${qualified(type)} "${metadata.name}" already exists`, detailsOf(type, metadata.name));
    }
    metadata.namespace = namespace;
    metadata.uid = crypto.randomUUID();
    metadata.creationTimestamp = timestamp();
    type.prepareNew(object, this.addresses);
    this.commit(type, "ADDED", object);

    if (type.gracefulDeletion) this.later(this.options.startDelayMs, () => this.startPod(type, object));
    // An object whose owners are already gone is garbage as soon as the collector looks at it.
    if (object.metadata.ownerReferences?.length) this.later(0, () => this.collectIfOrphaned(type, object));
    return object;
  }

  /** PUT: the whole object is replaced; what clients cannot change is carried over. */
  replace(type: ResourceType, namespace: string, name: string, body: unknown): KubeObject {
    const existing = this.get(type, namespace, name);
    const replacement = fromRequestBody(type, namespace, body);
    const metadata = replacement.metadata as ObjectMeta;
    if (metadata.name !== name) {
      throw badRequest(`the name of the object (${metadata.name ?? ""}) does not match the name on the URL (${name})`);
    }
    if (metadata.resourceVersion && metadata.resourceVersion !== existing.metadata.resourceVersion) {
      throw conflict(type, name, "the object has been modified; please apply your changes to the latest version and try again");
    }
    for (const field of SERVER_SET_METADATA) delete metadata[field];
    const { uid, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds } = existing.metadata;
    Object.assign(metadata, { namespace, uid, creationTimestamp });
    if (deletionTimestamp) Object.assign(metadata, { deletionTimestamp, deletionGracePeriodSeconds });
    type.carryOver(existing, replacement);
    replacement.metadata.resourceVersion = existing.metadata.resourceVersion;
    // As in Kubernetes, a replace that changes nothing is no change: no new resourceVersion, no event.
    if (canonical(replacement) === canonical(existing)) return existing;
    this.commit(type, "MODIFIED", replacement, existing);
    return replacement;
  }

  delete(type: ResourceType, namespace: string, name: string, options: DeleteOptions): DeleteResult {
    const object = this.get(type, namespace, name);
    const { uid, resourceVersion } = options.preconditions ?? {};
    if (uid !== undefined && uid !== object.metadata.uid) {
      throw conflict(type, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${object.metadata.uid}`);
    }
    if (resourceVersion !== undefined && resourceVersion !== object.metadata.resourceVersion) {
      throw conflict(type, name, `Precondition failed: ResourceVersion in precondition: ${resourceVersion}, ResourceVersion in object meta: ${object.metadata.resourceVersion}`);
    }
    const grace = type.gracefulDeletion
      ? (options.gracePeriodSeconds ?? Number(object.spec?.terminationGracePeriodSeconds ?? 30))
      : 0;
    if (grace <= 0) return { object: this.remove(type, object, options.propagationPolicy), gone: true };
    // Already terminating: a second delete (other than a forced one, above) changes nothing.
    if (object.metadata.deletionTimestamp) return { object, gone: false };

    const terminating = this.modify(type, object, (pod) => {
      pod.metadata.deletionTimestamp = timestamp(new Date(Date.now() + grace * 1000));
      pod.metadata.deletionGracePeriodSeconds = grace;
    });
    // Simulated containers stop promptly on SIGTERM: as fast as they started, never slower than the grace allows.
    this.later(Math.min(grace * 1000, this.options.startDelayMs), () => {
      const current = this.lookup(type, namespace, name);
      if (current?.metadata.uid === terminating.metadata.uid) this.remove(type, current, options.propagationPolicy);
    });
    return { object: terminating, gone: false };
  }

  /** The logged events after `resourceVersion`; 410 Expired when some of them were dropped. */
  eventsAfter(resourceVersion: number): ChangeEvent[] {
    // A version this server never reached: its client saw an earlier life of it (the simulator
    // starts empty each time). Expired makes a watcher list again, as after a long disconnect.
    if (resourceVersion > this.version) {
      throw new KubeStatusError("Expired", `resource version ${resourceVersion} is newer than this server's (${this.version}): it restarted; list again`);
    }
    if (resourceVersion < this.forgottenUpTo) {
      throw new KubeStatusError("Expired", `too old resource version: ${resourceVersion} (${this.forgottenUpTo + 1})`);
    }
    return this.log.filter((event) => event.resourceVersion > resourceVersion);
  }

  subscribe(listener: (event: ChangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops the cluster's own activity (pod starts, pending deletions). */
  close() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.listeners.clear();
  }

  private startPod(type: ResourceType, created: KubeObject) {
    const pod = this.lookup(type, created.metadata.namespace, created.metadata.name);
    if (!pod || pod.metadata.uid !== created.metadata.uid) return;
    if (pod.metadata.deletionTimestamp || pod.status?.phase !== "Pending") return;
    this.modify(type, pod, (running) => {
      const now = timestamp();
      const podIP = this.addresses.podIp();
      running.status = {
        ...running.status,
        phase: "Running",
        conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map((condition) => ({
          type: condition,
          status: "True",
          lastTransitionTime: now,
        })),
        containerStatuses: containersOf(running).map((container) => ({
          name: container.name,
          image: container.image,
          imageID: "",
          containerID: `simulator://${running.metadata.uid}/${container.name}`,
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: now } },
          lastState: {},
        })),
        startTime: now,
        hostIP: "10.0.0.1",
        hostIPs: [{ ip: "10.0.0.1" }],
        podIP,
        podIPs: [{ ip: podIP }],
      };
    });
  }

  /**
   * Removes `object` now, and deals with its dependents (objects with an owner reference to its
   * uid) as `propagation` says: Foreground deletes them first, Background on the next turn of
   * the event loop, Orphan keeps them and drops the reference.
   */
  private remove(type: ResourceType, object: KubeObject, propagation: PropagationPolicy): KubeObject {
    const { namespace, uid } = object.metadata;
    if (propagation === "Foreground") this.deleteDependents(namespace, uid, "Foreground");
    if (propagation === "Orphan") {
      for (const [dependentType, dependent] of this.dependentsOf(namespace, uid)) {
        this.modify(dependentType, dependent, (orphan) => {
          orphan.metadata.ownerReferences = orphan.metadata.ownerReferences!.filter((owner) => owner.uid !== uid);
        });
      }
    }
    const removed = structuredClone(object);
    this.commit(type, "DELETED", removed);
    // Background means what it says: the dependents go right after, not within the DELETE call.
    if (propagation === "Background") this.later(0, () => this.deleteDependents(namespace, uid, "Background"));
    return removed;
  }

  /** Deletes the dependents of `ownerUid` that have no other owner left, with their default grace. */
  private deleteDependents(namespace: string, ownerUid: string, propagation: PropagationPolicy) {
    for (const [type, dependent] of this.dependentsOf(namespace, ownerUid)) {
      const otherOwners = dependent.metadata.ownerReferences!.filter((owner) => owner.uid !== ownerUid);
      if (otherOwners.some((owner) => this.exists(namespace, owner))) continue;
      // A dependent may have gone meanwhile (deleted as the dependent of another dependent).
      if (!this.lookup(type, namespace, dependent.metadata.name)) continue;
      this.delete(type, namespace, dependent.metadata.name, { propagationPolicy: propagation });
    }
  }

  private collectIfOrphaned(type: ResourceType, created: KubeObject) {
    const object = this.lookup(type, created.metadata.namespace, created.metadata.name);
    if (!object || object.metadata.uid !== created.metadata.uid || object.metadata.deletionTimestamp) return;
    const owners = object.metadata.ownerReferences ?? [];
    if (owners.length === 0 || owners.some((owner) => this.exists(object.metadata.namespace, owner))) return;
    this.delete(type, object.metadata.namespace, object.metadata.name, { propagationPolicy: "Background" });
  }

  private dependentsOf(namespace: string, ownerUid: string): [ResourceType, KubeObject][] {
    const dependents: [ResourceType, KubeObject][] = [];
    for (const [type, objectKey] of this.dependents.get(ownerUid)?.values() ?? []) {
      const object = this.objectsOf(type).get(objectKey);
      if (object && object.metadata.namespace === namespace) dependents.push([type, object]);
    }
    return dependents;
  }

  /** Owners are found by uid, as the garbage collector does; owners live in the dependent's namespace. */
  private exists(namespace: string, owner: OwnerReference): boolean {
    const at = this.byUid.get(owner.uid);
    const object = at && this.objectsOf(at[0]).get(at[1]);
    return object !== undefined && object.metadata.namespace === namespace && object.metadata.uid === owner.uid;
  }

  /** Keeps `byUid` and `dependents` in step as the object at `objectKey` goes from `before` to `after` (undefined: none). */
  private reindexOwners(type: ResourceType, objectKey: string, before: KubeObject | undefined, after: KubeObject | undefined) {
    const entry = `${type.plural}\n${objectKey}`;
    if (before) {
      if (this.byUid.get(before.metadata.uid)?.[1] === objectKey) this.byUid.delete(before.metadata.uid);
      for (const owner of before.metadata.ownerReferences ?? []) {
        const of = this.dependents.get(owner.uid);
        of?.delete(entry);
        if (of?.size === 0) this.dependents.delete(owner.uid);
      }
    }
    if (after) {
      this.byUid.set(after.metadata.uid, [type, objectKey]);
      for (const owner of after.metadata.ownerReferences ?? []) {
        const of = this.dependents.get(owner.uid) ?? new Map<string, [ResourceType, string]>();
        this.dependents.set(owner.uid, of);
        of.set(entry, [type, objectKey]);
      }
    }
  }

  /** Copy-on-write: logged events keep the versions they were sent with. */
  private modify(type: ResourceType, object: KubeObject, change: (copy: KubeObject) => void): KubeObject {
    const copy = structuredClone(object);
    change(copy);
    this.commit(type, "MODIFIED", copy, object);
    return copy;
  }

  private commit(resource: ResourceType, type: EventType, object: KubeObject, previous?: KubeObject) {
    object.metadata.resourceVersion = String(++this.version);
    const objects = this.objectsOf(resource);
    const objectKey = key(object.metadata.namespace, object.metadata.name);
    const index = this.byLabel.get(resource)!;
    for (const [label, value] of Object.entries(objects.get(objectKey)?.metadata.labels ?? {})) {
      const keys = index.get(`${label}=${value}`);
      keys?.delete(objectKey);
      if (keys?.size === 0) index.delete(`${label}=${value}`);
    }
    this.reindexOwners(resource, objectKey, objects.get(objectKey), type === "DELETED" ? undefined : object);
    if (type === "DELETED") objects.delete(objectKey);
    else {
      objects.set(objectKey, object);
      for (const [label, value] of Object.entries(object.metadata.labels ?? {})) {
        const entry = `${label}=${value}`;
        let keys = index.get(entry);
        if (!keys) {
          keys = new Set();
          index.set(entry, keys);
        }
        keys.add(objectKey);
      }
    }

    const event: ChangeEvent = { resourceVersion: this.version, type, resource, object, previous };
    this.log.push(event);
    while (this.log.length > this.options.eventLogCapacity) this.forgottenUpTo = this.log.shift()!.resourceVersion;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A watcher that cannot take an event (its client went away) must not stop the change.
      }
    }
  }

  private later(delayMs: number, run: () => void) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, delayMs);
    this.timers.add(timer);
  }

  private lookup(type: ResourceType, namespace: string, name: string): KubeObject | undefined {
    return this.objectsOf(type).get(key(namespace, name));
  }

  private objectsOf(type: ResourceType): Map<string, KubeObject> {
    return this.objects.get(type)!;
  }
}

/** Checks a create or replace body against the URL it was sent to; answers it as a KubeObject. */
function fromRequestBody(type: ResourceType, namespace: string, body: unknown): KubeObject {
  if (!isRecord(body)) throw badRequest(`the body of the request must be a ${type.kind} object`);
  if (body.kind !== undefined && body.kind !== type.kind) {
    throw badRequest(`the kind of the object (${String(body.kind)}) does not match the kind of the resource (${type.kind})`);
  }
  if (body.apiVersion !== undefined && body.apiVersion !== type.apiVersion) {
    throw badRequest(`the apiVersion of the object (${String(body.apiVersion)}) does not match the resource (${type.apiVersion})`);
  }
  if (body.metadata !== undefined && !isRecord(body.metadata)) throw badRequest("metadata must be an object");
  if (body.spec !== undefined && !isRecord(body.spec)) throw badRequest("spec must be an object");
  const metadata = (body.metadata ?? {}) as ObjectMeta;
  if (metadata.namespace !== undefined && metadata.namespace !== "" && metadata.namespace !== namespace) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  if (metadata.ownerReferences !== undefined) {
    const owners = metadata.ownerReferences;
    if (!Array.isArray(owners) || owners.some((owner) => !isRecord(owner) || typeof owner.uid !== "string" || !owner.uid)) {
      throw invalid({ kind: type.kind, metadata }, "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty");
    }
  }
  const { apiVersion: _apiVersion, kind: _kind, metadata: _metadata, spec, ...rest } = body;
  return { apiVersion: type.apiVersion, kind: type.kind, metadata, spec: spec ?? {}, ...rest } as KubeObject;
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Five characters from Kubernetes' alphabet for generated names (no vowels, no look-alikes). */
function randomSuffix(): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  return Array.from({ length: 5 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
}

export function detailsOf(type: ResourceType, name: string) {
  return { name, ...(type.group ? { group: type.group } : {}), kind: type.plural };
}

/** "pods", "networkpolicies.networking.k8s.io": how the API server names a resource in messages. */
function qualified(type: ResourceType): string {
  return type.group ? `${type.plural}.${type.group}` : type.plural;
}

export function notFound(type: ResourceType, name: string): KubeStatusError {
  return new KubeStatusError("NotFound", `${qualified(type)} "${name}" not found`, detailsOf(type, name));
}

function conflict(type: ResourceType, name: string, why: string): KubeStatusError {
  return new KubeStatusError("Conflict", `Operation cannot be fulfilled on ${qualified(type)} "${name}": ${why}`, detailsOf(type, name));
}

/** JSON with object keys sorted, so that equal objects compare equal whatever order their keys came in. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) =>
    isRecord(field) ? Object.fromEntries(Object.entries(field).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : field,
  );
}
