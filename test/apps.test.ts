// The two apps' rules (spec §4.2, §7, §8): Syncthing device IDs, configuration validation with
// errors that name the field at fault, and the job specification each app registers.

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import type { JobSpecification } from "../src/domain/app.ts";
import { deviceIdProblem, withCheckCharacters } from "../src/apps/syncthing-device-id.ts";
import { syncthing } from "../src/apps/syncthing.ts";
import { terminal } from "../src/apps/terminal.ts";
import { AppError } from "../src/base/errors.ts";
import { validateConfig } from "../src/service/validation.ts";

const DEVICE_A = "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2";
const DEVICE_B = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

const alice = { createdBy: "alice", project: null };

const compact = (id: string) => id.replace(/-/g, "");
const dashed = (compactId: string) => compactId.match(/.{7}/g)!.join("-");
const sha16 = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);

/** `n` distinct valid device IDs. */
function deviceIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    let base = "";
    for (let k = i, d = 0; d < 52; d++, k = Math.floor(k / 32)) base += ALPHABET[k % 32];
    return withCheckCharacters(base);
  });
}

/** The 400 that validateConfig throws for `config` (fails the test when it accepts it). */
function rejection(app: typeof syncthing | typeof terminal, config: unknown): AppError {
  try {
    validateConfig(app as never, config);
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    const error = e as AppError;
    expect(error.status).toBe(400);
    expect(error.code).toBe("INVALID_CONFIGURATION");
    return error;
  }
  throw new Error(`expected the configuration to be refused: ${JSON.stringify(config).slice(0, 200)}`);
}

const accepts = (app: typeof syncthing | typeof terminal, config: unknown) => validateConfig(app as never, config);

const folder = (ucloudPath: string, id?: string) => (id === undefined ? { ucloudPath } : { ucloudPath, id });
const device = (deviceId: string, label = "laptop") => ({ deviceId, label });

describe("a Syncthing device ID is 8 groups of 7 base32 characters with Syncthing's check characters", () => {
  test.each([DEVICE_A, DEVICE_B])("the known-valid ID %s is accepted", (id) => {
    expect(deviceIdProblem(id)).toBeNull();
  });

  test.each([DEVICE_A, DEVICE_B])("%s is accepted in lower case", (id) => {
    expect(deviceIdProblem(id.toLowerCase())).toBeNull();
  });

  test.each([DEVICE_A, DEVICE_B])("%s is accepted without dashes", (id) => {
    expect(deviceIdProblem(compact(id))).toBeNull();
    expect(deviceIdProblem(compact(id).toLowerCase())).toBeNull();
  });

  test("a wrong check character (the last character of groups 2, 4, 6 and 8) is rejected, saying which", () => {
    const id = compact(DEVICE_A);
    for (const [n, index] of [13, 27, 41, 55].entries()) {
      const other = ALPHABET[(ALPHABET.indexOf(id[index]!) + 1) % 32]!;
      const wrong = id.slice(0, index) + other + id.slice(index + 1);
      const problem = deviceIdProblem(dashed(wrong));
      expect(problem).not.toBeNull();
      expect(problem).toContain(`check character ${n + 1}`);
    }
  });

  test("any single mistyped character is rejected", () => {
    for (const id of [DEVICE_A, DEVICE_B]) {
      const chars = compact(id);
      for (let index = 0; index < chars.length; index++) {
        for (const replacement of ALPHABET) {
          if (replacement === chars[index]) continue;
          const typo = chars.slice(0, index) + replacement + chars.slice(index + 1);
          expect(deviceIdProblem(dashed(typo))).not.toBeNull();
        }
      }
    }
  });

  test("two swapped groups are rejected", () => {
    const groups = DEVICE_B.split("-");
    [groups[0], groups[1]] = [groups[1]!, groups[0]!];
    expect(deviceIdProblem(groups.join("-"))).not.toBeNull();
  });

  test.each([
    ["one group missing", DEVICE_A.split("-").slice(0, 7).join("-")],
    ["one character too many", `${DEVICE_A}A`],
    ["one character too few", DEVICE_A.slice(0, -1)],
    ["the 52-character form without check characters", compact(DEVICE_A).replace(/(.{13})./g, "$1")],
    ["empty", ""],
    ["dashes only", "-------"],
  ])("a wrong length (%s) is rejected", (_, id) => {
    const problem = deviceIdProblem(id);
    expect(problem).not.toBeNull();
    expect(problem).toContain("8 groups of 7");
  });

  test.each([
    ["the digit 1", "1"],
    ["the digit 0", "0"],
    ["the digit 8", "8"],
    ["a symbol", "!"],
    ["a non-ASCII letter", "Ä"],
  ])("a character outside the base32 alphabet (%s) is rejected", (_, bad) => {
    const id = compact(DEVICE_A);
    const problem = deviceIdProblem(dashed(bad + id.slice(1)));
    expect(problem).not.toBeNull();
    expect(problem).toContain("A-Z");
  });

  test("IDs built with Syncthing's check characters from any 52 base32 characters are accepted", () => {
    for (const id of deviceIds(200)) expect(deviceIdProblem(id)).toBeNull();
  });
});

describe("a valid Syncthing configuration is accepted", () => {
  test("the default configuration is {folders: [], devices: []} and valid", () => {
    expect(syncthing.defaultConfig(alice)).toEqual({ folders: [], devices: [] });
    expect(accepts(syncthing, syncthing.defaultConfig(alice))).toEqual({ folders: [], devices: [] });
  });

  test("folders with ucloudPath, optional path and id, devices with deviceId and label", () => {
    const config = {
      folders: [folder("/home-alice/Documents", "docs"), { ucloudPath: "/project-x/data", path: "data", id: "data" }],
      devices: [device(DEVICE_A), device(DEVICE_B.toLowerCase(), "phone")],
    };
    // Spec §7: a device ID is stored in Syncthing's canonical form, whatever case it was sent in.
    expect(accepts(syncthing, config)).toMatchObject({ ...config, devices: [device(DEVICE_A), device(DEVICE_B, "phone")] });
  });

  test("two folders with empty ids on different paths are fine (their filled-in ids differ)", () => {
    expect(() => accepts(syncthing, { folders: [folder("/home-alice/a", ""), folder("/home-alice/b", "")], devices: [] })).not.toThrow();
    expect(() => accepts(syncthing, { folders: [folder("/home-alice/a"), folder("/home-alice/b")], devices: [] })).not.toThrow();
  });

  test("1,000 folders and 1,000 devices are allowed", () => {
    const folders = Array.from({ length: 1000 }, (_, i) => folder(`/home-alice/f${i}`, `f${i}`));
    const devices = deviceIds(1000).map((id) => device(id));
    expect(() => accepts(syncthing, { folders, devices })).not.toThrow();
  });
});

describe("two Syncthing folders may not share an id", () => {
  test("two equal explicit ids: the error names the second folder's id", () => {
    const error = rejection(syncthing, { folders: [folder("/home-alice/a", "x"), folder("/home-alice/b", "x")], devices: [] });
    expect(error.why).toStartWith("config.folders[1].id:");
    expect(error.why).toContain("duplicate");
  });

  test("the later duplicate is named, not the first folder", () => {
    const error = rejection(syncthing, {
      folders: [folder("/home-alice/a", "a"), folder("/home-alice/b", "b"), folder("/home-alice/c", "c"), folder("/home-alice/d", "b")],
      devices: [],
    });
    expect(error.why).toStartWith("config.folders[3].id:");
  });

  test("two empty ids on the same ucloudPath collide (empty ids are filled from SHA-256 of the path)", () => {
    const error = rejection(syncthing, { folders: [folder("/home-alice/a", ""), folder("/home-alice/a", "")], devices: [] });
    expect(error.why).toStartWith("config.folders[1].id:");
  });

  test("two missing ids on the same ucloudPath collide", () => {
    const error = rejection(syncthing, { folders: [folder("/home-alice/a"), folder("/home-alice/a")], devices: [] });
    expect(error.why).toStartWith("config.folders[1].id:");
  });

  test("an empty id collides with an explicit id equal to the first 16 hex characters of SHA-256(ucloudPath)", () => {
    const filled = sha16("/home-alice/a");
    const error = rejection(syncthing, { folders: [folder("/home-alice/a", ""), folder("/home-alice/b", filled)], devices: [] });
    expect(error.why).toStartWith("config.folders[1].id:");
    expect(error.why).toContain(filled);
  });

  test("two explicit, different ids on the same path are fine", () => {
    expect(() => accepts(syncthing, { folders: [folder("/home-alice/a", "one"), folder("/home-alice/a", "two")], devices: [] })).not.toThrow();
  });
});

describe("two Syncthing devices may not share a device ID", () => {
  test("the same ID twice: the error names the second device", () => {
    const error = rejection(syncthing, { folders: [], devices: [device(DEVICE_A), device(DEVICE_B), device(DEVICE_A)] });
    expect(error.why).toStartWith("config.devices[2].deviceId:");
    expect(error.why).toContain("duplicate");
  });

  test("IDs differing only in case are the same device", () => {
    const error = rejection(syncthing, { folders: [], devices: [device(DEVICE_A), device(DEVICE_A.toLowerCase())] });
    expect(error.why).toStartWith("config.devices[1].deviceId:");
  });

  test("IDs differing only in dashes are the same device", () => {
    const error = rejection(syncthing, { folders: [], devices: [device(DEVICE_A), device(compact(DEVICE_A))] });
    expect(error.why).toStartWith("config.devices[1].deviceId:");
  });

  test("IDs differing in case and dashes at once are the same device", () => {
    const error = rejection(syncthing, { folders: [], devices: [device(compact(DEVICE_B).toLowerCase()), device(DEVICE_B)] });
    expect(error.why).toStartWith("config.devices[1].deviceId:");
  });
});

describe("a Syncthing device ID in a configuration must be a real one", () => {
  test("a wrong check character names the device and the problem", () => {
    const wrong = `${DEVICE_A.slice(0, -1)}${DEVICE_A.endsWith("A") ? "B" : "A"}`;
    const error = rejection(syncthing, { folders: [], devices: [device(DEVICE_B), device(wrong)] });
    expect(error.why).toStartWith("config.devices[1].deviceId:");
    expect(error.why).toContain("check character");
  });

  test("a made-up ID names the device", () => {
    const error = rejection(syncthing, { folders: [], devices: [device("my-laptop")] });
    expect(error.why).toStartWith("config.devices[0].deviceId:");
    expect(error.why).toContain("Syncthing device ID");
  });
});

describe("at most 1,000 Syncthing folders and 1,000 devices", () => {
  test("1,001 folders are refused, naming config.folders", () => {
    const folders = Array.from({ length: 1001 }, (_, i) => folder(`/home-alice/f${i}`, `f${i}`));
    const error = rejection(syncthing, { folders, devices: [] });
    expect(error.why).toStartWith("config.folders:");
    expect(error.why).toContain("1000");
  });

  test("1,001 devices are refused, naming config.devices", () => {
    const devices = deviceIds(1001).map((id) => device(id));
    const error = rejection(syncthing, { folders: [], devices });
    expect(error.why).toStartWith("config.devices:");
    expect(error.why).toContain("1000");
  });
});

describe("Syncthing strings have sane lengths", () => {
  test.each([
    ["config.folders[0].ucloudPath", { folders: [folder(`/home-alice/${"a".repeat(5000)}`, "x")], devices: [] }],
    ["config.folders[0].path", { folders: [{ ucloudPath: "/home-alice/a", path: "p".repeat(5000), id: "x" }], devices: [] }],
    ["config.folders[1].id", { folders: [folder("/home-alice/a", "x"), folder("/home-alice/b", "i".repeat(10_000))], devices: [] }],
    ["config.devices[0].label", { folders: [], devices: [device(DEVICE_A, "l".repeat(10_000))] }],
    ["config.devices[0].deviceId", { folders: [], devices: [device(`${DEVICE_A}-`.repeat(100))] }],
  ])("an over-long string is refused, naming %s", (path, config) => {
    const error = rejection(syncthing, config);
    expect(error.why).toStartWith(`${path}:`);
    expect(error.why).toContain("at most");
  });

  test("strings at the limits are accepted (id and label 256, paths 4096)", () => {
    const config = {
      folders: [{ ucloudPath: `/${"a".repeat(4095)}`, path: "p".repeat(4096), id: "i".repeat(256) }],
      devices: [device(DEVICE_A, "l".repeat(256))],
    };
    expect(() => accepts(syncthing, config)).not.toThrow();
  });
});

describe("a Syncthing folder's ucloudPath must be a UCloud path", () => {
  test.each([
    ["a relative path", "home-alice/Documents"],
    ["the empty string", ""],
    ["the root alone", "/"],
    ["a '..' segment", "/home-alice/../home-bob"],
    ["a '.' segment", "/home-alice/./Documents"],
    ["a control character", "/home-alice/a\u0000b"],
    ["a newline", "/home-alice/a\nb"],
  ])("%s is refused, naming config.folders[1].ucloudPath", (_, path) => {
    const error = rejection(syncthing, { folders: [folder("/home-alice/ok", "ok"), folder(path, "x")], devices: [] });
    expect(error.why).toStartWith("config.folders[1].ucloudPath:");
  });

  test("a number is refused, naming the field and the type", () => {
    const error = rejection(syncthing, { folders: [{ ucloudPath: 42, id: "x" }], devices: [] });
    expect(error.why).toStartWith("config.folders[0].ucloudPath:");
    expect(error.why).toContain("string");
  });

  test("a missing ucloudPath is refused, naming it", () => {
    const error = rejection(syncthing, { folders: [{ id: "x" }], devices: [] });
    expect(error.why).toStartWith("config.folders[0].ucloudPath:");
  });
});

describe("a Syncthing configuration of the wrong shape names the field at fault", () => {
  test.each([
    ["config.folders", { folders: "all", devices: [] }],
    ["config.devices", { folders: [], devices: { deviceId: DEVICE_A } }],
    ["config.folders", { devices: [] }],
    ["config.devices", { folders: [] }],
    ["config.folders[0]", { folders: [null], devices: [] }],
    ["config.devices[0].deviceId", { folders: [], devices: [{ label: "x" }] }],
    ["config.devices[0].label", { folders: [], devices: [{ deviceId: DEVICE_A, label: 7 }] }],
    ["config.folders[0].id", { folders: [{ ucloudPath: "/home-alice/a", id: 7 }], devices: [] }],
  ])("%s", (path, config) => {
    const error = rejection(syncthing, config);
    expect(error.why).toStartWith(`${path}:`);
  });

  test.each([null, "config", 42, true])("a configuration that is not an object (%p) names config", (config) => {
    const error = rejection(syncthing, config);
    expect(error.why).toStartWith("config");
  });
});

describe("the terminal's configuration is {folders: string[]}", () => {
  test("the default is {folders: []}", () => {
    expect(terminal.defaultConfig(alice)).toEqual({ folders: [] });
    expect(accepts(terminal, terminal.defaultConfig(alice))).toEqual({ folders: [] });
  });

  test("a list of UCloud paths is accepted", () => {
    expect(accepts(terminal, { folders: ["/home-alice", "/project-x"] })).toEqual({ folders: ["/home-alice", "/project-x"] });
  });

  test.each([
    ["config.folders", { folders: "/home-alice" }],
    ["config.folders", {}],
    ["config.folders[1]", { folders: ["/home-alice", 3] }],
    ["config.folders[0]", { folders: ["home-alice"] }],
    ["config.folders[0]", { folders: ["/home-alice/../home-bob"] }],
  ])("a wrong shape or a non-UCloud path names %s", (path, config) => {
    const error = rejection(terminal, config);
    expect(error.why).toStartWith(`${path}:`);
  });

  test("more than 1,000 folders are refused", () => {
    const error = rejection(terminal, { folders: Array.from({ length: 1001 }, (_, i) => `/drive-${i}`) });
    expect(error.why).toStartWith("config.folders:");
  });
});

describe("the job specification each app registers (spec §4.2)", () => {
  const base = (app: string): JobSpecification => ({
    product: { id: app, category: app, provider: "k8s" },
    application: { name: app, version: "latest" },
    name: app,
    replicas: 1,
    parameters: {},
    resources: [],
  });

  test("syncthing: application syncthing version \"1\", label ucloud.dk/ucxport=8435, stateFolder /home-<user>/Syncthing", () => {
    const spec = syncthing.mutateJobSpec(alice, base("syncthing"));
    expect(spec).toEqual({
      product: { id: "syncthing", category: "syncthing", provider: "k8s" },
      application: { name: "syncthing", version: "1" },
      name: "syncthing",
      replicas: 1,
      parameters: { stateFolder: { type: "file", path: "/home-alice/Syncthing", readOnly: false } },
      resources: [],
      labels: { "ucloud.dk/ucxport": "8435" },
    });
  });

  test("syncthing: the state folder is in the home drive of whoever the owner is", () => {
    const spec = syncthing.mutateJobSpec({ createdBy: "bob#1234", project: null }, base("syncthing"));
    expect(spec.parameters.stateFolder).toMatchObject({ path: "/home-bob#1234/Syncthing" });
  });

  test("terminal: name \"Integrated terminal\", application unknown@unknown, product and replicas kept", () => {
    const spec = terminal.mutateJobSpec(alice, base("terminal"));
    expect(spec).toEqual({
      product: { id: "terminal", category: "terminal", provider: "k8s" },
      application: { name: "unknown", version: "unknown" },
      name: "Integrated terminal",
      replicas: 1,
      parameters: {},
      resources: [],
    });
  });

  test("neither app changes the specification it is given", () => {
    for (const app of [syncthing, terminal]) {
      const given = base(app.name);
      const copy = structuredClone(given);
      app.mutateJobSpec(alice, given);
      expect(given).toEqual(copy);
    }
  });
});
