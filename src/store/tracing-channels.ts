// Node's `TracingChannel#hasSubscribers` where the runtime lacks it (Bun 1.4): ioredis traces a
// command only when its tracing channel has subscribers, and reads an absent property as "it
// may have some", so on Bun every command paid for tracing nobody listened to (its arguments
// copied to strings and matched against a dozen patterns, its promise wrapped twice): about a
// fifth of an update's CPU. The getter answers as Node's does. Imported by connections.ts, before
// any client is made. Imports node:diagnostics_channel only.

import diagnostics from "node:diagnostics_channel";

type Channels = Record<"start" | "end" | "asyncStart" | "asyncEnd" | "error", { hasSubscribers: boolean }>;

const prototype = Object.getPrototypeOf(diagnostics.tracingChannel("iapps:probe")) as object;
if (!("hasSubscribers" in prototype)) {
  Object.defineProperty(prototype, "hasSubscribers", {
    configurable: true,
    get(this: Channels): boolean {
      return this.start.hasSubscribers || this.end.hasSubscribers || this.asyncStart.hasSubscribers || this.asyncEnd.hasSubscribers || this.error.hasSubscribers;
    },
  });
}
