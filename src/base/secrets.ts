// Secrets never printed (spec §10): the password of a URL or connection string, wherever it
// appears in a text (a configured URL, a library's error message, a whole log line), becomes
// `***`. Base level: logs, the CLI, errors and every layer may use it. Imports nothing.

/**
 * `scheme://user:password@`: the user (kept) has no ':' or '@'; the password (masked) runs to the
 * last '@' before the host, as URL parsers read it, so a raw '@' in it is masked too. Neither
 * crosses whitespace, '"', '/', '?' or '#': in a log line the match stays inside one value, and a
 * URL without a password (`redis://[::1]:6379`) is never taken for one.
 */
const USER_INFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s"/?#@:[\]]*):[^\s"/?#]+@/gi;
/** `?password=...` in a query: ioredis reads connection options from it. */
const QUERY_PASSWORD = /([?&](?:password|pass|pwd)=)[^\s"&#]+/gi;

export const MASK = "***";

/** `text` with every URL password masked: `redis://user:hunter2@host:6379` → `redis://user:***@host:6379`. */
export function maskSecrets(text: string): string {
  return text.replace(USER_INFO, `$1:${MASK}@`).replace(QUERY_PASSWORD, `$1${MASK}`);
}
