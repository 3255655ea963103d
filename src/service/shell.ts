// The terminal's shell sessions (spec §8, UCloud's openTerminalInFolder): opening one checks that
// the folder exists and its owner may use it, then makes a session in Redis bound to that user and
// folder (nothing else is created: the terminal opens when the session is attached, src/shell).
// Imports src/store/shell-sessions.ts (types), src/domain (types), src/base/errors.ts and
// ./unavailable.ts.

import { forbidden, notFound } from "../base/errors.ts";
import type { Owner } from "../domain/owner.ts";
import type { Storage } from "../domain/storage.ts";
import type { RedisShellSessions, ShellSession } from "../store/shell-sessions.ts";
import { orUnavailable } from "./unavailable.ts";

export interface ShellSessionSettings {
  sessions: RedisShellSessions;
  storage: Storage;
  /** `[apps.terminal] shell_session_ttl`. */
  ttlMs: number;
  /** `[apps.terminal] shell_sessions_per_user`. */
  perUser: number;
}

/**
 * A new shell session of `owner` in `folder`. The folder must exist (404 "Folder cannot be
 * found", as UCloud says) and the owner may use its drive (403, and why); a user holding
 * `perUser` live sessions is refused (403) until one expires.
 */
export async function openShellSession(settings: ShellSessionSettings, owner: Owner, folder: string): Promise<ShellSession> {
  const found = await settings.storage.access(owner, folder);
  if (found.access === "none") {
    if (found.missing || found.driveId === "") throw notFound("Folder cannot be found");
    throw forbidden(`You cannot open a terminal in ${folder}: ${found.why ?? "permission denied"}.`);
  }
  const session = await orUnavailable(settings.sessions.create(owner, folder, settings.ttlMs, settings.perUser));
  if (session === null) {
    throw forbidden(`You already have ${settings.perUser} terminal sessions open; close one, or wait until one expires.`);
  }
  return session;
}
