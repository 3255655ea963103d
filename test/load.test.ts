// No load shedding under ordinary load (issue 14): a burst of writes larger than the pool of
// transaction connections waits its turn ([redis] pool_wait) instead of answering 503 at once.
// A burst answers 200 everywhere; the test says which statuses it got when it fails.

import { describe, expect, test } from "bun:test";
import { providerCall } from "./support/service.ts";
import { startHarness } from "./support/harness.ts";

const h = await startHarness({ storage: { folders: [] } });

describe("a burst of writes waits for the pool rather than answering 503", () => {
  test("300 concurrent first updates on one replica with the default configuration: all 200", async () => {
    const owners = Array.from({ length: 300 }, (_, i) => ({ createdBy: `burst${i}`, project: null }));
    const answers = await Promise.all(
      owners.map((principal) => providerCall(h.api, "syncthing", "update", { principal, config: { folders: [], devices: [] } })),
    );
    const statuses: Record<number, number> = {};
    for (const answer of answers) statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
    expect(statuses).toEqual({ 200: 300 });
  }, 60_000);
});
