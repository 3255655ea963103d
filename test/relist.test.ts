// The resync's relist (issue 13: a pass over 100,000 pods must not parse 100,000 pods): the
// caches list again by metadata only (Kubernetes' PartialObjectMetadataList, which the simulator
// answers as Kubernetes does), and read in full only the objects whose version they lack; what
// the list no longer has leaves the cache. Against the real simulator, over HTTP.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeConfig, type KubernetesListObject, type KubernetesObject, type V1Pod } from "@kubernetes/client-node";
import { KubernetesGateway } from "../src/kubernetes/gateway.ts";
import { InformerCache } from "../src/kubernetes/informers.ts";
import { type RunningSimulator, startSimulator } from "../src/kubernetes/simulator.ts";

const NAMESPACE = "relist-test";
const LABEL = "relist-test/app";
const METADATA = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
let simulator: RunningSimulator;
let cluster: KubernetesGateway;

beforeAll(async () => {
  simulator = await startSimulator({ port: 0, startDelayMs: 0 });
  cluster = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: simulator.url });
});

afterAll(async () => {
  await simulator.stop();
});

const pods = `/api/v1/namespaces/${NAMESPACE}/pods`;
const pod = (name: string): V1Pod => ({
  metadata: { name, labels: { [LABEL]: "x" } },
  spec: { containers: [{ name: "c", image: "busybox" }] },
});

async function get<T>(path: string, accept = "application/json"): Promise<T> {
  const answer = await fetch(`${simulator.url}${path}`, { headers: { accept } });
  if (!answer.ok) throw Object.assign(new Error(`${path}: ${answer.status}`), { status: answer.status });
  return (await answer.json()) as T;
}

/** Until each pod has become Running (the simulator's MODIFIED after startDelayMs: a new version of it). */
async function untilRunning(names: string[]) {
  for (const name of names) {
    for (let i = 0; (await get<V1Pod>(`${pods}/${name}`)).status?.phase !== "Running"; i++) {
      if (i > 500) throw new Error(`pod ${name} never became Running`);
      await Bun.sleep(2);
    }
  }
}

/** A cache that never watches (so it misses everything), counting what its relists ask for. */
function unwatchedCache() {
  const asked = { lists: 0, metadataLists: 0, reads: 0 };
  const cache = new InformerCache<V1Pod>(new KubeConfig(), {
    path: pods,
    labelSelector: LABEL,
    list: async () => {
      asked.lists++;
      return get<KubernetesListObject<V1Pod>>(`${pods}?labelSelector=${LABEL}`);
    },
    listMetadata: async () => {
      asked.metadataLists++;
      return get<KubernetesListObject<KubernetesObject>>(`${pods}?labelSelector=${LABEL}`, METADATA);
    },
    read: async (name) => {
      asked.reads++;
      return get<V1Pod>(`${pods}/${name}`).catch((error) => {
        if (error.status === 404) return null;
        throw error;
      });
    },
  });
  return { cache, asked };
}

describe("a relist by metadata", () => {
  test("the simulator answers a metadata list as Kubernetes does: metadata only, with the list's resourceVersion", async () => {
    await cluster.createPod(pod("meta-a"));
    const list = await get<{ kind: string; apiVersion: string; metadata: { resourceVersion?: string }; items: Record<string, unknown>[] }>(
      `${pods}?labelSelector=${LABEL}`,
      METADATA,
    );
    expect(list.kind).toBe("PartialObjectMetadataList");
    expect(list.apiVersion).toBe("meta.k8s.io/v1");
    expect(list.metadata.resourceVersion).toMatch(/^\d+$/);
    const item = list.items.find((i) => (i.metadata as { name: string }).name === "meta-a")!;
    expect(item.kind).toBe("PartialObjectMetadata");
    expect(item.spec).toBeUndefined();
    expect(item.status).toBeUndefined();
    expect((item.metadata as { labels: Record<string, string> }).labels[LABEL]).toBe("x");
    await cluster.deletePod("meta-a");
  });

  test("reads only what the cache lacks or has older; drops what is gone; an unchanged cluster costs one list", async () => {
    for (const name of ["r-1", "r-2", "r-3"]) await cluster.createPod(pod(name));
    // Settled first: a pod turning Running between two relists is a change, and would be read.
    await untilRunning(["r-1", "r-2", "r-3"]);
    const { cache, asked } = unwatchedCache();
    expect(await cache.relist()).toBe(3);
    expect(asked).toEqual({ lists: 0, metadataLists: 1, reads: 3 });
    expect(cache.get("r-1")?.spec?.containers?.[0]?.image).toBe("busybox");

    // Nothing changed: one metadata list, no read.
    expect(await cache.relist()).toBe(0);
    expect(asked).toEqual({ lists: 0, metadataLists: 2, reads: 3 });

    // One gone, one replaced (same name, newer version): one read, for the replaced one.
    await cluster.deletePod("r-1");
    await cluster.deletePod("r-2");
    const again = await cluster.createPod(pod("r-2"));
    expect(await cache.relist()).toBe(2);
    expect(asked).toEqual({ lists: 0, metadataLists: 3, reads: 4 });
    expect(cache.get("r-1")).toBeNull();
    expect(cache.get("r-2")?.metadata?.uid).toBe(again.metadata!.uid!);
    for (const name of ["r-2", "r-3"]) await cluster.deletePod(name);
  });

  test("many objects the cache lacks: one full list, not a read each", async () => {
    const names = Array.from({ length: 40 }, (_, i) => `many-${i}`);
    for (const name of names) await cluster.createPod(pod(name));
    const { cache, asked } = unwatchedCache();
    expect(await cache.relist()).toBe(40);
    expect(asked).toEqual({ lists: 1, metadataLists: 1, reads: 0 });
    expect(cache.size).toBe(40);
    for (const name of names) await cluster.deletePod(name);
  });

  test("the gateway's caches relist by metadata: an unchanged cluster costs a list per kind and no read", async () => {
    // What the gateway asks for, seen on the way: the Accept of every list that is not a watch.
    const accepts: string[] = [];
    const proxy = Bun.serve({
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        if (request.method === "GET" && url.searchParams.get("watch") !== "true") accepts.push(request.headers.get("accept") ?? "");
        return fetch(`${simulator.url}${url.pathname}${url.search}`, { method: request.method, headers: request.headers, body: request.method === "GET" ? undefined : await request.arrayBuffer() });
      },
    });
    const gateway = KubernetesGateway.fromSettings({ mode: "embedded", kubeconfig: "", namespace: NAMESPACE, simulatorUrl: `http://127.0.0.1:${proxy.port}` });
    await cluster.createPod(pod("g-1"));
    await gateway.startCaches({ selectLabel: LABEL, indexLabel: LABEL });
    try {
      expect((await gateway.cachedPod("g-1"))?.metadata?.name).toBe("g-1");
      const before = new Map(gateway.calls);
      accepts.length = 0;
      expect(await gateway.relistCaches()).toBe(0);
      expect(accepts).toHaveLength(3);
      for (const accept of accepts) expect(accept).toContain("as=PartialObjectMetadataList;g=meta.k8s.io;v=v1");
      const asked = (what: string) => (gateway.calls.get(what) ?? 0) - (before.get(what) ?? 0);
      expect([asked("list pod"), asked("list service"), asked("list networkpolicy")]).toEqual([1, 1, 1]);
      expect(asked("get pod")).toBe(0);
      // Still the whole pod in the cache, not its metadata.
      expect((await gateway.cachedPod("g-1"))?.spec?.containers?.[0]?.image).toBe("busybox");
    } finally {
      await gateway.stopCaches();
      proxy.stop(true);
      await cluster.deletePod("g-1");
    }
  });
});
