// Redis scripts, each one a `.lua` file of its own named `<verb>-<number of keys>.lua` (BullMQ's
// convention), opening with a comment on its KEYS, ARGV and reply. The module that owns a script
// loads it from a file beside it (`new RedisScript(new URL("./scripts/take-8.lua", import.meta.url))`,
// which Bun, Deno with --allow-read and Node all read), once, when it is imported.
//
// A script runs through ioredis' `defineCommand`: the first use on a connection sends EVAL, later
// ones EVALSHA, and a NOSCRIPT (a restarted or flushed server) sends EVAL again. It is defined on a
// client the first time it runs there, so every client works alike: the shared command connection
// (a single server's or a Cluster's), the transaction pool's, and the shared one seen through its
// deadline proxy (redis.ts), which passes `defineCommand` and the defined command on to the
// client it wraps.
//
// Also here: the two small scripts more than one store module uses (a key's value compared, then
// the key deleted or its expiry set).
//
// Imports node:fs and ioredis' types only.

import { readFileSync } from "node:fs";
import type { ChainableCommander, Cluster, Redis } from "ioredis";

export type ScriptArgument = string | number;

/** A client a script can be defined on and run on: a single server's connection or a Cluster client. */
type ScriptClient = Redis | Cluster;

/** How a defined script is called: its keys, then its arguments. */
type DefinedScript = (...keysThenArguments: ScriptArgument[]) => unknown;

const FILE_NAME = /^([a-z]+(?:-[a-z]+)*)-(\d+)\.lua$/;

/** The text of every script loaded so far, by name: two different scripts of one name would overwrite each other on a client. */
const loaded = new Map<string, string>();

export class RedisScript {
  /** The name it is defined under on a client: its file's name without `.lua`, such as `take-8`. */
  readonly name: string;
  readonly numberOfKeys: number;
  readonly lua: string;

  constructor(file: URL) {
    const fileName = file.pathname.slice(file.pathname.lastIndexOf("/") + 1);
    const parts = FILE_NAME.exec(fileName);
    if (!parts) throw new Error(`${file.pathname}: a Redis script's file is named <verb>-<number of keys>.lua`);
    this.name = `${parts[1]}-${parts[2]}`;
    this.numberOfKeys = Number(parts[2]);
    this.lua = readFileSync(file, "utf8");
    const other = loaded.get(this.name);
    if (other !== undefined && other !== this.lua) throw new Error(`two different Redis scripts are named ${fileName}`);
    loaded.set(this.name, this.lua);
  }

  /** Defines the script on `client` (unless it is there already), so that a pipeline made after it has it too. */
  defineOn<C extends ScriptClient>(client: C): C {
    if (typeof definedOn(client, this.name) !== "function") client.defineCommand(this.name, { lua: this.lua, numberOfKeys: this.numberOfKeys });
    return client;
  }

  /** Runs the script on `client`: its reply. */
  run(client: ScriptClient, keys: readonly string[], args: readonly ScriptArgument[] = []): Promise<unknown> {
    this.checkKeys(keys);
    this.defineOn(client);
    return Promise.resolve(Reflect.apply(definedOn(client, this.name)!, client, [...keys, ...args]));
  }

  /** Adds a run of the script to `pipeline`, whose client it was defined on (`defineOn`) before the pipeline was made. */
  queue(pipeline: ChainableCommander, keys: readonly string[], args: readonly ScriptArgument[] = []): void {
    this.checkKeys(keys);
    const command = definedOn(pipeline, this.name);
    if (typeof command !== "function") throw new Error(`the Redis script ${this.name} was not defined on the client before its pipeline was made`);
    Reflect.apply(command, pipeline, [...keys, ...args]);
  }

  private checkKeys(keys: readonly string[]) {
    if (keys.length !== this.numberOfKeys) throw new Error(`the Redis script ${this.name} takes ${this.numberOfKeys} keys, not ${keys.length}`);
  }
}

function definedOn(client: ScriptClient | ChainableCommander, name: string): DefinedScript | undefined {
  return (client as unknown as Record<string, DefinedScript | undefined>)[name];
}

/** Deletes a key if it still holds a given value (a claim or marker that may have passed to someone else). */
export const compareAndDelete = new RedisScript(new URL("./scripts/compare-and-delete-1.lua", import.meta.url));

/** Sets a key's expiry if it still holds a given value (extends a claim that is still ours). */
export const compareAndPexpire = new RedisScript(new URL("./scripts/compare-and-pexpire-1.lua", import.meta.url));
