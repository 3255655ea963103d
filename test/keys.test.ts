// The redis-cli section of docs/operations.md is the operators' map of Redis: it must list every key the
// service builds, and the spec's record key must look exactly as spec §9 shows it.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { keyPatterns, keys } from "../src/store/keys.ts";
import { parseTaskId, taskId } from "../src/queue/tasks.ts";

describe("key layout (spec §9)", () => {
  test("the record of (syncthing, alice) is iapps:cfg:{syncthing:alice}, with a project appended", () => {
    expect(keys.record("syncthing", { createdBy: "alice", project: null })).toBe("iapps:cfg:{syncthing:alice}");
    expect(keys.record("syncthing", { createdBy: "alice", project: "p1" })).toBe("iapps:cfg:{syncthing:alice:p1}");
  });

  test("keys one transaction touches share the record's hash tag", () => {
    const owner = { createdBy: "alice", project: null };
    const tag = (key: string) => /\{([^}]*)\}/.exec(key)?.[1];
    expect(tag(keys.jobClaim("syncthing", owner))).toBe(tag(keys.record("syncthing", owner)));
    expect(tag(keys.etagLog("syncthing", owner))).toBe(tag(keys.record("syncthing", owner)));
  });

  test("docs/operations.md documents every key pattern", () => {
    const readme = readFileSync(new URL("../docs/operations.md", import.meta.url), "utf8");
    for (const pattern of Object.values(keyPatterns)) expect(readme).toContain(`\`${pattern}\``);
    expect(Object.keys(keyPatterns).sort()).toEqual(Object.keys(keys).sort());
  });

  test("task ids name kind, app and owner, and read back", () => {
    const owner = { createdBy: "alice", project: "p1" };
    expect(taskId("restart", "syncthing", owner)).toBe("restart:syncthing:alice:p1");
    expect(parseTaskId(taskId("reconcile", "terminal", owner))).toEqual({ kind: "reconcile", app: "terminal", owner });
    expect(parseTaskId("bogus:x")).toBeNull();
  });
});
