// Property tests against a real Redis (spec §2 "Errors", §3): no client input ever produces a 5xx,
// a rejected request changes nothing, every error has UCloud's shape, and an update with the
// current ETag answers 200 exactly when the configuration is valid.

import { beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { sign } from "hono/jwt";
import { withCheckCharacters } from "../src/apps/syncthing-device-id.ts";
import { syncthing } from "../src/apps/syncthing.ts";
import { validateConfig } from "../src/service/validation.ts";
import { keys } from "../src/store/keys.ts";
import type { Owner } from "../src/domain/owner.ts";
import { startHarness } from "./support/harness.ts";
import {
  alice,
  DEVICE_A,
  DEVICE_B,
  providerCall,
  publicCall,
  SECRET,
  syncthingConfig,
} from "./support/service.ts";

const RUNS = 250;
const TIMEOUT = 60_000; // a bound for the whole property, not an assertion on speed

// The record seeded below stays for every property: no reset between the tests.
const { redis, api: instance } = await startHarness({ resetEach: false });

beforeAll(async () => {
  const seeded = await providerCall(instance, "syncthing", "update", { principal: alice, config: syncthingConfig(0), expectedETag: null });
  expect(seeded.status).toBe(200);
});


// ---------------------------------------------------------------------------------------------
// What a request may change, and what an error looks like

/** Alice's syncthing record, exactly as Redis holds it. */
const aliceRecord = () => redis.admin.hgetall(keys.record("syncthing", alice));
const aliceEtag = async () => (await instance.context.store.read("syncthing", alice))?.etag ?? "initial";

/** Every key in Redis with its value: a rejected request must leave all of it as it was. */
async function everything(): Promise<Record<string, unknown>> {
  const names = (await redis.admin.keys("*")).sort();
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const type = await redis.admin.type(name);
    if (type === "hash") out[name] = await redis.admin.hgetall(name);
    else if (type === "list") out[name] = await redis.admin.lrange(name, 0, -1);
    else if (type === "set") out[name] = (await redis.admin.smembers(name)).sort();
    else if (type === "string") out[name] = await redis.admin.get(name);
    else if (type === "zset") out[name] = await redis.admin.zrange(name, 0, -1, "WITHSCORES");
    else out[name] = type;
  }
  return out;
}

/** The error codes spec §2 allows for each status. */
const CODES: Record<number, string[]> = {
  400: ["INVALID_REQUEST", "INVALID_CONFIGURATION"],
  401: ["UNAUTHORIZED"],
  403: ["FORBIDDEN"],
  404: ["UNKNOWN_APPLICATION", "NOT_FOUND"],
  409: ["ETAG_MISMATCH"],
  412: ["PRECONDITION_FAILED"],
  413: ["PAYLOAD_TOO_LARGE"],
  428: ["PRECONDITION_REQUIRED"],
};

/** A 4xx answer: UCloud's error shape, statusCode equal to the HTTP status, the code spec §2 gives it. */
async function expectErrorBody(response: Response, context: string) {
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${context}: a ${response.status} whose body is not JSON: ${text.slice(0, 200)}`);
  }
  expect(Object.keys(body).sort()).toEqual(["errorCode", "statusCode", "why"]);
  expect(body.statusCode).toBe(response.status);
  expect(typeof body.why).toBe("string");
  expect((body.why as string).length).toBeGreaterThan(0);
  expect(CODES[response.status] ?? []).toContain(body.errorCode as string);
}

/**
 * Sends one request and checks the rules every answer obeys: never a 5xx; a 4xx has UCloud's error
 * shape and changes nothing in Redis (alice's record included). Answers the status.
 */
async function checkedRequest(send: () => Promise<Response>, context: () => string): Promise<number> {
  const recordBefore = await aliceRecord();
  const before = await everything();
  const response = await send();
  const where = `${context()} -> ${response.status}`;
  if (response.status >= 500) throw new Error(`${where}: ${(await response.text()).slice(0, 300)}`);
  if (response.status >= 400) {
    await expectErrorBody(response, where);
    expect(await aliceRecord()).toEqual(recordBefore);
    expect(await everything()).toEqual(before);
  } else {
    await response.arrayBuffer();
  }
  return response.status;
}

// ---------------------------------------------------------------------------------------------
// Generators

/** Replaced, when the request is made, by alice's ETag at that moment. */
const CURRENT = "@@current-etag@@";

const withCurrentEtag = (text: string, etag: string) => text.split(CURRENT).join(etag);

type Route =
  | { family: "provider"; app: string; op: string }
  | { family: "public"; app: string; op: string; method: "GET" | "POST" };

const APPS = ["syncthing", "terminal"];
const route: fc.Arbitrary<Route> = fc.oneof(
  fc.record({ family: fc.constant("provider" as const), app: fc.constantFrom(...APPS), op: fc.constantFrom("retrieve", "update", "reset", "restart") }),
  fc.record({
    family: fc.constant("public" as const),
    app: fc.constantFrom(...APPS),
    op: fc.constantFrom("update", "reset", "restart"),
    method: fc.constant("POST" as const),
  }),
  fc.record({ family: fc.constant("public" as const), app: fc.constantFrom(...APPS), op: fc.constant("retrieve"), method: fc.constant("GET" as const) }),
);

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const generatedDeviceId = fc.string({ unit: fc.constantFrom(...BASE32), minLength: 52, maxLength: 52 }).map(withCheckCharacters);
const corrupted = (id: string) => `${id.slice(0, -1)}${id.endsWith("A") ? "B" : "A"}`;

const ucloudPathLike = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("/home-alice/a", "/home-alice/b", "/home-alice/a/b", "/project-x/data") },
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }).map((s) => `/home-alice/${s}`) },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.constantFrom("", "/", "relative/path", "/a/../b", "/a/./b", "/a\u0000b", `/${"x".repeat(4100)}`) },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.constant(null), fc.boolean(), fc.anything()) },
);
const folderIdLike = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("", "a", "b", "c", "same") },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 250, maxLength: 260 }) },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.constant(null), fc.anything()) },
);
const folderLike = fc.record(
  {
    ucloudPath: ucloudPathLike,
    path: fc.oneof(fc.string({ maxLength: 20 }), fc.constant(null), fc.integer(), fc.constant("p".repeat(4100))),
    id: folderIdLike,
    extra: fc.anything(),
  },
  { requiredKeys: [] },
);
const deviceIdLike = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(DEVICE_A, DEVICE_B, DEVICE_A.toLowerCase(), DEVICE_B.replace(/-/g, "")) },
  { weight: 4, arbitrary: generatedDeviceId },
  { weight: 1, arbitrary: generatedDeviceId.map(corrupted) },
  { weight: 1, arbitrary: generatedDeviceId.map((id) => id.replace(/-/g, "").slice(1)) },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.constant(null), fc.anything()) },
);
const deviceLike = fc.record(
  {
    deviceId: deviceIdLike,
    label: fc.oneof(fc.string({ maxLength: 20 }), fc.constant(null), fc.integer(), fc.string({ minLength: 250, maxLength: 260 })),
  },
  { requiredKeys: ["deviceId"] },
);
/** Arbitrary structures resembling syncthing configurations: many valid, many subtly not. */
const syncthingLike = fc.record(
  {
    folders: fc.oneof(
      { weight: 8, arbitrary: fc.array(folderLike, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.anything() },
    ),
    devices: fc.oneof(
      { weight: 8, arbitrary: fc.array(deviceLike, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.anything() },
    ),
    unknownField: fc.anything(),
  },
  { requiredKeys: [] },
);
const validSyncthing = fc.record({
  folders: fc.uniqueArray(fc.record({ ucloudPath: fc.constantFrom("/home-alice/a", "/home-alice/b", "/project-x/data"), id: fc.constant("") }), {
    selector: (f) => f.ucloudPath,
    maxLength: 3,
  }),
  devices: fc.uniqueArray(fc.record({ deviceId: generatedDeviceId, label: fc.string({ maxLength: 10 }) }), { selector: (d) => d.deviceId, maxLength: 3 }),
});

const configLike = fc.oneof(
  { weight: 2, arbitrary: validSyncthing },
  { weight: 6, arbitrary: syncthingLike },
  { weight: 1, arbitrary: fc.record({ folders: fc.array(fc.oneof(ucloudPathLike, fc.string()), { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.anything() },
);

const principalLike: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom<unknown>(alice, { createdBy: "alice" }, { createdBy: "alice", project: null }, { createdBy: "bob", project: "p1" }) },
  {
    weight: 3,
    arbitrary: fc.record(
      {
        createdBy: fc.oneof(fc.constant("alice"), fc.string(), fc.string({ unit: "binary" }), fc.anything()),
        project: fc.oneof(fc.constant(null), fc.string(), fc.anything()),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.anything() },
);

const etagLike: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.constant(CURRENT),
  fc.constantFrom("initial", "", "*", '"x"'),
  fc.string(),
  fc.string({ minLength: 250, maxLength: 300 }),
  fc.anything(),
);

const DEEP = "[".repeat(100_000) + "]".repeat(100_000);

/** Request bodies: random objects with random fields, random JSON, and text that is not JSON. */
const bodyText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record(
        { principal: principalLike, config: configLike, expectedETag: etagLike },
        { requiredKeys: ["principal", "config"] },
      )
      .map((body) => JSON.stringify(body)),
  },
  {
    weight: 6,
    arbitrary: fc
      .record(
        {
          principal: principalLike,
          config: configLike,
          expectedETag: etagLike,
          productId: fc.oneof(fc.string(), fc.anything()),
          provider: fc.oneof(fc.constant("k8s"), fc.string(), fc.anything()),
        },
        { requiredKeys: [] },
      )
      .map((body) => JSON.stringify(body)),
  },
  { weight: 1, arbitrary: fc.anything().map((value) => JSON.stringify(value) ?? "") },
  { weight: 1, arbitrary: fc.json() },
  { weight: 1, arbitrary: fc.string() },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "   ",
      "{",
      "null",
      "[]",
      "true",
      '"text"',
      "{}",
      '{"principal":',
      '{"principal":{"createdBy":"alice"},"config":{"folders":[],"devices":[]},"expectedETag":null,"expectedETag":7}',
      '{"__proto__":{"principal":{"createdBy":"alice"},"config":{"folders":[],"devices":[]}}}',
      '{"principal":{"__proto__":{"createdBy":"alice"}},"config":{"folders":[],"devices":[]}}',
      '{"principal":{"createdBy":"alice"},"config":{"__proto__":{"folders":[],"devices":[]}}}',
      '{"principal":{"createdBy":"alice","project":null},"config":{"folders":[],"devices":[],"constructor":{}}}',
      `{"principal":{"createdBy":"alice"},"config":${DEEP},"expectedETag":null}`,
      `{"principal":{"createdBy":"alice"},"config":{"folders":[${'{"ucloudPath":"/home-alice/x"},'.repeat(1500)}{"ucloudPath":"/y"}],"devices":[]}}`,
      "\u0000",
      "\uFEFF{}",
    ),
  },
);

/** Characters a header value may carry (visible ASCII, space, tab, Latin-1). */
const headerChar = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
  { weight: 1, arbitrary: fc.constant(0x09) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
).map((code) => String.fromCharCode(code));
const headerText = fc.string({ unit: headerChar, maxLength: 60 });

/** If-Match / If-None-Match values: absent, plausible, and garbage. */
const etagHeaderLike: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "*",
      '"initial"',
      `"${CURRENT}"`,
      `W/"${CURRENT}"`,
      `"x", "${CURRENT}"`,
      CURRENT,
      '""',
      '"',
      ",",
      " , ,",
      "W/",
      "*, *",
    ),
  },
  { weight: 3, arbitrary: headerText },
);

function headersOf(entries: Record<string, string | undefined>, etag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(entries)) if (value !== undefined) out[name] = withCurrentEtag(value, etag);
  return out;
}

/** Query strings of the public retrieve. */
const queryLike = fc.oneof(
  fc.constant(""),
  fc.constantFrom("?provider=k8s", "?provider=k8s&productId=syncthing", "?provider=", "?provider", "?productId=%zz", "?provider=a&provider=b"),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 20 }), fc.string({ minLength: 250, maxLength: 300 })), { maxKeys: 3 }).map(
    (q) => `?${new URLSearchParams(q).toString()}`,
  ),
);

/** Sends `body` to `route` with valid credentials. */
async function send(r: Route, body: string, query: string, headers: Record<string, string>): Promise<Response> {
  if (r.family === "provider") return providerCall(instance, r.app, r.op, body, headers);
  if (r.method === "GET") return publicCall(instance, "alice", "GET", `${r.app}/retrieve${query}`, undefined, headers);
  return publicCall(instance, "alice", "POST", `${r.app}/${r.op}`, body, headers);
}

// ---------------------------------------------------------------------------------------------

describe("no client input ever produces a 5xx, and a rejected request changes nothing", () => {
  test(
    "random bodies on every route of syncthing and terminal: status < 500; a 4xx has UCloud's error shape and leaves Redis as it was",
    async () => {
      await fc.assert(
        fc.asyncProperty(route, bodyText, queryLike, async (r, body, query) => {
          const etag = await aliceEtag();
          const text = withCurrentEtag(body, etag);
          await checkedRequest(
            () => send(r, text, query, {}),
            () => `${r.family} ${r.app}/${r.op}${query} ${text.slice(0, 300)}`,
          );
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  test(
    "random If-Match and If-None-Match headers: status < 500; a 4xx changes nothing",
    async () => {
      const bodyOrUpdate = fc.oneof(bodyText, configLike.map((config) => JSON.stringify({ principal: alice, config, expectedETag: null })));
      await fc.assert(
        fc.asyncProperty(route, bodyOrUpdate, etagHeaderLike, etagHeaderLike, async (r, body, ifMatch, ifNoneMatch) => {
          const etag = await aliceEtag();
          const headers = headersOf({ "if-match": ifMatch, "if-none-match": ifNoneMatch }, etag);
          const text = withCurrentEtag(body, etag);
          await checkedRequest(
            () => send(r, text, "", headers),
            () => `${r.family} ${r.app}/${r.op} headers=${JSON.stringify(headers)} ${text.slice(0, 200)}`,
          );
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  test(
    "random Authorization headers and token claims: status < 500; a refused token changes nothing",
    async () => {
      const future = Math.floor(Date.now() / 1000) + 3600;
      const claims = fc.record(
        {
          sub: fc.oneof(
            { weight: 4, arbitrary: fc.constant<unknown>("alice") },
            { weight: 1, arbitrary: fc.string() },
            { weight: 1, arbitrary: fc.string({ unit: "binary" }) },
            { weight: 1, arbitrary: fc.anything() },
          ),
          role: fc.oneof(
            { weight: 6, arbitrary: fc.constantFrom<unknown>("USER", "ADMIN", "SERVICE") },
            { weight: 1, arbitrary: fc.constantFrom<unknown>("user", "", "SERVICE ", "PROVIDER") },
            { weight: 1, arbitrary: fc.anything() },
          ),
          exp: fc.oneof(
            { weight: 4, arbitrary: fc.constant<unknown>(future) },
            { weight: 1, arbitrary: fc.constant<unknown>(1) },
            { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.anything()) },
          ),
          nbf: fc.oneof({ weight: 4, arbitrary: fc.constant<unknown>(future - 7200) }, { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.anything()) }),
          iat: fc.oneof({ weight: 4, arbitrary: fc.constant<unknown>(future - 7200) }, { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.anything()) }),
        },
        { requiredKeys: ["sub", "role", "exp"] },
      );
      const someClaims = fc.oneof(
        { weight: 8, arbitrary: claims },
        { weight: 1, arbitrary: claims.chain((c) => fc.subarray(Object.keys(c)).map((kept) => Object.fromEntries(kept.map((k) => [k, (c as Record<string, unknown>)[k]])))) },
        { weight: 1, arbitrary: fc.anything() },
      );
      const authorization = fc.oneof(
        { weight: 1, arbitrary: fc.constant<string | undefined>(undefined) },
        { weight: 2, arbitrary: headerText },
        { weight: 2, arbitrary: headerText.map((s) => `Bearer ${s}`) },
        {
          weight: 2,
          arbitrary: fc.constantFrom(
            "Bearer",
            "Bearer ",
            "bearer a.b.c",
            "Bearer a.b.c",
            "Bearer ...",
            "Basic dXNlcjpwYXNz",
            "Bearer eyJhbGciOiJub25lIn0.e30.",
            "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJTRVJWSUNFIiwiZXhwIjo5OTk5OTk5OTk5fQ.",
            "Bearer eyJ.eyJ.eyJ",
            "Bearer %%%.%%%.%%%",
          ),
        },
        {
          weight: 6,
          arbitrary: fc.record({
            claims: someClaims,
            secret: fc.oneof({ weight: 4, arbitrary: fc.constant(SECRET) }, { weight: 1, arbitrary: fc.constant("another-secret") }),
            scheme: fc.constantFrom("Bearer ", "bearer ", "Bearer  "),
          }),
        },
      );
      await fc.assert(
        fc.asyncProperty(route, configLike, authorization, async (r, config, auth) => {
          const etag = await aliceEtag();
          let header: string | undefined;
          if (typeof auth === "object" && auth !== null) {
            try {
              header = `${auth.scheme}${await sign(auth.claims as never, auth.secret, "HS256")}`;
            } catch {
              header = "Bearer not-signable";
            }
          } else {
            header = auth;
          }
          const body =
            r.family === "provider"
              ? JSON.stringify({ principal: alice, config, expectedETag: etag })
              : JSON.stringify({ config, expectedETag: etag });
          const path = r.family === "provider" ? `/ucloud/k8s/iapps/${r.app}/${r.op}` : `/api/iapps/${r.app}/${r.op}`;
          const method = r.family === "public" && r.op === "retrieve" ? "GET" : "POST";
          const headers: Record<string, string> = { "content-type": "application/json" };
          if (header !== undefined) headers.authorization = header;
          await checkedRequest(
            () => instance.request(path, { method, headers, body: method === "GET" ? undefined : body }),
            () => `${method} ${path} authorization=${JSON.stringify(header)}`,
          );
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );
});

describe("an update with the current ETag answers 200 exactly when the configuration is valid", () => {
  test(
    "random syncthing-like configs sent to alice's update: 200 or 400 as validation says; 400 changes nothing; 200 stores the validated config under a new ETag",
    async () => {
      const seen = new Set<string>([await aliceEtag()]);
      const statuses = { ok: 0, rejected: 0 };
      const how = fc.constantFrom("provider-body", "public-body", "public-if-match");
      await fc.assert(
        fc.asyncProperty(configLike, how, async (config, via) => {
          const before = await instance.context.store.read("syncthing", alice);
          const etag = before?.etag ?? "initial";
          // What the service receives is the configuration after a trip through JSON.
          const onTheWire: unknown = JSON.parse(JSON.stringify({ config })).config;
          let expected: unknown;
          let valid = true;
          try {
            expected = JSON.parse(JSON.stringify(validateConfig(syncthing, onTheWire)));
          } catch {
            valid = false;
          }
          const send = () =>
            via === "provider-body"
              ? providerCall(instance, "syncthing", "update", { principal: alice, config, expectedETag: etag })
              : via === "public-body"
                ? publicCall(instance, "alice", "POST", "syncthing/update", { config, expectedETag: etag })
                : publicCall(instance, "alice", "POST", "syncthing/update", { config, expectedETag: null }, { "if-match": `"${etag}"` });
          let answered = "";
          const status = await checkedRequest(
            async () => {
              const response = await send();
              answered = response.headers.get("etag") ?? "";
              return response;
            },
            () => `${via} ${JSON.stringify(config)?.slice(0, 300)}`,
          );
          expect([200, 400]).toContain(status);
          expect(status).toBe(valid ? 200 : 400);
          if (status === 200) {
            statuses.ok++;
            const after = await instance.context.store.read("syncthing", alice);
            expect(after).not.toBeNull();
            expect(after!.etag).not.toBe(etag);
            expect(seen.has(after!.etag)).toBe(false);
            seen.add(after!.etag);
            expect(answered).toBe(`"${after!.etag}"`);
            expect(after!.config).toEqual(expected);
            expect(() => validateConfig(syncthing, after!.config)).not.toThrow();
          } else {
            statuses.rejected++;
          }
        }),
        { numRuns: RUNS },
      );
      // The generators must exercise both outcomes, or the property says little.
      expect(statuses.ok).toBeGreaterThan(0);
      expect(statuses.rejected).toBeGreaterThan(0);
    },
    TIMEOUT,
  );
});

describe("distinct owners never share a record (owner names become Redis keys)", () => {
  // Names as JSON can carry them: any code point, unpaired UTF-16 surrogates and U+FFFD included.
  const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));
  const plainChar = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(..."abcxyz019-_.#@") },
    { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).filter((c) => !/[:{}\s\u0000-\u001f\u007f]/.test(c)) },
  );
  const oddChar = fc.oneof(loneSurrogate, fc.constant("\uFFFD"), plainChar);
  const name = fc.array(fc.oneof(plainChar, oddChar), { minLength: 1, maxLength: 6 }).map((chars) => chars.join(""));
  /** Two names that agree except, perhaps, where one of them has an odd character. */
  const nearlyEqualNames = fc
    .array(fc.oneof({ weight: 3, arbitrary: plainChar.map((c) => [c, c] as const) }, { weight: 1, arbitrary: fc.tuple(oddChar, oddChar) }), {
      minLength: 1,
      maxLength: 6,
    })
    .map((slots) => [slots.map(([a]) => a).join(""), slots.map(([, b]) => b).join("")] as const);
  const twoNames = fc.oneof(fc.tuple(name, name), nearlyEqualNames);
  let runs = 0;

  test("a write for one owner is not seen by another whose name differs, whatever characters the names use", async () => {
    await fc.assert(
      fc.asyncProperty(twoNames, async ([first, second]) => {
        fc.pre(first !== second);
        const prefix = `owner${++runs}-`;
        const writer: Owner = { createdBy: prefix + first, project: null };
        const reader: Owner = { createdBy: prefix + second, project: null };
        const written = await providerCall(instance, "syncthing", "update", { principal: writer, config: syncthingConfig(1), expectedETag: null });
        if (written.status !== 200) return; // a name the API refuses shares nothing
        const read = await providerCall(instance, "syncthing", "retrieve", { principal: reader });
        if (read.status !== 200) return;
        // JSON.stringify shows unpaired surrogates as \uXXXX escapes, so a failure names both owners legibly.
        const names = { writer: JSON.stringify(writer.createdBy), reader: JSON.stringify(reader.createdBy) };
        expect({ ...names, etag: (await read.json()).etag }).toEqual({ ...names, etag: "initial" });
      }),
      { numRuns: RUNS },
    );
  }, TIMEOUT);

  test.each([
    ["mallory\uD800", "mallory\uDC00"],
    ["mallory\uD800", "mallory\uFFFD"],
  ])("%j and %j are different owners", async (first, second) => {
    const writer = { createdBy: first, project: null };
    const reader = { createdBy: second, project: null };
    const written = await providerCall(instance, "syncthing", "update", { principal: writer, config: syncthingConfig(2), expectedETag: null });
    if (written.status !== 200) {
      // Refusing such names (400) is also a way of keeping owners apart.
      expect(written.status).toBe(400);
      return;
    }
    const read = await providerCall(instance, "syncthing", "retrieve", { principal: reader });
    expect(read.status).toBe(200);
    expect((await read.json()).etag).toBe("initial");
  });
});
