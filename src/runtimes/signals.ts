// How a process stops when it is told to: SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C). The
// first of them runs the process's stop, once; later ones are ignored, so a second signal neither
// starts a second stop nor ends the process by the signal's default action mid-drain. Used by
// src/main.ts (its long-running roles), src/runtimes/node.ts and deno.ts, and the tests' worker
// processes. Imports nothing: Node's process API, which Bun and Deno implement too (under Deno a
// listener is added beside Deno's own, not in its place).

export type StopSignal = "SIGTERM" | "SIGINT";

/** Runs `stop` on the first SIGTERM or SIGINT, once; the signals after it are ignored. */
export function onStopSignal(stop: (signal: StopSignal) => Promise<void>): void {
  let stopping = false;
  const handle = (signal: StopSignal) => {
    if (stopping) return;
    stopping = true;
    void stop(signal);
  };
  process.on("SIGTERM", () => handle("SIGTERM"));
  process.on("SIGINT", () => handle("SIGINT"));
}
