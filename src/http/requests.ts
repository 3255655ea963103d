// The bodies and queries of the configuration routes (history and rollback too: spec §11) and the terminal's routes (spec §2), as
// valibot schemas, and the one function that reads and checks a request body. Unknown fields are
// ignored, as UCloud does.

import type { Context } from "hono";
import * as v from "valibot";
import { ucloudPath } from "../apps/paths.ts";
import { drivePathOf } from "../apps/terminal.ts";
import { invalidRequest } from "../base/errors.ts";
import { OwnerSchema } from "../domain/owner.ts";
import { bodyReadError } from "./errors.ts";

const optionalString = v.optional(v.pipe(v.string("expected a string"), v.maxLength(256, "must be at most 256 characters")));
const expectedETag = v.optional(
  v.nullable(v.pipe(v.string("expected a string or null"), v.maxLength(256, "must be at most 256 characters"))),
  null,
);
const config = v.pipe(
  v.unknown(),
  v.check((value) => value !== undefined, "is required"),
);

export const ProviderRetrieve = v.object({ productId: optionalString, principal: OwnerSchema });
export const ProviderUpdate = v.object({ productId: optionalString, principal: OwnerSchema, config, expectedETag });
export const ProviderReset = v.object({ productId: optionalString, principal: OwnerSchema, expectedETag });
export const ProviderRestart = v.object({ productId: optionalString, principal: OwnerSchema });

/** The terminal's open: the folder whose drive it mounts. */
export const TerminalOpen = v.object({
  principal: OwnerSchema,
  folder: v.pipe(
    ucloudPath,
    v.check((path) => drivePathOf(path) !== null, 'expected a UCloud path naming a drive, such as "/home-alice/Documents"'),
  ),
});
export const TerminalActivity = v.object({ principal: OwnerSchema });

/** UCloud's openTerminalInFolder: one shell session per item. */
export const OpenTerminalInFolder = v.object({
  items: v.pipe(
    v.array(v.object({ folder: v.pipe(ucloudPath, v.check((path) => drivePathOf(path) !== null, "expected a UCloud path naming a drive")) }), "expected an array"),
    v.minLength(1, "at least one item"),
    v.maxLength(16, "at most 16 items"),
  ),
});

const etag = v.pipe(v.string("expected a string"), v.minLength(1, "must not be empty"), v.maxLength(256, "must be at most 256 characters"));
const next = v.optional(v.nullable(v.pipe(v.string("expected a string or null"), v.maxLength(256, "must be at most 256 characters"))), null);
/** Versions per page of a history: 1 to 100, 20 when absent. */
export const DEFAULT_ITEMS_PER_PAGE = 20;

export const ProviderHistory = v.object({
  principal: OwnerSchema,
  itemsPerPage: v.optional(
    v.pipe(v.number("expected a number"), v.integer("expected an integer"), v.minValue(1, "must be at least 1"), v.maxValue(100, "must be at most 100")),
    DEFAULT_ITEMS_PER_PAGE,
  ),
  next,
});
export const ProviderRollback = v.object({ principal: OwnerSchema, etag, expectedETag });

export const PublicHistory = v.object({
  itemsPerPage: v.optional(
    v.pipe(
      v.string("expected a string"),
      v.regex(/^[0-9]{1,3}$/, "expected a whole number from 1 to 100"),
      v.check((n) => Number(n) >= 1 && Number(n) <= 100, "must be from 1 to 100"),
      v.description("Versions per page, 1 to 100 (default 20)."),
    ),
  ),
  next: v.optional(
    v.pipe(v.string("expected a string"), v.maxLength(256, "must be at most 256 characters"), v.description("The `next` of the previous page: where this page starts.")),
  ),
});
export const PublicRollback = v.object({ etag, expectedETag });

export const PublicRetrieve = v.object({ provider: optionalString, productId: optionalString });
export const PublicUpdate = v.object({ provider: optionalString, productId: optionalString, config, expectedETag });
export const PublicReset = v.object({ provider: optionalString, productId: optionalString });
export const PublicRestart = PublicReset;

/** Parses the JSON body against `schema`; a bad body is a 400 that names the field. */
export async function readBody<S extends v.GenericSchema>(c: Context, schema: S, options: { emptyIsObject?: boolean } = {}) {
  let text: string;
  try {
    text = await c.req.text();
  } catch (e) {
    throw bodyReadError(e);
  }
  let json: unknown;
  if (text.trim() === "" && options.emptyIsObject) {
    json = {};
  } else {
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw invalidRequest(`The body is not valid JSON (${(e as Error).message}).`);
    }
  }
  return check(schema, json, "body");
}

export function check<S extends v.GenericSchema>(schema: S, input: unknown, what: string): v.InferOutput<S> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw invalidRequest(`The ${what} must be a JSON object.`);
  }
  const result = v.safeParse(schema, input);
  if (!result.success) {
    const issue = result.issues[0];
    const path = v.getDotPath(issue) ?? what;
    const reason =
      issue.message.startsWith("Invalid type") || issue.message.startsWith("Invalid key")
        ? `expected ${issue.expected}, got ${issue.received}`
        : issue.message;
    throw invalidRequest(`${path}: ${reason}`);
  }
  return result.output;
}
