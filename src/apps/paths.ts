// UCloud paths as configurations carry them: `/<driveId>/<rest>`. Resolving them to storage and
// checking access belongs to the storage module (apps issue); here only their shape is checked.

import * as v from "valibot";
import type { Owner } from "../domain/owner.ts";

export const ucloudPath = v.pipe(
  v.string("expected a string"),
  v.minLength(2, "expected a UCloud path such as \"/home-alice/Documents\""),
  v.maxLength(4096, "must be at most 4096 characters"),
  v.startsWith("/", "expected a UCloud path starting with '/', such as \"/home-alice/Documents\""),
  v.check((s) => !s.split("/").some((part) => part === "." || part === ".."), "must not contain '.' or '..' segments"),
  v.check((s) => !/[\u0000-\u001f]/.test(s), "must not contain control characters"),
);

/** The UCloud path of an owner's home drive (`/home-<username>`). */
export function homeDrivePath(owner: Owner): string {
  return `/home-${owner.createdBy}`;
}
