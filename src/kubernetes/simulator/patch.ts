// PATCH bodies applied to a stored object: JSON Patch (RFC 6902, the default content type of
// `@kubernetes/client-node`'s patch methods), JSON Merge Patch (RFC 7386), and the strategic
// merge patch of kubectl (label, annotate, apply), for the lists of pods and services that have
// merge keys (containers and env by name, ports by port, ...). Server-side apply is not
// supported. Imports ./objects.ts and ./status.ts.

import { isRecord } from "./objects.ts";
import { badRequest, KubeStatusError } from "./status.ts";

export function applyPatch(target: unknown, contentType: string, patch: unknown): unknown {
  const mediaType = contentType.split(";")[0]!.trim().toLowerCase();
  switch (mediaType) {
    case "application/json-patch+json":
      return applyJsonPatch(target, patch);
    case "application/merge-patch+json":
      return mergePatch(target, patch);
    case "application/strategic-merge-patch+json":
      return strategicMergePatch(target, patch);
    default:
      throw new KubeStatusError(
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (not ${mediaType || "none"})`,
      );
  }
}

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return patch;
  const result: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** How the elements of a list field are matched, for the list fields of pods and services that are merged. */
const MERGE_KEYS: Record<string, (element: Record<string, unknown>) => string> = {
  containers: () => "name",
  initContainers: () => "name",
  ephemeralContainers: () => "name",
  env: () => "name",
  volumes: () => "name",
  volumeMounts: () => "mountPath",
  imagePullSecrets: () => "name",
  ownerReferences: () => "uid",
  conditions: () => "type",
  // A container's ports merge by containerPort, a service's by port: one field name, two kinds.
  ports: (element) => ("containerPort" in element ? "containerPort" : "port"),
};

/** Like a merge patch, but lists with a merge key are merged element by element. */
export function strategicMergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return patch;
  if (patch.$patch === "replace") return withoutDirectives(patch);
  const result: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith("$deleteFromPrimitiveList/")) {
      const field = key.slice("$deleteFromPrimitiveList/".length);
      const removed = Array.isArray(value) ? value : [];
      if (Array.isArray(result[field])) result[field] = (result[field] as unknown[]).filter((item) => !removed.includes(item));
    } else if (key.startsWith("$")) {
      // $setElementOrder and $retainKeys only order or prune what the merge leaves: ignored here.
    } else if (value === null) {
      delete result[key];
    } else if (Array.isArray(value) && MERGE_KEYS[key] && Array.isArray(result[key])) {
      result[key] = mergeList(result[key] as unknown[], value, MERGE_KEYS[key]);
    } else {
      result[key] = isRecord(value) ? strategicMergePatch(result[key], value) : value;
    }
  }
  return result;
}

function mergeList(existing: unknown[], patch: unknown[], mergeKey: (element: Record<string, unknown>) => string): unknown[] {
  if (patch.some((element) => isRecord(element) && element.$patch === "replace")) {
    return patch.filter((element) => !(isRecord(element) && element.$patch === "replace"));
  }
  const result = [...existing];
  for (const element of patch) {
    if (!isRecord(element)) {
      if (!result.includes(element)) result.push(element);
      continue;
    }
    const key = mergeKey(element);
    const index = result.findIndex((candidate) => isRecord(candidate) && candidate[key] === element[key]);
    if (element.$patch === "delete") {
      if (index >= 0) result.splice(index, 1);
    } else if (index >= 0) {
      result[index] = strategicMergePatch(result[index], element);
    } else {
      result.push(strategicMergePatch(undefined, element));
    }
  }
  return result;
}

function withoutDirectives(patch: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(patch).filter(([key]) => !key.startsWith("$")));
}

type Operation = { op: string; path: string; value?: unknown; from?: string };

export function applyJsonPatch(target: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw badRequest("a JSON patch must be a list of operations");
  let document = structuredClone(target);
  for (const operation of patch as Operation[]) {
    if (!isRecord(operation) || typeof operation.path !== "string") throw badRequest("invalid JSON patch operation");
    switch (operation.op) {
      case "add":
        document = add(document, pointer(operation.path), operation.value);
        break;
      case "remove":
        document = remove(document, pointer(operation.path));
        break;
      case "replace":
        document = add(remove(document, pointer(operation.path)), pointer(operation.path), operation.value);
        break;
      case "move": {
        const from = pointer(operation.from ?? "");
        const value = read(document, from);
        document = add(remove(document, from), pointer(operation.path), value);
        break;
      }
      case "copy":
        document = add(document, pointer(operation.path), structuredClone(read(document, pointer(operation.from ?? ""))));
        break;
      case "test":
        if (JSON.stringify(read(document, pointer(operation.path))) !== JSON.stringify(operation.value)) {
          throw new KubeStatusError("Invalid", `the JSON patch test at ${operation.path} failed`);
        }
        break;
      default:
        throw badRequest(`unknown JSON patch operation '${String(operation.op)}'`);
    }
  }
  return document;
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw badRequest(`invalid JSON pointer '${path}'`);
  return path
    .slice(1)
    .split("/")
    .map((token) => token.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function read(document: unknown, path: string[]): unknown {
  let current = document;
  for (const token of path) {
    if (Array.isArray(current)) current = current[Number(token)];
    else if (isRecord(current)) current = current[token];
    else current = undefined;
    if (current === undefined) throw new KubeStatusError("Invalid", `the JSON patch path /${path.join("/")} does not exist`);
  }
  return current;
}

/** Adds (or, for an object member, sets) `value` at `path`; answers the changed document. */
function add(document: unknown, path: string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const parent = read(document, path.slice(0, -1));
  const last = path[path.length - 1]!;
  if (Array.isArray(parent)) {
    const index = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(index) || index < 0 || index > parent.length) throw badRequest(`invalid array index '${last}'`);
    parent.splice(index, 0, value);
  } else if (isRecord(parent)) {
    parent[last] = value;
  } else {
    throw new KubeStatusError("Invalid", `the JSON patch path /${path.join("/")} has no parent object`);
  }
  return document;
}

function remove(document: unknown, path: string[]): unknown {
  read(document, path);
  if (path.length === 0) return undefined;
  const parent = read(document, path.slice(0, -1));
  const last = path[path.length - 1]!;
  if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else delete (parent as Record<string, unknown>)[last];
  return document;
}
