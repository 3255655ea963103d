// Watch caches of the objects the worker manages, as every real controller reads them
// (client-go's shared informers, controller-runtime's cache): one informer per kind (pods,
// services, network policies) in the namespace, by the label every integrated app's objects
// carry. `@kubernetes/client-node`'s `makeInformer` lists once, then watches from that
// resourceVersion; a watch that ends or fails is started again (a 410 relists), so an object
// changed meanwhile still arrives.
//
// The reconciler reads from here and writes to the API server; what it wrote is recorded at
// once (`wrote`, `deleted`), so a second reconcile right after a create never creates twice, and
// an event older than a write never undoes it (resourceVersions are compared); the event of the
// version a write already put here changes nothing and is not passed on. `relist` lists again
// outside the watch (the resync's safety net for an event the watch never delivered): by
// metadata only when it can (`listMetadata`: names and resourceVersions), reading in full just
// the objects whose version it does not have.
// Imports @kubernetes/client-node only.

import { type KubeConfig, type KubernetesListObject, type KubernetesObject, makeInformer } from "@kubernetes/client-node";

type Listed<T extends KubernetesObject> = () => Promise<KubernetesListObject<T>>;

/**
 * Above this many objects newer than the cache in a metadata relist, one full list rather than a
 * read of each (a watch that missed that much missed a lot; a read each would be slower).
 */
const READS_PER_RELIST = 32;

export interface InformerOptions<T extends KubernetesObject> {
  /** The API path of the collection, e.g. `/api/v1/namespaces/<ns>/pods`. */
  path: string;
  list: Listed<T>;
  labelSelector: string;
  /**
   * The same list with metadata only (Kubernetes' `PartialObjectMetadataList`): what `relist`
   * uses, with `read`, when given. A server that answers it with whole objects is fine too.
   */
  listMetadata?: Listed<KubernetesObject>;
  /** One object by name, null when there is none: for what a metadata relist finds newer. */
  read?: (name: string) => Promise<T | null>;
  /** A label to index objects by (the record's owner label of pods), for `byIndex`. */
  indexLabel?: string;
  /** Every change seen (added, modified or deleted), after the cache has it, with what it had before (null: nothing). */
  onChange?: (object: T, deleted: boolean, previous: T | null) => void;
  /** A watch or list failed (it is started again after a pause). */
  onError?: (error: unknown) => void;
  /** Each (re)list or watch start: counted as a read of the API server. */
  onConnect?: () => void;
}

/** One kind's cache. `synced` once the first list is in. */
export class InformerCache<T extends KubernetesObject> {
  private readonly objects = new Map<string, T>();
  /** Objects this process deleted, by name, with the resourceVersion they were deleted at. */
  private readonly tombstones = new Map<string, number>();
  private readonly index = new Map<string, Set<string>>();
  private readonly informer;
  private stopped = false;
  private failures = 0;
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  private syncWaiters: (() => void)[] = [];
  synced = false;

  constructor(
    kubeConfig: KubeConfig,
    private readonly options: InformerOptions<T>,
  ) {
    this.informer = makeInformer<T>(
      kubeConfig,
      options.path,
      async () => {
        options.onConnect?.();
        const list = await options.list();
        // The list is the truth now: forget what it no longer holds, tombstones included.
        this.replaceAll(list.items);
        this.failures = 0;
        this.markSynced();
        return list;
      },
      options.labelSelector,
    );
    this.informer.on("add", (object) => this.seen(object, false));
    this.informer.on("update", (object) => this.seen(object, false));
    this.informer.on("delete", (object) => this.seen(object, true));
    this.informer.on("connect", () => {
      this.failures = 0;
    });
    this.informer.on("error", (error) => {
      options.onError?.(error);
      if (this.stopped) return;
      this.failures++;
      // The informer does not restart itself after an error: start it again, backing off.
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (!this.stopped) void this.informer.start().catch(() => {});
      }, Math.min(100 * 2 ** this.failures, 5000));
    });
  }

  start(): void {
    this.stopped = false;
    void this.informer.start().catch(() => {});
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.informer.stop();
    for (const wake of this.syncWaiters.splice(0)) wake();
  }

  /** Resolves once the first list is in (or the cache is stopped). */
  whenSynced(): Promise<void> {
    if (this.synced || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  get(name: string): T | null {
    return this.objects.get(name) ?? null;
  }

  /** The objects whose index label has `value`. */
  byIndex(value: string): T[] {
    return [...(this.index.get(value) ?? [])].map((name) => this.objects.get(name)!).filter(Boolean);
  }

  get size(): number {
    return this.objects.size;
  }

  /**
   * What the API server answered to a create (or a read): the cache has it before any event. An
   * event may have come first with a newer version (the pod already running): that one stays.
   */
  wrote(object: T): void {
    const name = object.metadata?.name;
    if (!name) return;
    const known = this.objects.get(name);
    const rv = version(object);
    if (known && rv !== null && (version(known) ?? 0) >= rv) return;
    this.tombstones.delete(name);
    this.put(name, object);
  }

  /** This process deleted `name`: gone from the cache, and older events about it are ignored. */
  deleted(name: string): void {
    const object = this.objects.get(name);
    this.tombstones.set(name, version(object) ?? 0);
    this.remove(name);
  }

  private seen(object: T, deleted: boolean) {
    const name = object.metadata?.name;
    if (!name) return;
    const known = this.objects.get(name);
    const rv = version(object);
    // An event older than what this process wrote or deleted: it would undo a newer state.
    if (rv !== null && known && (version(known) ?? 0) > rv) return;
    // The very version the cache has (this process's own create): nothing changed.
    if (!deleted && rv !== null && known && version(known) === rv) return;
    const tomb = this.tombstones.get(name);
    if (tomb !== undefined && rv !== null && rv <= tomb && !deleted) return;
    if (deleted) {
      this.tombstones.delete(name);
      this.remove(name);
    } else {
      if (tomb !== undefined) this.tombstones.delete(name);
      this.put(name, object);
    }
    this.options.onChange?.(object, deleted, known ?? null);
  }

  /**
   * Lists again, outside the watch, and takes in what the watch missed: objects gone (their
   * DELETED event never arrived) and newer versions. An object the cache has in a version newer
   * than the list (an event or a write that came meanwhile) stays. With `listMetadata` the list
   * carries names and resourceVersions only (a pass over 100,000 pods must not parse 100,000
   * pods: the cache has nearly all of them already), and only the objects whose version the
   * cache lacks are read in full (one full list when there are many). Answers how many objects it
   * changed; tells `onChange` nothing (whoever relists looks at the cache afterwards).
   */
  async relist(): Promise<number> {
    this.options.onConnect?.();
    const { listMetadata, read } = this.options;
    const byMetadata = listMetadata !== undefined && read !== undefined;
    const list = byMetadata ? await listMetadata() : await this.options.list();
    const partial = byMetadata && list.kind === "PartialObjectMetadataList";
    const listedAt = version(list);
    const names = new Set<string>();
    const missing = new Map<string, number | null>();
    let changed = 0;
    for (const item of list.items) {
      const name = item.metadata?.name;
      if (!name) continue;
      names.add(name);
      if (!this.wants(name, version(item))) continue;
      if (partial) {
        missing.set(name, version(item));
      } else {
        this.put(name, item as T);
        changed++;
      }
    }
    // Gone since the metadata list: what the cache has of it is older than the list, unless newer came meanwhile.
    const goneSince = (name: string, listed: number | null) => {
      const known = this.objects.get(name);
      const rv = version(known);
      if (!known || (listed !== null && rv !== null && rv > listed)) return;
      this.remove(name);
      changed++;
    };
    if (missing.size > READS_PER_RELIST) {
      const full = new Set<string>();
      for (const item of (await this.options.list()).items) {
        const name = item.metadata?.name;
        if (name) full.add(name);
        if (!name || !missing.has(name) || !this.wants(name, version(item))) continue;
        this.put(name, item);
        changed++;
      }
      for (const [name, listed] of missing) if (!full.has(name)) goneSince(name, listed);
    } else {
      for (const [name, listed] of missing) {
        const object = await read!(name);
        if (object === null) {
          goneSince(name, listed);
          continue;
        }
        if (!this.wants(name, version(object))) continue;
        this.put(name, object);
        changed++;
      }
    }
    for (const [name, known] of [...this.objects]) {
      if (names.has(name)) continue;
      const rv = version(known);
      if (listedAt !== null && rv !== null && rv > listedAt) continue;
      this.remove(name);
      changed++;
    }
    return changed;
  }

  /** Whether a version `rv` of `name` is news to the cache: newer than it has, and than this process's delete. */
  private wants(name: string, rv: number | null): boolean {
    const known = this.objects.get(name);
    if (known && rv !== null && (version(known) ?? 0) >= rv) return false;
    const tomb = this.tombstones.get(name);
    return !(tomb !== undefined && rv !== null && rv <= tomb);
  }

  private replaceAll(items: T[]) {
    const names = new Set(items.map((item) => item.metadata?.name).filter((name): name is string => !!name));
    for (const name of [...this.objects.keys()]) if (!names.has(name)) this.remove(name);
    this.tombstones.clear();
    for (const item of items) if (item.metadata?.name) this.put(item.metadata.name, item);
  }

  private put(name: string, object: T) {
    this.unindex(name);
    this.objects.set(name, object);
    const value = this.options.indexLabel ? object.metadata?.labels?.[this.options.indexLabel] : undefined;
    if (value !== undefined) {
      let names = this.index.get(value);
      if (!names) {
        names = new Set();
        this.index.set(value, names);
      }
      names.add(name);
    }
  }

  private remove(name: string) {
    this.unindex(name);
    this.objects.delete(name);
  }

  private unindex(name: string) {
    const label = this.options.indexLabel;
    const value = label ? this.objects.get(name)?.metadata?.labels?.[label] : undefined;
    if (value === undefined) return;
    const names = this.index.get(value);
    names?.delete(name);
    if (names?.size === 0) this.index.delete(value);
  }

  private markSynced() {
    this.synced = true;
    for (const wake of this.syncWaiters.splice(0)) wake();
  }
}

/** An object's resourceVersion as a number (the API server's are; opaque strings count as unknown). */
function version(object: { metadata?: { resourceVersion?: string } } | undefined): number | null {
  const rv = object?.metadata?.resourceVersion;
  return rv !== undefined && /^\d+$/.test(rv) ? Number(rv) : null;
}
