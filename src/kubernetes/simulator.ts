// The embedded Kubernetes API simulator (architecture.md, "Kubernetes modes"): a Kubernetes REST
// API server over plain HTTP for pods, services and network policies, good enough for
// `@kubernetes/client-node` 1.4 and for kubectl (discovery, server-side Tables, watches). This
// file owns the HTTP surface: routing, content negotiation, delete options, watch streams. The
// cluster's behaviour (objects, resourceVersions, pods starting, garbage collection) is in
// ./simulator/state.ts; exec (a real command in a bubblewrap sandbox) in ./simulator/exec.ts.
// Runs on Bun.serve. Imports ./simulator/* (and through exec.ts src/base/directory.ts).
//
// What a client author must know:
// - Any namespace exists; nothing has to be created first.
// - Pods are created Pending and become Running (a MODIFIED event) after `startDelayMs`.
// - Deleting a pod with a grace period of 0 removes it at once (200). With a grace period > 0
//   (given, or the pod's terminationGracePeriodSeconds, default 30) the pod first gets a
//   deletionTimestamp (MODIFIED, answered with 202) and is removed after
//   min(grace, startDelayMs): simulated containers stop as fast as they start. Services and
//   network policies are always removed at once.
// - Removing an object deletes its dependents (owner reference by uid, same namespace) that have
//   no other owner left: with Background (the default) right after the owner is gone, on the
//   next turn of the event loop (so not yet when the DELETE answers, as in Kubernetes); with
//   Foreground before the owner, within the DELETE; Orphan only drops the owner reference. An
//   object created with owner references to objects that do not exist is collected right after.
// - Watches: without resourceVersion (or "0") they start with ADDED events for what exists,
//   then stream live events; with a resourceVersion they replay the logged events after it
//   (the log keeps the last EVENT_LOG_CAPACITY events; older is 410 Gone, reason Expired). An
//   object that stops matching a watch's selectors arrives as DELETED, one that starts
//   matching as ADDED. A watch ends after `timeoutSeconds`, else when the client leaves.
// - Lists ignore `limit` and `continue`: they answer everything at once. An Accept of
//   `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` gets metadata only (as
//   from Kubernetes: the worker's relists ask for it); watches always carry whole objects.
// - `pods/<name>/exec` over WebSocket (v5/v4.channel.k8s.io) runs the command for real, in a
//   bubblewrap sandbox with the pod's hostPath mounts (./simulator/exec.ts).

import { apiGroupDocument, apiGroupList, apiResourceList, apiVersions, Namespaces, versionInfo } from "./simulator/discovery.ts";
import { isRecord, type KubeObject } from "./simulator/objects.ts";
import { execTarget, SimulatedExec } from "./simulator/exec.ts";
import { applyPatch } from "./simulator/patch.ts";
import { resourceType, type ResourceType } from "./simulator/resources.ts";
import { parseFieldSelector, parseLabelSelector } from "./simulator/selectors.ts";
import { type ChangeEvent, ClusterState, type DeleteOptions, detailsOf, type EventType, type PropagationPolicy } from "./simulator/state.ts";
import { badRequest, KubeStatusError, methodNotAllowed, routeNotFound } from "./simulator/status.ts";
import { type IncludeObject, parseIncludeObject, renderTable, type TablePrinter } from "./simulator/tables.ts";

export interface SimulatorOptions {
  /** 0 picks a free port. */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** How long a new pod stays Pending before it is Running. */
  startDelayMs: number;
}

export interface RunningSimulator {
  port: number;
  /** http://127.0.0.1:<port> (or the host it listens on). */
  url: string;
  stop(): Promise<void>;
}

/** How many change events watches can resume from (`resourceVersion`), across all kinds. */
export const EVENT_LOG_CAPACITY = 1000;

const STOP_GRACE_MS = 100;

export async function startSimulator(options: SimulatorOptions): Promise<RunningSimulator> {
  const host = options.host ?? "127.0.0.1";
  const state = new ClusterState({ startDelayMs: options.startDelayMs, eventLogCapacity: EVENT_LOG_CAPACITY });
  const api = new SimulatedApi(state);
  const exec = new SimulatedExec(state, resourceType("", "pods")!);
  const server = Bun.serve({
    hostname: host,
    port: options.port,
    // Watches are long-lived and quiet; Bun's default idle timeout (10 s) would cut them.
    idleTimeout: 0,
    fetch: async (request, server) => {
      const target = request.headers.get("upgrade")?.toLowerCase() === "websocket" ? execTarget(new URL(request.url)) : null;
      if (target === null) return api.handle(request);
      try {
        return await exec.upgrade(request, server, target);
      } catch (error) {
        return api.failed(error);
      }
    },
    websocket: exec.websocket,
  });
  const port = server.port!;
  const reachableHost = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  const url = `http://${reachableHost.includes(":") ? `[${reachableHost}]` : reachableHost}:${port}`;
  api.serverAddress = `${reachableHost}:${port}`;
  return {
    port,
    url,
    async stop() {
      // Watches end cleanly first (their clients see the stream end, not a reset); then the
      // server stops, giving in-flight requests a moment before cutting what is left.
      api.endWatches();
      exec.stopAll();
      state.close();
      const graceful = server.stop(false);
      await Promise.race([graceful, Bun.sleep(STOP_GRACE_MS)]);
      await server.stop(true);
    },
  };
}

/** What GET answers with: the objects as JSON, or a `meta.k8s.io` Table of them for kubectl. */
type Presentation = { table: false; metadataOnly?: boolean } | { table: true; apiVersion: string; includeObject: IncludeObject };

class SimulatedApi {
  serverAddress = "";
  private readonly namespaces = new Namespaces();
  private readonly openWatches = new Set<() => void>();

  constructor(private readonly state: ClusterState) {}

  async handle(request: Request): Promise<Response> {
    try {
      return await this.route(request);
    } catch (error) {
      return this.failed(error);
    }
  }

  /** An error as the Kubernetes `Status` answer. */
  failed(error: unknown): Response {
    {
      const failure =
        error instanceof KubeStatusError
          ? error
          : new KubeStatusError("InternalError", `simulator error: ${error instanceof Error ? error.message : String(error)}`);
      return json(failure.toStatus(), failure.code);
    }
  }

  endWatches() {
    for (const end of [...this.openWatches]) end();
  }

  private async route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const segments = url.pathname.split("/").filter(Boolean).map(decodeSegment);
    const [root, second, third] = segments;

    if (segments.length === 1 && ["healthz", "livez", "readyz"].includes(root!)) {
      requireGet(request);
      return new Response("ok", { headers: { "content-type": "text/plain" } });
    }
    if (segments.length === 1 && root === "version") return discovery(request, versionInfo());
    if (segments.length === 1 && root === "api") return discovery(request, apiVersions(this.serverAddress));
    if (segments.length === 1 && root === "apis") return discovery(request, apiGroupList());
    // The core group lives at /api/v1, every other group at /apis/<group>/<version>.
    if (root === "api" && second === "v1") return this.groupVersion(request, url, "", segments.slice(2));
    if (root === "apis" && segments.length === 2) return discovery(request, apiGroupDocument(second!));
    if (root === "apis" && third === "v1") return this.groupVersion(request, url, second!, segments.slice(3));
    throw routeNotFound();
  }

  private async groupVersion(request: Request, url: URL, group: string, path: string[]): Promise<Response> {
    const resourceList = apiResourceList(group);
    if (path.length === 0 || resourceList === undefined) return discovery(request, resourceList);
    return this.resources(request, url, group, path);
  }

  /** `[watch/]namespaces/{ns}/{plural}[/{name}]`, `[watch/]{plural}` across namespaces, or namespaces. */
  private async resources(request: Request, url: URL, group: string, path: string[]): Promise<Response> {
    let watch = isTrue(url.searchParams.get("watch"));
    // The deprecated `/watch/` path prefix that older clients use.
    if (path[0] === "watch") {
      watch = true;
      path = path.slice(1);
    }
    const [first, namespace, plural, name, ...subresource] = path;
    if (first === "namespaces") {
      if (plural === undefined) {
        if (group !== "") throw routeNotFound();
        return this.namespaceRoute(request, url, namespace, watch);
      }
      const type = resourceType(group, plural) ?? notServed();
      if (subresource.length > 0) throw routeNotFound();
      if (name === undefined) return this.collection(request, url, type, namespace!, watch);
      return this.item(request, url, type, namespace!, name, watch);
    }
    if (path.length === 1) {
      const type = resourceType(group, first!) ?? notServed();
      requireGet(request);
      return this.read(request, url, type, null, watch);
    }
    throw routeNotFound();
  }

  private async collection(request: Request, url: URL, type: ResourceType, namespace: string, watch: boolean) {
    switch (request.method) {
      case "GET":
        return this.read(request, url, type, namespace, watch);
      case "POST":
        return json(this.state.create(type, namespace, await readJson(request)), 201);
      default:
        throw methodNotAllowed();
    }
  }

  private async item(request: Request, url: URL, type: ResourceType, namespace: string, name: string, watch: boolean) {
    switch (request.method) {
      case "GET": {
        if (watch) return this.watch(request, url, type, namespace, (object) => object.metadata.name === name);
        const object = this.state.get(type, namespace, name);
        const presentation = presentationFor(request, url);
        if (!presentation.table && presentation.metadataOnly) return json(partialMetadata(object));
        return json(presentation.table ? this.tableOf(type.table, [object], presentation) : object);
      }
      case "PUT":
        return json(this.state.replace(type, namespace, name, await readJson(request)));
      case "PATCH": {
        const patched = applyPatch(this.state.get(type, namespace, name), request.headers.get("content-type") ?? "", await readJson(request));
        return json(this.state.replace(type, namespace, name, patched));
      }
      case "DELETE": {
        const { object, gone } = this.state.delete(type, namespace, name, await deleteOptions(request, url));
        // Like Kubernetes: 200 when the object is gone, 202 while a pod is still terminating.
        return json(type.deleteAnswersStatus ? deletedStatus(type, object) : object, gone ? 200 : 202);
      }
      default:
        throw methodNotAllowed();
    }
  }

  /** GET of a collection: a list, or a watch, of one namespace or (null) of all. */
  private read(request: Request, url: URL, type: ResourceType, namespace: string | null, watch: boolean) {
    const labels = parseLabelSelector(url.searchParams.get("labelSelector"));
    const fields = parseFieldSelector(url.searchParams.get("fieldSelector"), type.fieldSelectors);
    const selected = (object: KubeObject) => labels(object.metadata.labels) && fields(object);
    if (watch) return this.watch(request, url, type, namespace, selected, labels.required);

    const items = this.state.list(type, namespace, selected, labels.required);
    const resourceVersion = this.state.resourceVersion;
    const presentation = presentationFor(request, url);
    if (presentation.table) return json(this.tableOf(type.table, items, presentation, resourceVersion));
    if (presentation.metadataOnly) return json({ kind: "PartialObjectMetadataList", apiVersion: "meta.k8s.io/v1", metadata: { resourceVersion }, items: items.map(partialMetadata) });
    return json({ kind: `${type.kind}List`, apiVersion: type.apiVersion, metadata: { resourceVersion }, items });
  }

  /**
   * A chunked stream of newline-delimited `{"type", "object"}` events for the objects of `type`
   * in `namespace` (null: all) that `selected` accepts. The backlog and the subscription are
   * taken in one synchronous step, so no event falls between them.
   */
  private watch(
    request: Request,
    url: URL,
    type: ResourceType,
    namespace: string | null,
    selected: (object: KubeObject) => boolean,
    required: [string, string][] = [],
  ): Response {
    const inScope = (object: KubeObject | undefined) =>
      object !== undefined && (namespace === null || object.metadata.namespace === namespace) && selected(object);
    const presentation = presentationFor(request, url);
    const present = (object: KubeObject) => (presentation.table ? this.tableOf(type.table, [object], presentation) : object);
    const timeoutSeconds = integerParameter(url, "timeoutSeconds");

    const resourceVersion = url.searchParams.get("resourceVersion") ?? "";
    let backlog: WatchEvent[];
    if (resourceVersion === "" || resourceVersion === "0") {
      backlog = this.state.list(type, namespace, selected, required).map((object) => ({ type: "ADDED", object }));
    } else {
      if (!/^\d+$/.test(resourceVersion)) throw badRequest(`invalid resourceVersion: ${resourceVersion}`);
      backlog = this.state
        .eventsAfter(Number(resourceVersion))
        .flatMap((event) => (event.resource === type ? (asSeenBy(event, inScope) ?? []) : []));
    }

    const encoder = new TextEncoder();
    let stream!: ReadableStreamDefaultController<Uint8Array>;
    let ended = false;
    const send = (event: WatchEvent) => {
      if (ended) return;
      try {
        stream.enqueue(encoder.encode(`${JSON.stringify({ type: event.type, object: present(event.object) })}\n`));
      } catch {
        end();
      }
    };
    const unsubscribe = this.state.subscribe((event) => {
      if (event.resource !== type) return;
      const seen = asSeenBy(event, inScope);
      if (seen) send(seen);
    });
    const timer = timeoutSeconds === undefined ? undefined : setTimeout(() => end(), timeoutSeconds * 1000);
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      clearTimeout(timer);
      request.signal.removeEventListener("abort", end);
      this.openWatches.delete(end);
      try {
        stream.close();
      } catch {
        // Already closed by the client going away.
      }
    };
    this.openWatches.add(end);
    request.signal.addEventListener("abort", end);

    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stream = controller;
        // Bun sends the response headers with the first bytes of the body. A blank line is
        // whitespace to every watch decoder (client-go's JSON framer, client-node's readline)
        // and lets a client know at once that its watch is established.
        controller.enqueue(encoder.encode("\n"));
      },
      cancel: () => end(),
    });
    for (const event of backlog) send(event);
    return new Response(body, {
      headers: { "content-type": "application/json", "cache-control": "no-cache, private" },
    });
  }

  private namespaceRoute(request: Request, url: URL, name: string | undefined, watch: boolean) {
    requireGet(request);
    if (watch) throw methodNotAllowed();
    const presentation = presentationFor(request, url);
    if (name !== undefined) {
      const namespace = this.namespaces.get(name);
      return json(presentation.table ? this.tableOf(this.namespaces.table, [namespace], presentation) : namespace);
    }
    const items = this.state.namespaces().map((namespace) => this.namespaces.get(namespace));
    const resourceVersion = this.state.resourceVersion;
    if (presentation.table) return json(this.tableOf(this.namespaces.table, items, presentation, resourceVersion));
    return json({ kind: "NamespaceList", apiVersion: "v1", metadata: { resourceVersion }, items });
  }

  private tableOf(
    printer: TablePrinter,
    objects: KubeObject[],
    presentation: Presentation & { table: true },
    resourceVersion?: string,
  ) {
    return renderTable(printer, objects, { ...presentation, resourceVersion });
  }
}

interface WatchEvent {
  type: EventType;
  object: KubeObject;
}

/**
 * A change as a selective watch sees it: an object that starts matching is ADDED, one that stops
 * matching is DELETED, one that never matched is not seen at all (undefined).
 */
function asSeenBy(event: ChangeEvent, inScope: (object: KubeObject | undefined) => boolean): WatchEvent | undefined {
  const matches = inScope(event.object);
  if (event.type !== "MODIFIED") return matches ? { type: event.type, object: event.object } : undefined;
  const matched = inScope(event.previous);
  if (matched && matches) return { type: "MODIFIED", object: event.object };
  if (matches) return { type: "ADDED", object: event.object };
  if (matched) return { type: "DELETED", object: event.object };
  return undefined;
}

/** An object as `PartialObjectMetadata`: its metadata only (what a relist by metadata asks for). */
function partialMetadata(object: KubeObject) {
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: object.metadata };
}

/**
 * A Table when the Accept header prefers one (kubectl sends
 * `application/json;as=Table;v=v1;g=meta.k8s.io,...,application/json`), metadata only for
 * `as=PartialObjectMetadata` (or `...List`, as client-go's metadata informers ask), JSON otherwise.
 */
function presentationFor(request: Request, url: URL): Presentation {
  for (const entry of (request.headers.get("accept") ?? "").split(",")) {
    const [mediaType = "", ...parameterTexts] = entry.split(";").map((part) => part.trim());
    if (!["application/json", "application/*", "*/*"].includes(mediaType.toLowerCase())) continue;
    const parameters = new Map(
      parameterTexts.map((text) => {
        const [name = "", value = ""] = text.split("=", 2);
        return [name.trim(), value.trim()];
      }),
    );
    const as = parameters.get("as");
    if (as === undefined) return { table: false };
    if ((as === "PartialObjectMetadataList" || as === "PartialObjectMetadata") && parameters.get("g") === "meta.k8s.io" && ["v1", "v1beta1"].includes(parameters.get("v") ?? "")) {
      return { table: false, metadataOnly: true };
    }
    if (as === "Table" && parameters.get("g") === "meta.k8s.io" && ["v1", "v1beta1"].includes(parameters.get("v") ?? "")) {
      return {
        table: true,
        apiVersion: `meta.k8s.io/${parameters.get("v")}`,
        includeObject: parseIncludeObject(url.searchParams.get("includeObject")),
      };
    }
  }
  return { table: false };
}

/** DeleteOptions from the body (as kubectl sends them) or else the query (as client-node does). */
async function deleteOptions(request: Request, url: URL): Promise<DeleteOptions> {
  const text = await request.text();
  let body: Record<string, unknown> = {};
  if (text.trim() !== "") {
    const parsed = parseJson(text);
    if (!isRecord(parsed)) throw badRequest("the DeleteOptions in the body must be an object");
    body = parsed;
  }
  const query = url.searchParams;

  const graceValue = body.gracePeriodSeconds ?? query.get("gracePeriodSeconds") ?? undefined;
  const grace = graceValue === undefined || graceValue === null ? undefined : Number(graceValue);
  if (grace !== undefined && !Number.isInteger(grace)) throw badRequest(`invalid gracePeriodSeconds: ${String(graceValue)}`);

  const orphan = body.orphanDependents ?? query.get("orphanDependents") ?? undefined;
  const policy = body.propagationPolicy ?? query.get("propagationPolicy") ?? (isTrue(orphan) ? "Orphan" : "Background");
  if (!["Background", "Foreground", "Orphan"].includes(String(policy))) {
    throw badRequest(`invalid propagationPolicy: ${String(policy)} (one of Background, Foreground, Orphan)`);
  }

  const preconditions = isRecord(body.preconditions) ? body.preconditions : {};
  return {
    // A negative grace period means "the default", as kubectl's --grace-period=-1 does.
    gracePeriodSeconds: grace !== undefined && grace >= 0 ? grace : undefined,
    propagationPolicy: policy as PropagationPolicy,
    preconditions: {
      uid: typeof preconditions.uid === "string" ? preconditions.uid : undefined,
      resourceVersion: typeof preconditions.resourceVersion === "string" ? preconditions.resourceVersion : undefined,
    },
  };
}

function deletedStatus(type: ResourceType, object: KubeObject) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    details: { ...detailsOf(type, object.metadata.name), uid: object.metadata.uid },
  };
}

async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  if (text.trim() === "") throw badRequest("the request has no body");
  return parseJson(text);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw badRequest(`the body of the request is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function discovery(request: Request, document: unknown): Response {
  requireGet(request);
  if (document === undefined) throw routeNotFound();
  return json(document);
}

function requireGet(request: Request) {
  if (request.method !== "GET" && request.method !== "HEAD") throw methodNotAllowed();
}

function notServed(): never {
  throw routeNotFound();
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`malformed path segment: ${segment}`);
  }
}

function integerParameter(url: URL, name: string): number | undefined {
  const value = url.searchParams.get(name);
  if (value === null || value === "") return undefined;
  if (!/^\d+$/.test(value)) throw badRequest(`invalid ${name}: ${value}`);
  return Number(value);
}

function isTrue(value: unknown): boolean {
  return value === true || value === "true" || value === "1";
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}
