// The terminal's two operations (spec §2, §8): open, which adds a drive to the owner's terminal
// and keeps it alive, and activity, a key press that keeps it alive. Both refresh the terminal's
// inactivity lease, then change its record through the write loop like any configuration write.
// Imports src/apps/terminal.ts, src/store/records.ts (types), src/domain (types),
// src/base/errors.ts and ./preconditions.ts, ./validation.ts, ./unavailable.ts, ./write-loop.ts.

import type { IntegratedApp } from "../domain/app.ts";
import type { AppRuntime } from "../domain/runtime.ts";
import type { Owner } from "../domain/owner.ts";
import type { FolderAccess } from "../domain/storage.ts";
import { drivePathOf, type TerminalConfig } from "../apps/terminal.ts";
import { invalidRequest, notFound } from "../base/errors.ts";
import type { RecordStore } from "../store/records.ts";
import { NO_PRECONDITIONS } from "./preconditions.ts";
import { orUnavailable } from "./unavailable.ts";
import { validateConfig } from "./validation.ts";
import type { WriteLoop } from "./write-loop.ts";

/** The terminal app and what its operations use. */
export interface Terminal {
  app: IntegratedApp<unknown>;
  store: RecordStore;
  /** Storage (folder access) and the inactivity leases. */
  runtime: AppRuntime;
  writes: WriteLoop;
  /** `[apps.terminal] inactivity`: how long an open or activity keeps the terminal alive. */
  inactivityMs: number;
}

/** What a terminal open answers (spec §2). */
export interface TerminalOpened {
  jobId: string;
  etag: string;
  /** Why folders were not added, or were taken out of the terminal, in words a user can act on. */
  warnings: string[];
}

/**
 * Opens the owner's terminal on `folder` (spec §2, §8): adds the folder's drive `/<driveId>` to
 * the terminal's folder list (deduplicated, order kept), refreshes the inactivity lease, and
 * answers the job, the ETag and why folders were left out.
 *
 * - A drive the owner cannot use (storage access "none") is not added; the open still succeeds
 *   and says why in `warnings`. A folder already in the list that became unusable (drive locked,
 *   membership gone) is taken out the same way: it would keep the terminal from running at all.
 * - An idle terminal (its lease ran out, so it has no pod) starts afresh with the drive opened
 *   now, as UCloud does: otherwise the list only grows, and every drive ever opened stays mounted.
 * - A changed list is a write: new ETag, reconcile (the pod is replaced with the new mounts).
 *   An unchanged list keeps the ETag, because the ETag is the pod's identity and a new one would
 *   replace a running terminal under the user's open shells; it still enqueues a reconcile, so
 *   a pod that went with an expired lease comes back. A record whose job is gone gets a new job
 *   and a new ETag, as a restart does. The first open registers the terminal's job.
 * - The lease is refreshed before the record's transaction, so the reconcile that transaction
 *   enqueues finds it alive.
 */
export async function openTerminal(terminal: Terminal, owner: Owner, folder: string): Promise<TerminalOpened> {
  const { app, store, writes } = terminal;
  const { storage, leases } = terminal.runtime;
  const drive = drivePathOf(folder);
  if (drive === null) throw invalidRequest(`folder: expected a UCloud path naming a drive, such as "/home-${owner.createdBy}"`);

  const [seen, leaseMs] = await orUnavailable(Promise.all([store.read(app.name, owner), leases.remaining(app.name, owner)]));
  const idle = leaseMs === 0;
  const listed = seen === null || idle ? [] : (seen.config as TerminalConfig).folders;
  const toCheck = [...new Set([...listed, drive])];
  const checked = await Promise.all(toCheck.map((path) => storage.access(owner, path)));
  const access = new Map<string, FolderAccess>(toCheck.map((path, index) => [path, checked[index]!]));

  await orUnavailable(leases.refresh(app.name, owner, terminal.inactivityMs));

  let warnings: string[] = [];
  const result = await writes.change(app, owner, NO_PRECONDITIONS, (record) => {
    const stored = record === null ? [] : (record.config as TerminalConfig).folders;
    // Start afresh only from the list that was judged idle: a concurrent open may have just added to it.
    const base = idle && record?.etag === seen?.etag ? [] : stored;
    const folders: string[] = [];
    warnings = [];
    for (const path of [...base, drive]) {
      if (folders.includes(path)) continue;
      const found = access.get(path);
      if (found?.access === "none") {
        const why = found.why ?? "it cannot be used";
        warnings.push(path === drive ? `${path} was not added to the terminal: ${why}.` : `${path} was taken out of the terminal: ${why}.`);
        continue;
      }
      folders.push(path);
    }
    if (record !== null && sameList(folders, stored)) return { kind: "touch" };
    return { kind: "write", config: validateConfig(app, { folders }), as: "open" };
  });
  return { jobId: result.jobId!, etag: result.etag!, warnings };
}

/**
 * A key press in the owner's terminal: refreshes its inactivity lease. When the lease had run
 * out (the pod is gone or going), the worker is asked to look again at once rather than at the
 * next resync. No record: 404.
 */
export async function terminalActivity(terminal: Terminal, owner: Owner): Promise<void> {
  const { app, store, writes } = terminal;
  const { leases } = terminal.runtime;
  const noTerminal = () => notFound("There is no terminal to keep alive: open one first.");
  if ((await orUnavailable(store.read(app.name, owner))) === null) throw noTerminal();
  const left = await orUnavailable(leases.remaining(app.name, owner));
  await orUnavailable(leases.refresh(app.name, owner, terminal.inactivityMs));
  if (left === 0) {
    await writes.change(app, owner, NO_PRECONDITIONS, (record) => {
      if (record === null) throw noTerminal();
      return { kind: "touch" };
    });
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, index) => item === b[index]);
}
