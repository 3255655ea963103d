// What the worker does with a task: one function per task kind. The reconciler
// (src/reconciler/reconciler.ts) is one; tests of the queue provide their own.
// Imports src/domain/owner.ts only.

import type { Owner } from "../domain/owner.ts";

/**
 * What a handler may answer: "run me again after", a reconcile of the same record scheduled
 * that many ms later. Handlers that answer nothing (tests' own) are fine too.
 */
export interface TaskResult {
  requeueAfterMs?: number | null;
}

/** The delay a handler's answer asks for, or null. */
export function requeueAfter(answer: unknown): number | null {
  const ms = (answer as TaskResult | undefined)?.requeueAfterMs;
  return typeof ms === "number" ? ms : null;
}

export interface TaskHandlers {
  /**
   * Level-triggered and idempotent: make the world match the record of (app, owner). `signal`
   * aborts when the task's lease is lost: stop before the next change to the world.
   */
  reconcile(app: string, owner: Owner, signal?: AbortSignal): Promise<unknown>;
  /** Delete the rank-0 pod of the record's job so that the reconciler recreates it. */
  restart(app: string, owner: Owner, signal?: AbortSignal): Promise<unknown>;
}
