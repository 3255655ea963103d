// Durations as config.toml writes them: "200ms", "30s", "15m", "1h", "1h30m"; and back.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The units from the largest down. */
const UNITS_DOWN = Object.entries(UNIT_MS).sort(([, a], [, b]) => b - a);

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

/**
 * Milliseconds as a duration string, in the largest unit that holds them whole: 200 → "200ms",
 * 25000 → "25s", 900000 → "15m", 3600000 → "1h", 5400000 → "90m", 1500 → "1500ms". Exact:
 * `durationMs(durationText(ms)) === ms` for every whole ms.
 */
export function durationText(ms: number): string {
  if (ms === 0) return "0s";
  const [unit, size] = UNITS_DOWN.find(([, size]) => ms % size === 0) ?? ["ms", 1];
  return `${ms / size}${unit}`;
}
