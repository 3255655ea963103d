// The JSON text of values that never change once made, remembered by identity. A replica's cache
// keeps the text of every configuration it holds (src/cache/record-cache.ts measures its entries
// by it), and the HTTP layer answers a read with that text rather than serialising the
// configuration again for every request: once per record version. Imports nothing.

const texts = new WeakMap<object, string>();

/**
 * Remembers `text` as the JSON of `value` for as long as `value` lives. The caller promises that
 * `value` never changes (a cached record is shared by every request that reads it, and so never is).
 */
export function rememberJsonText(value: object, text: string): void {
  texts.set(value, text);
}

/** The JSON text of `value`: the remembered one, else JSON.stringify's. */
export function jsonText(value: unknown): string | undefined {
  const remembered = typeof value === "object" && value !== null ? texts.get(value) : undefined;
  return remembered ?? JSON.stringify(value);
}
