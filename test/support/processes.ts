// Child processes for tests (service replicas, workers), ended by their PID, never by name.

import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = resolve(ROOT, "node_modules/.bin/bun");

export interface Child {
  process: ChildProcess;
  /** stdout and stderr together. */
  output(): string;
  stdout(): string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

const children = new Set<Child>();

/** Runs `bun <args>`, or another program (`command`) from the repository's root. */
export function startProcess(args: string[], env: Record<string, string>, command = BUN): Child {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, IAPPS_LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let stdout = "";
  child.stdout?.on("data", (d) => {
    output += d;
    stdout += d;
  });
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  const handle: Child = {
    process: child,
    output: () => output,
    stdout: () => stdout,
    exited,
    kill: (signal = "SIGKILL") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  children.add(handle);
  exited.then(() => children.delete(handle));
  return handle;
}

/** The children still running. */
export function runningChildren(): Child[] {
  return [...children];
}

/** Kills `which` (by default every child still running), and waits until they are gone. */
export async function killAll(which: Child[] = runningChildren()) {
  for (const child of which) child.kill("SIGKILL");
  await Promise.all(which.map((c) => c.exited));
}
