// Types for the two packages ioredis brings along that ship none of their own; both are direct
// dependencies of ours too (package.json), at the versions ioredis uses.
//
// Both are CommonJS, imported by their default export: Node cannot see redis-errors' names
// through its conditional `module.exports`.

declare module "redis-errors" {
  /** Every error ioredis raises of its own classes (the rest are plain Errors). */
  class RedisError extends Error {}
  /** An error reply of the server: its message starts with the Redis error code (`LOADING ...`). */
  class ReplyError extends RedisError {}
  /** A command cut off unanswered: its connection closed, or it ran out of retries. */
  class AbortError extends RedisError {}
  /** A command cut off after it was written: it may have run. */
  class InterruptError extends AbortError {}
  /** A reply stream that could not be parsed. */
  class ParserError extends RedisError {}

  const errors: {
    RedisError: typeof RedisError;
    ReplyError: typeof ReplyError;
    AbortError: typeof AbortError;
    InterruptError: typeof InterruptError;
    ParserError: typeof ParserError;
  };
  export default errors;
}

declare module "cluster-key-slot" {
  /** The Redis Cluster hash slot (0-16383) of a key, honouring its hash tag. */
  export default function calculateSlot(key: string | Uint8Array): number;
}
