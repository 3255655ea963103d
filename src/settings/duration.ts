// Durations as config.toml writes them: "200ms", "30s", "15m", "1h", "1h30m".

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds of a duration string, or null when it is not one. */
export function durationMs(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  let total = 0;
  let rest = trimmed;
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!match) return null;
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return Number.isFinite(total) ? Math.round(total) : null;
}
