// Tasks for the worker: what they are and how they are named on the queue (the queue itself,
// with its leases, retries and dead letters, is src/queue/queue.ts).
// A task id is `<kind>:<app>:<createdBy>[:<project>]`, the same identity as the record's hash tag,
// so at most one task per (kind, app, owner) can be pending (the dirty set holds the ids).
// Imports src/store/keys.ts only.

import { recordTag } from "../store/keys.ts";
import type { Owner } from "../domain/owner.ts";

export type TaskKind = "reconcile" | "restart";

export interface Task {
  kind: TaskKind;
  app: string;
  owner: Owner;
}

export function taskId(kind: TaskKind, app: string, owner: Owner): string {
  return `${kind}:${recordTag(app, owner)}`;
}

export function parseTaskId(id: string): Task | null {
  const [kind, app, createdBy, project, ...rest] = id.split(":");
  if ((kind !== "reconcile" && kind !== "restart") || !app || !createdBy || rest.length > 0) return null;
  return { kind, app, owner: { createdBy, project: project ?? null } };
}
