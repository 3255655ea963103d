// The one way tests wait for something: ask until it holds, never sleep for a guess.

/**
 * Calls `check` until it answers something truthy, and answers that. Throws, naming `what`,
 * once `seconds` have passed without it. `everyMs`: the pause between two calls.
 */
export async function eventually<T>(
  check: () => T | false | null | undefined | Promise<T | false | null | undefined>,
  seconds: number,
  what: string,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
