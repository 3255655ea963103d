// The store's Redis plumbing under the one name it had before it was split by responsibility:
// connections.ts (the connection factory and the deadline proxy), transaction-pool.ts,
// routing.ts (cluster routing and SCAN) and redis-errors.ts (what a failure means). Kept so that
// imports written before the split (test/support, branches in flight) still work; new code
// imports the module that owns the name.

export * from "./connections.ts";
export * from "./redis-errors.ts";
export * from "./routing.ts";
export * from "./transaction-pool.ts";
