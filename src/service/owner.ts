// Owners as requests name them. A username or project id becomes part of Redis keys
// (`iapps:cfg:{syncthing:alice}`), so the characters that would make two owners share a key
// (':') or break a hash tag ('{', '}') are refused, as are whitespace and control characters, and
// what would make an unsafe folder name for the home drive ('/', '\\', '.', '..').

import * as v from "valibot";

const identifier = (what: string) =>
  v.pipe(
    v.string("expected a string"),
    v.minLength(1, `${what} must not be empty`),
    v.maxLength(256, `${what} must be at most 256 characters`),
    // \p{Cs}: a lone surrogate is not text; Redis would store it as U+FFFD and merge owners.
    v.regex(/^[^:{}/\\\s\p{Cc}\p{Cs}]+$/u, `${what} must not contain ':', '{', '}', '/', '\\', whitespace, control characters or unpaired surrogates`),
    // A username also names a home drive folder (`home-<username>`).
    v.check((s) => s !== "." && s !== "..", `${what} must not be '.' or '..'`),
  );

export const UsernameSchema = identifier("a username");

export const OwnerSchema = v.object({
  createdBy: UsernameSchema,
  project: v.optional(v.nullable(identifier("a project id")), null),
});
