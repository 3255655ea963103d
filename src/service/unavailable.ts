// Redis failures as the service answers them: a 503 saying why, at the edge of every operation
// (pool exhausted: this replica is busy; Redis unreachable: the store cannot be reached). Errors
// are told apart by class (src/store/redis-errors.ts), never by message text; AppErrors pass unchanged.
// Imports src/base/errors.ts and src/store/redis-errors.ts.

import { AppError, unavailable } from "../base/errors.ts";
import { isRedisUnavailable, PoolExhaustedError } from "../store/redis-errors.ts";

/** Awaits `promise`, turning "Redis is unreachable" (or "no connection free") into a 503. */
export async function orUnavailable<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (e) {
    rethrowUnavailable(e);
  }
}

/** Throws `e`, or the 503 it stands for: orUnavailable's answer to a failure, for a `.then`. */
export function rethrowUnavailable(e: unknown): never {
  if (e instanceof AppError) throw e;
  if (e instanceof PoolExhaustedError) {
    // Busy, not broken: the client may well succeed in a second.
    throw new AppError(503, "UNAVAILABLE", "This replica has too many changes in flight right now; try again in a moment.", { cause: e, retryAfterSeconds: 1 });
  }
  if (isRedisUnavailable(e)) throw unavailable("The configuration store cannot be reached right now; try again in a moment.", e);
  throw e;
}
