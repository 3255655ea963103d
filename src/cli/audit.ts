// `bun src/main.ts audit [--owner NAME] [--app APP] [--follow]`: the audit stream `iapps:audit`
// (spec §11) as JSON lines, oldest first; `--follow` then waits for new entries (XREAD BLOCK) until
// the process is stopped. The filters are applied here: the stream is one key, read in batches.
// Imports src/store/audit.ts, src/store/connections.ts (types) and src/domain (types).

import type { AuditEntry } from "../domain/record.ts";
import { followAudit, readAudit } from "../store/audit.ts";
import type { CommandConnection } from "../store/connections.ts";

export class AuditCommandError extends Error {}

export const AUDIT_USAGE = "usage: bun src/main.ts audit [--owner NAME] [--app APP] [--follow]";

interface AuditFilter {
  owner?: string;
  app?: string;
  follow: boolean;
}

function parseAuditArguments(args: string[]): AuditFilter {
  const filter: AuditFilter = { follow: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--follow") filter.follow = true;
    else if (arg === "--owner" || arg === "--app") {
      const value = args[++i];
      if (value === undefined || value === "") throw new AuditCommandError(`${arg} needs a value\n${AUDIT_USAGE}`);
      if (arg === "--owner") filter.owner = value;
      else filter.app = value;
    } else throw new AuditCommandError(`audit: unknown argument ${arg}\n${AUDIT_USAGE}`);
  }
  return filter;
}

const BATCH = 1000;

/**
 * Prints the entries that pass the filter, one JSON object a line; with `--follow`, keeps
 * printing new ones, each XREAD blocking at most `blockMs` (under the connection's command timeout).
 */
export async function auditCommand(redis: CommandConnection, args: string[], print: (line: string) => void, blockMs: number, stopped: () => boolean = () => false): Promise<void> {
  const filter = parseAuditArguments(args);
  const passes = (entry: AuditEntry) => (filter.owner === undefined || entry.owner === filter.owner) && (filter.app === undefined || entry.app === filter.app);
  const show = ({ id, ...entry }: AuditEntry & { id: string }) => {
    if (passes(entry)) print(JSON.stringify({ id, ...entry }));
  };
  const client = await redis();
  let last = "-";
  for (;;) {
    const entries = await readAudit(client, last === "-" ? "-" : `(${last}`, BATCH);
    for (const entry of entries) show(entry);
    if (entries.length < BATCH) {
      if (entries.length > 0) last = entries[entries.length - 1]!.id;
      break;
    }
    last = entries[entries.length - 1]!.id;
  }
  if (!filter.follow) return;
  let after = last === "-" ? "0-0" : last;
  while (!stopped()) {
    for (const entry of await followAudit(client, after, blockMs)) {
      show(entry);
      after = entry.id;
    }
  }
}
