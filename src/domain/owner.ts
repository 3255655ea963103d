// The owner of a record: `{createdBy, project}` (spec §1), its schema, and the type every layer
// names it by (inferred from the schema). Owners as requests name them. A username or project id becomes part of Redis keys
// (`iapps:cfg:{syncthing:alice}`), so the characters that would make two owners share a key
// (':') or break a hash tag ('{', '}') are refused, as are whitespace and control characters, and
// what would make an unsafe folder name for the home drive ('/', '\\', '.', '..').
//
// Both also name folders, and a folder name is at most 255 bytes (NAME_MAX): a username the home
// drive `home-<username>`, a project id Syncthing's state folder `Syncthing-<project>`. A name
// too long for its folder is refused here, at the door, rather than failing in storage or the
// worker later (spec §10).

import * as v from "valibot";

/** The longest folder name the file systems we run on accept, in bytes. */
const NAME_MAX = 255;
/** `home-<username>` (src/apps/paths.ts, src/storage). */
export const MAX_USERNAME_BYTES = NAME_MAX - "home-".length;
/** `Syncthing-<project>` (src/apps/syncthing.ts, stateFolderName). */
export const MAX_PROJECT_BYTES = NAME_MAX - "Syncthing-".length;

const utf8 = new TextEncoder();

const identifier = (what: string, maxBytes: number, folder: string) => {
  const tooLong = `${what} must be at most ${maxBytes} bytes of UTF-8 (it names the folder ${folder}, at most ${NAME_MAX} bytes)`;
  return v.pipe(
    v.string("expected a string"),
    v.minLength(1, `${what} must not be empty`),
    // Characters are never fewer than bytes: a cheap first bound, and the one JSON Schema can say.
    v.maxLength(maxBytes, tooLong),
    v.check((s) => utf8.encode(s).length <= maxBytes, tooLong),
    // \p{Cs}: a lone surrogate is not text; Redis would store it as U+FFFD and merge owners.
    v.regex(/^[^:{}/\\\s\p{Cc}\p{Cs}]+$/u, `${what} must not contain ':', '{', '}', '/', '\\', whitespace, control characters or unpaired surrogates`),
    // A username also names a home drive folder (`home-<username>`).
    v.check((s) => s !== "." && s !== "..", `${what} must not be '.' or '..'`),
  );
};

export const UsernameSchema = identifier("a username", MAX_USERNAME_BYTES, "home-<username>");

export const OwnerSchema = v.object({
  createdBy: UsernameSchema,
  project: v.optional(v.nullable(identifier("a project id", MAX_PROJECT_BYTES, "Syncthing-<project>")), null),
});

/** `{createdBy, project}`: whose record (spec §1). The UI only ever acts for `project: null`. */
export type Owner = v.InferOutput<typeof OwnerSchema>;
