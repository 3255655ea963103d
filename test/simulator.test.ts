// The embedded Kubernetes API simulator (architecture.md, "Kubernetes modes"; integrated-apps.md
// §6), specified through the clients that use it: the real `@kubernetes/client-node` 1.4 (CRUD,
// errors, Watch) and kubectl. Each test works in a namespace of its own, so tests share one
// simulator without seeing each other's objects.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  NetworkingV1Api,
  type V1NetworkPolicy,
  type V1OwnerReference,
  type V1Pod,
  type V1Service,
  Watch,
} from "@kubernetes/client-node";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EVENT_LOG_CAPACITY, type RunningSimulator, startSimulator } from "../src/kubernetes/simulator.ts";
import { eventually } from "./support/eventually.ts";

const START_DELAY_MS = 50;

let simulator: RunningSimulator;
let core: CoreV1Api;
let networking: NetworkingV1Api;
let kubeConfig: KubeConfig;

beforeAll(async () => {
  simulator = await startSimulator({ port: 0, startDelayMs: START_DELAY_MS });
  kubeConfig = kubeConfigFor(simulator.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
  networking = kubeConfig.makeApiClient(NetworkingV1Api);
});

afterAll(async () => {
  await simulator.stop();
});

function kubeConfigFor(server: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: "simulator", server, skipTLSVerify: true }],
    users: [{ name: "tester" }],
    contexts: [{ name: "simulator", cluster: "simulator", user: "tester" }],
    currentContext: "simulator",
  });
  return config;
}

let namespaceCount = 0;
const freshNamespace = () => `test-${++namespaceCount}`;

function pod(name: string, labels: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, labels },
    spec: { restartPolicy: "Never", containers: [{ name: "user-job", image: "alpine:3" }] },
  };
}

function ownedBy(owner: V1Pod): V1OwnerReference[] {
  return [{ apiVersion: "v1", kind: "Pod", name: owner.metadata!.name!, uid: owner.metadata!.uid! }];
}

function service(name: string, labels: Record<string, string> = {}, owner?: V1Pod): V1Service {
  return {
    metadata: { name, labels, ...(owner ? { ownerReferences: ownedBy(owner) } : {}) },
    spec: { clusterIP: "None", selector: { "ucloud.dk/jobId": name }, ports: [{ name: "web", port: 8080 }] },
  };
}

function policy(name: string, labels: Record<string, string> = {}, owner?: V1Pod): V1NetworkPolicy {
  return {
    metadata: { name, labels, ...(owner ? { ownerReferences: ownedBy(owner) } : {}) },
    spec: {
      podSelector: { matchLabels: { "ucloud.dk/jobId": name } },
      // client-node names the field `_from` (`from` is reserved) and sends it as `from`.
      ingress: [{ _from: [{ podSelector: { matchLabels: { "ucloud.dk/jobId": name } } }] }],
    },
  };
}

/** The ApiException that `promise` rejects with (fails the test when it resolves). */
async function apiError(promise: Promise<unknown>): Promise<ApiException<unknown>> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiException);
    return error as ApiException<unknown>;
  }
  throw new Error("expected the call to fail");
}

/** The Kubernetes Status in an ApiException (client-node 1.4 keeps the body as text). */
function statusOf(error: ApiException<unknown>): { reason: string; code: number; details?: { name?: string } } {
  return typeof error.body === "string" ? JSON.parse(error.body) : (error.body as never);
}

async function gone(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return false;
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return true;
    throw error;
  }
}

const names = (list: { items: { metadata?: { name?: string } }[] }) => list.items.map((item) => item.metadata!.name).sort();

/** What discovery answers, as far as these tests read it. */
interface Discovery {
  major: string;
  versions: string[];
  kind: string;
  groups: { preferredVersion: { groupVersion: string } }[];
  resources: { name: string; kind: string; namespaced: boolean; shortNames?: string[]; verbs: string[] }[];
}

describe("discovery", () => {
  test("answers /version, /api, /apis and the resource lists kubectl reads", async () => {
    const get = async (path: string) => (await fetch(simulator.url + path)).json() as Promise<Discovery>;
    expect((await get("/version")).major).toBe("1");
    expect((await get("/api")).versions).toEqual(["v1"]);
    const groups = await get("/apis");
    expect(groups.kind).toBe("APIGroupList");
    expect(groups.groups.map((group) => group.preferredVersion.groupVersion)).toContain("networking.k8s.io/v1");

    const core = await get("/api/v1");
    const pods = core.resources.find((resource) => resource.name === "pods")!;
    expect(pods).toMatchObject({ kind: "Pod", namespaced: true, shortNames: ["po"] });
    expect(pods.verbs).toEqual(expect.arrayContaining(["create", "get", "list", "delete", "watch"]));
    expect(core.resources.find((resource) => resource.name === "services")!.shortNames).toEqual(["svc"]);
    const networkingList = await get("/apis/networking.k8s.io/v1");
    expect(networkingList.resources[0]).toMatchObject({ name: "networkpolicies", kind: "NetworkPolicy", shortNames: ["netpol"] });
  });

  test("answers a Table when asked the way kubectl asks", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("tabled") });
    const response = await fetch(`${simulator.url}/api/v1/namespaces/${namespace}/pods`, {
      headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" },
    });
    const table = (await response.json()) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[]; object: { metadata: { name: string } } }[] };
    expect(table).toMatchObject({ kind: "Table", apiVersion: "meta.k8s.io/v1" });
    expect(table.columnDefinitions.map((column) => column.name).slice(0, 5)).toEqual(["Name", "Ready", "Status", "Restarts", "Age"]);
    expect(table.rows[0]!.cells.slice(0, 2)).toEqual(["tabled", "0/1"]);
    expect(table.rows[0]!.object.metadata.name).toBe("tabled");
  });
});

describe("pods", () => {
  test("create fills in uid, creationTimestamp, resourceVersion and namespace, and starts Pending", async () => {
    const namespace = freshNamespace();
    const created = await core.createNamespacedPod({ namespace, body: pod("j-1-job-0") });
    expect(created.metadata!.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata!.creationTimestamp).toBeInstanceOf(Date);
    expect(created.metadata!.resourceVersion).toMatch(/^\d+$/);
    expect(created.metadata!.namespace).toBe(namespace);
    expect(created.status!.phase).toBe("Pending");

    const read = await core.readNamespacedPod({ name: "j-1-job-0", namespace });
    expect(read.metadata!.uid).toBe(created.metadata!.uid!);
  });

  test(`moves from Pending to Running after startDelayMs (${START_DELAY_MS} ms)`, async () => {
    const namespace = freshNamespace();
    const startedAt = Date.now();
    await core.createNamespacedPod({ namespace, body: pod("starter") });
    await eventually(async () => (await core.readNamespacedPod({ name: "starter", namespace })).status!.phase === "Running", 2, "the pod runs", 10);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(START_DELAY_MS - 5);

    const status = (await core.readNamespacedPod({ name: "starter", namespace })).status!;
    expect(status.conditions!.find((condition) => condition.type === "Ready")!.status).toBe("True");
    expect(status.containerStatuses![0]).toMatchObject({ name: "user-job", ready: true, started: true });
    expect(status.containerStatuses![0]!.state!.running).toBeDefined();
    expect(status.startTime).toBeInstanceOf(Date);
    expect(status.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  });

  test("list filters by label selector: =, ==, !=, exists, !exists, in, notin", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("a", { app: "syncthing", rank: "0" }) });
    await core.createNamespacedPod({ namespace, body: pod("b", { app: "terminal", rank: "0" }) });
    await core.createNamespacedPod({ namespace, body: pod("c", { app: "terminal" }) });
    const select = async (labelSelector?: string) => names(await core.listNamespacedPod({ namespace, labelSelector }));

    expect(await select()).toEqual(["a", "b", "c"]);
    expect(await select("app=terminal")).toEqual(["b", "c"]);
    expect(await select("app==syncthing")).toEqual(["a"]);
    expect(await select("app!=terminal")).toEqual(["a"]);
    expect(await select("rank")).toEqual(["a", "b"]);
    expect(await select("!rank")).toEqual(["c"]);
    expect(await select("app in (syncthing, other)")).toEqual(["a"]);
    expect(await select("rank notin (0)")).toEqual(["c"]);
    expect(await select("app=terminal,rank=0")).toEqual(["b"]);
    expect(await select("app=nothing")).toEqual([]);

    const malformed = await apiError(select("app in syncthing"));
    expect(malformed.code).toBe(400);
    expect(statusOf(malformed).reason).toBe("BadRequest");
  });

  test("resourceVersions increase with every change, and a list reports the latest", async () => {
    const namespace = freshNamespace();
    const first = await core.createNamespacedPod({ namespace, body: pod("first") });
    const second = await core.createNamespacedPod({ namespace, body: pod("second") });
    const list = await core.listNamespacedPod({ namespace });
    expect(Number(second.metadata!.resourceVersion)).toBeGreaterThan(Number(first.metadata!.resourceVersion));
    expect(Number(list.metadata!.resourceVersion)).toBeGreaterThanOrEqual(Number(second.metadata!.resourceVersion));
  });

  test("delete with grace period 0 removes the pod at once", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("doomed") });
    await core.deleteNamespacedPod({ name: "doomed", namespace, gracePeriodSeconds: 0, propagationPolicy: "Background" });
    expect(await gone(() => core.readNamespacedPod({ name: "doomed", namespace }))).toBe(true);
  });

  test("delete with a grace period marks the pod terminating, then removes it within min(grace, startDelayMs)", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("graceful") });
    const terminating = await core.deleteNamespacedPod({ name: "graceful", namespace, gracePeriodSeconds: 30 });
    expect(terminating.metadata!.deletionTimestamp).toBeInstanceOf(Date);
    expect(terminating.metadata!.deletionGracePeriodSeconds).toBe(30);
    expect(await gone(() => core.readNamespacedPod({ name: "graceful", namespace }))).toBe(false);
    await eventually(() => gone(() => core.readNamespacedPod({ name: "graceful", namespace })), 1, "the pod is gone", 10);
  });

  test("reading or deleting a missing pod is a 404 ApiException carrying a NotFound Status", async () => {
    const namespace = freshNamespace();
    const error = await apiError(core.readNamespacedPod({ name: "nobody", namespace }));
    expect(error.code).toBe(404);
    expect(statusOf(error)).toMatchObject({ kind: "Status", status: "Failure", reason: "NotFound", code: 404, details: { name: "nobody", kind: "pods" } });
    expect((await apiError(core.deleteNamespacedPod({ name: "nobody", namespace }))).code).toBe(404);
  });

  test("creating a pod whose name is taken is a 409 AlreadyExists", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("twin") });
    const error = await apiError(core.createNamespacedPod({ namespace, body: pod("twin") }));
    expect(error.code).toBe(409);
    expect(statusOf(error).reason).toBe("AlreadyExists");
  });

  test("bad JSON and a missing name are 400 BadRequest; a wrong method is 405", async () => {
    const namespace = freshNamespace();
    const post = (path: string, body: string) =>
      fetch(`${simulator.url}/api/v1/namespaces/${namespace}/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const badJson = await post("pods", "{not json");
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ kind: "Status", reason: "BadRequest", code: 400 });
    const nameless = await post("pods", JSON.stringify({ spec: pod("x").spec }));
    expect(nameless.status).toBe(400);
    const wrongMethod = await post("pods/some-pod", "{}");
    expect(wrongMethod.status).toBe(405);
    expect(await wrongMethod.json()).toMatchObject({ reason: "MethodNotAllowed", code: 405 });
  });

  test("pods of all namespaces are listed at /api/v1/pods", async () => {
    const [one, two] = [freshNamespace(), freshNamespace()];
    await core.createNamespacedPod({ namespace: one, body: pod("everywhere") });
    await core.createNamespacedPod({ namespace: two, body: pod("everywhere") });
    const all = await core.listPodForAllNamespaces({ labelSelector: "!nothing", fieldSelector: "metadata.name=everywhere" });
    expect(all.items.map((item) => item.metadata!.namespace).filter((ns) => ns === one || ns === two).sort()).toEqual([one, two]);
  });
});

describe("services and network policies", () => {
  test("services: create, get, list by label, delete", async () => {
    const namespace = freshNamespace();
    const created = await core.createNamespacedService({ namespace, body: service("j-1", { app: "syncthing" }) });
    expect(created.metadata!.uid).toBeDefined();
    expect(created.spec!.clusterIP).toBe("None");
    await core.createNamespacedService({ namespace, body: service("j-2", { app: "terminal" }) });

    expect((await core.readNamespacedService({ name: "j-1", namespace })).spec!.ports![0]!.port).toBe(8080);
    expect(names(await core.listNamespacedService({ namespace, labelSelector: "app=terminal" }))).toEqual(["j-2"]);
    expect((await apiError(core.createNamespacedService({ namespace, body: service("j-1") }))).code).toBe(409);

    await core.deleteNamespacedService({ name: "j-1", namespace });
    expect(await gone(() => core.readNamespacedService({ name: "j-1", namespace }))).toBe(true);
    expect((await apiError(core.readNamespacedService({ name: "j-1", namespace }))).code).toBe(404);
  });

  test("network policies: create, get, list by label, delete", async () => {
    const namespace = freshNamespace();
    const created = await networking.createNamespacedNetworkPolicy({ namespace, body: policy("policy-1", { app: "syncthing" }) });
    expect(created.metadata!.resourceVersion).toBeDefined();
    expect(created.spec!.policyTypes).toEqual(["Ingress"]);
    await networking.createNamespacedNetworkPolicy({ namespace, body: policy("policy-2", { app: "terminal" }) });

    const read = await networking.readNamespacedNetworkPolicy({ name: "policy-1", namespace });
    expect(read.spec!.podSelector!.matchLabels).toEqual({ "ucloud.dk/jobId": "policy-1" });
    expect(read.spec!.ingress![0]!._from![0]!.podSelector!.matchLabels).toEqual({ "ucloud.dk/jobId": "policy-1" });
    const stored = (await (await fetch(`${simulator.url}/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/policy-1`)).json()) as { spec: { ingress: { from: unknown[] }[] } };
    expect(stored.spec.ingress[0]!.from).toHaveLength(1);
    expect(names(await networking.listNamespacedNetworkPolicy({ namespace, labelSelector: "app in (syncthing)" }))).toEqual(["policy-1"]);
    expect((await apiError(networking.createNamespacedNetworkPolicy({ namespace, body: policy("policy-1") }))).code).toBe(409);

    await networking.deleteNamespacedNetworkPolicy({ name: "policy-1", namespace });
    expect((await apiError(networking.readNamespacedNetworkPolicy({ name: "policy-1", namespace }))).code).toBe(404);
  });
});

describe("owner-reference garbage collection", () => {
  test("the service and network policy owned by a pod go when the pod goes", async () => {
    const namespace = freshNamespace();
    const owner = await core.createNamespacedPod({ namespace, body: pod("j-7-job-0") });
    await core.createNamespacedService({ namespace, body: service("j-7", {}, owner) });
    await networking.createNamespacedNetworkPolicy({ namespace, body: policy("policy-7", {}, owner) });
    await core.createNamespacedService({ namespace, body: service("unowned") });

    await core.deleteNamespacedPod({ name: "j-7-job-0", namespace, gracePeriodSeconds: 0, propagationPolicy: "Background" });
    await eventually(
      async () =>
        (await gone(() => core.readNamespacedService({ name: "j-7", namespace }))) &&
        (await gone(() => networking.readNamespacedNetworkPolicy({ name: "policy-7", namespace }))),
      2,
      "the pod's dependents are collected",
      10,
    );
    expect(names(await core.listNamespacedService({ namespace }))).toEqual(["unowned"]);
  });

  test("Orphan propagation keeps the dependents and drops their owner reference", async () => {
    const namespace = freshNamespace();
    const owner = await core.createNamespacedPod({ namespace, body: pod("j-8-job-0") });
    await core.createNamespacedService({ namespace, body: service("j-8", {}, owner) });
    await core.deleteNamespacedPod({ name: "j-8-job-0", namespace, gracePeriodSeconds: 0, propagationPolicy: "Orphan" });
    const kept = await core.readNamespacedService({ name: "j-8", namespace });
    expect(kept.metadata!.ownerReferences ?? []).toEqual([]);
  });

  test("an object created with an owner that does not exist is collected", async () => {
    const namespace = freshNamespace();
    const ghost: V1Pod = { metadata: { name: "ghost", uid: crypto.randomUUID() } };
    await core.createNamespacedService({ namespace, body: service("j-9", {}, ghost) });
    await eventually(() => gone(() => core.readNamespacedService({ name: "j-9", namespace })), 2, "the service is collected", 10);
  });
});

type Seen = { type: string; name: string; phase?: string; resourceVersion: string };

/** Starts a client-node Watch on pods; `seen` fills with its events, `ended` resolves with done's error. */
async function watchPods(namespace: string, query: Record<string, string | number> = {}, config = kubeConfig) {
  const seen: Seen[] = [];
  let finish!: (error: unknown) => void;
  const ended = new Promise<unknown>((resolve) => (finish = resolve));
  const controller = await new Watch(config).watch(
    `/api/v1/namespaces/${namespace}/pods`,
    query,
    (type, object: V1Pod) =>
      seen.push({ type, name: object.metadata!.name!, phase: object.status?.phase, resourceVersion: object.metadata!.resourceVersion! }),
    (error) => finish(error),
  );
  return { seen, ended, stop: () => controller.abort() };
}

describe("watch", () => {
  test("client-node's Watch sees a pod ADDED, MODIFIED to Running, and DELETED", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("existing") });
    const watch = await watchPods(namespace);
    await eventually(() => watch.seen.length === 1, 2, "the watch sees the pod", 10);
    expect(watch.seen[0]).toMatchObject({ type: "ADDED", name: "existing" });

    await core.createNamespacedPod({ namespace, body: pod("watched") });
    await eventually(() => watch.seen.some((event) => event.name === "watched" && event.phase === "Running"), 2, "the watch sees it run", 10);
    await core.deleteNamespacedPod({ name: "watched", namespace, gracePeriodSeconds: 0, propagationPolicy: "Background" });
    await eventually(() => watch.seen.some((event) => event.type === "DELETED"), 2, "the watch sees a deletion", 10);
    watch.stop();

    const ofWatched = watch.seen.filter((event) => event.name === "watched");
    expect(ofWatched.map((event) => [event.type, event.phase])).toEqual([
      ["ADDED", "Pending"],
      ["MODIFIED", "Running"],
      ["DELETED", "Running"],
    ]);
    const versions = watch.seen.map((event) => Number(event.resourceVersion));
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
  });

  test("a watch from a resourceVersion replays what happened after it, and honours the label selector", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("before", { app: "syncthing" }) });
    await eventually(async () => (await core.readNamespacedPod({ name: "before", namespace })).status!.phase === "Running", 2, "the pod runs", 10);
    const { metadata } = await core.listNamespacedPod({ namespace });
    await core.createNamespacedPod({ namespace, body: pod("after", { app: "syncthing" }) });
    await core.createNamespacedPod({ namespace, body: pod("other-app", { app: "terminal" }) });

    const watch = await watchPods(namespace, { resourceVersion: metadata!.resourceVersion!, labelSelector: "app=syncthing" });
    await eventually(() => watch.seen.filter((event) => event.name === "after").length === 2, 2, "the watch replays both events", 10);
    watch.stop();
    expect(watch.seen.map((event) => event.name)).not.toContain("before");
    expect(watch.seen.map((event) => event.name)).not.toContain("other-app");
    expect(watch.seen.filter((event) => event.name === "after").map((event) => event.type)).toEqual(["ADDED", "MODIFIED"]);
  });

  test("a pod that stops matching the selector is DELETED for the watch", async () => {
    const namespace = freshNamespace();
    await core.createNamespacedPod({ namespace, body: pod("relabelled", { app: "syncthing" }) });
    const watch = await watchPods(namespace, { labelSelector: "app=syncthing" });
    await eventually(() => watch.seen.length > 0, 2, "the watch sees an event", 10);
    // client-node's patch methods send a JSON Patch.
    await core.patchNamespacedPod({ name: "relabelled", namespace, body: [{ op: "replace", path: "/metadata/labels/app", value: "terminal" }] });
    await eventually(() => watch.seen.some((event) => event.type === "DELETED"), 2, "the watch sees a deletion", 10);
    watch.stop();
    expect((await core.readNamespacedPod({ name: "relabelled", namespace })).metadata!.labels).toEqual({ app: "terminal" });
  });

  test("a watch ends after timeoutSeconds", async () => {
    const namespace = freshNamespace();
    const startedAt = Date.now();
    const watch = await watchPods(namespace, { timeoutSeconds: 1 });
    expect(await watch.ended).toBeNull();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(900);
  });

  test("a resourceVersion older than the event log is 410 Gone with reason Expired", async () => {
    const own = await startSimulator({ port: 0, startDelayMs: 0 });
    try {
      const namespace = "expiry";
      const create = (index: number) =>
        fetch(`${own.url}/api/v1/namespaces/${namespace}/services`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(service(`s-${index}`)),
        });
      // Resuming from resourceVersion 1 needs the events from 2 on: push event 2 out of the log.
      const total = EVENT_LOG_CAPACITY + 2;
      for (let first = 0; first < total; first += 100) {
        await Promise.all(Array.from({ length: Math.min(100, total - first) }, (_, offset) => create(first + offset)));
      }
      const raw = await fetch(`${own.url}/api/v1/namespaces/${namespace}/services?watch=true&resourceVersion=1`);
      expect(raw.status).toBe(410);
      expect(await raw.json()).toMatchObject({ kind: "Status", reason: "Expired", code: 410 });

      const watch = await watchPods(namespace, { resourceVersion: "1" }, kubeConfigFor(own.url));
      expect(await watch.ended).toMatchObject({ statusCode: 410 });
    } finally {
      await own.stop();
    }
  });
});

const KUBECTL = Bun.which("kubectl");
const KUBECTL_SUITE = KUBECTL ? "kubectl" : "kubectl (skipped: no kubectl on PATH; install Debian's kubernetes-client)";

type Kubectl = (...args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/**
 * Runs `use` with a kubectl that talks to the simulator only: its own HOME and an empty
 * kubeconfig, so that no local config, credentials or discovery cache interfere, and --server
 * names the only place to go. Spawned asynchronously: the simulator runs in this process.
 */
async function withKubectl(use: (kubectl: Kubectl) => Promise<void>) {
  const home = mkdtempSync(join(tmpdir(), "iapps-kubectl-"));
  const kubeconfig = join(home, "kubeconfig");
  writeFileSync(kubeconfig, "");
  const kubectl: Kubectl = async (...args) => {
    const child = Bun.spawn(
      [KUBECTL!, "--server", simulator.url, "--insecure-skip-tls-verify=true", "--request-timeout=5s", ...args],
      { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, KUBECONFIG: kubeconfig }, stdout: "pipe", stderr: "pipe" },
    );
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    return { code, stdout, stderr };
  };
  try {
    await use(kubectl);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

describe.skipIf(!KUBECTL)(KUBECTL_SUITE, () => {
  test("lists, gets and deletes a pod", () =>
    withKubectl(async (kubectl) => {
      const namespace = freshNamespace();
      await core.createNamespacedPod({ namespace, body: pod("j-42-job-0", { "ucloud.dk/jobId": "42" }) });
      await eventually(async () => (await core.readNamespacedPod({ name: "j-42-job-0", namespace })).status!.phase === "Running", 2, "the pod runs", 10);

      const listed = await kubectl("get", "pods", "-n", namespace);
      expect(listed.stderr).toBe("");
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s*$/m);
      expect(listed.stdout).toMatch(/^j-42-job-0\s+1\/1\s+Running\s+0\s+\d+s\s*$/m);

      const got = await kubectl("get", "pod", "j-42-job-0", "-n", namespace, "-o", "json");
      expect(got.code).toBe(0);
      expect(JSON.parse(got.stdout)).toMatchObject({
        kind: "Pod",
        metadata: { name: "j-42-job-0", namespace },
        status: { phase: "Running" },
      });

      // kubectl deletes with the pod's default grace and waits, through a watch, until it is gone.
      const deleted = await kubectl("delete", "pod", "j-42-job-0", "-n", namespace);
      expect(deleted.code).toBe(0);
      expect(deleted.stdout).toContain(`pod "j-42-job-0" deleted`);
      expect(await gone(() => core.readNamespacedPod({ name: "j-42-job-0", namespace }))).toBe(true);

      const missing = await kubectl("get", "pod", "j-42-job-0", "-n", namespace);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toContain(`pods "j-42-job-0" not found`);
    }));

  test("services show kubectl's columns: TYPE, CLUSTER-IP, EXTERNAL-IP (externalIPs), PORT(S), AGE", () =>
    withKubectl(async (kubectl) => {
      const namespace = freshNamespace();
      await core.createNamespacedService({
        namespace,
        body: {
          metadata: { name: "j-7-syncthing" },
          spec: { type: "ClusterIP", externalIPs: ["10.20.30.40"], ports: [{ name: "syncthing", protocol: "TCP", port: 21000, targetPort: 21000 }], selector: { "ucloud.dk/jobId": "7" } },
        },
      });
      await core.createNamespacedService({ namespace, body: { metadata: { name: "j-7" }, spec: { clusterIP: "None", selector: { "ucloud.dk/jobId": "7" } } } });
      await core.createNamespacedService({ namespace, body: { metadata: { name: "lb" }, spec: { type: "LoadBalancer", ports: [{ port: 80, nodePort: 30080 }] } } });

      const listed = await kubectl("get", "services", "-n", namespace);
      expect(listed.stderr).toBe("");
      expect(listed.stdout).toMatch(/^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\s*$/m);
      expect(listed.stdout).toMatch(/^j-7-syncthing\s+ClusterIP\s+10\.96\.\d+\.\d+\s+10\.20\.30\.40\s+21000\/TCP\s+\d+s\s*$/m);
      expect(listed.stdout).toMatch(/^j-7\s+ClusterIP\s+None\s+<none>\s+<none>\s+\d+s\s*$/m);
      expect(listed.stdout).toMatch(/^lb\s+LoadBalancer\s+10\.96\.\d+\.\d+\s+<pending>\s+80:30080\/TCP\s+\d+s\s*$/m);
    }));
});
