// What the worker does with a task: one function per task kind. The reconciler
// (src/reconciler/reconciler.ts) implements them; tests of the queue provide their own.
// Imports src/store/keys.ts (for Owner) only.

import type { Owner } from "../store/keys.ts";

export interface TaskHandlers {
  /**
   * Level-triggered and idempotent: make the world match the record of (app, owner). `signal`
   * aborts when the task's lease is lost: stop before the next change to the world.
   */
  reconcile(app: string, owner: Owner, signal?: AbortSignal): Promise<void>;
  /** Delete the rank-0 pod of the record's job so that the reconciler recreates it. */
  restart(app: string, owner: Owner, signal?: AbortSignal): Promise<void>;
}
