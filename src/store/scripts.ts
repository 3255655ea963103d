// Redis scripts, each one a `.lua` file of its own named `<verb>-<number of keys>.lua` (BullMQ's
// convention), opening with a comment on its KEYS, ARGV and reply. The module that owns a script
// loads it from a file beside it (`new RedisScript(new URL("./scripts/take-8.lua", import.meta.url))`,
// which Bun, Deno with --allow-read and Node all read), once, when it is imported.
//
// A script runs through ioredis' `defineCommand`: the first use on a connection sends EVAL, later
// ones EVALSHA, and a NOSCRIPT (a restarted or flushed server) sends EVAL again. The store's
// connection factories define every script loaded so far on each client they make, before it
// sends anything (`defineLoadedScripts`): connections.ts's (the shared command connection, a
// single server's or a Cluster's, whose deadline proxy passes the defined commands on) and
// transaction-pool.ts's (only the scripts its borrowers run by name: see TransactionPool).
// Never later, on first use: an auto-pipeline the client made before the definition would lack
// the command, and ioredis then loses track of which reply is whose. A script run on a client
// that does not have it fails, saying so.
//
// A script may include helpers it shares with others: `--- @include "_helpers.lua"` on a line of
// its own (see `withIncludes`).
//
// Also here: the two small scripts more than one store module uses (a key's value compared, then
// the key deleted or its expiry set).
//
// The scripts a write's MULTI holds (records.ts's write-record scripts, and on a single server the
// queue's add) are sent as plain EVALSHAs there instead, where ioredis' re-send on NOSCRIPT would
// run them outside the transaction: records.ts handles NOSCRIPT among the EXEC's replies.
//
// On a transaction connection (resp.ts), which defines nothing, `runOn` sends EVALSHA, and EVAL
// once on NOSCRIPT.
//
// Imports node:crypto, node:fs, ioredis' types, src/store/redis-errors.ts and src/store/resp.ts only.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ChainableCommander, Cluster, Redis } from "ioredis";
import { replyCodeOf } from "./redis-errors.ts";
import type { RespConnection } from "./resp.ts";

export type ScriptArgument = string | number;

/** A client a script can be defined on and run on: a single server's connection or a Cluster client. */
type ScriptClient = Redis | Cluster;

/** How a defined script is called: its keys, then its arguments. */
type DefinedScript = (...keysThenArguments: ScriptArgument[]) => unknown;

const FILE_NAME = /^([a-z]+(?:-[a-z]+)*)-(\d+)\.lua$/;

/** Every script loaded so far, by name: two different scripts of one name would overwrite each other on a client. */
const loaded = new Map<string, RedisScript>();

/** Every script loaded so far (for tools that name a script by its SHA-1, as EVALSHA sends it). */
export function loadedScripts(): readonly RedisScript[] {
  return [...loaded.values()];
}

/**
 * Defines every script loaded so far (or only `only`) on a client that has sent nothing yet (see
 * above); answers the client. Every script defined on a client costs each of its pipelines and
 * MULTIs a copy (ioredis' Pipeline copies the client's defined commands onto itself): a client
 * whose users run few scripts by name is better off with only those.
 */
export function defineLoadedScripts<C extends ScriptClient>(client: C, only?: readonly RedisScript[]): C {
  for (const { name, lua, numberOfKeys } of only ?? loaded.values()) {
    if (typeof definedOn(client, name) !== "function") client.defineCommand(name, { lua, numberOfKeys });
  }
  return client;
}

/**
 * A script with its `--- @include "<file>"` lines replaced by those files (beside it, named with a
 * leading `_`: not scripts of their own), as BullMQ's preprocessor does: helpers several scripts
 * share are written once.
 */
function withIncludes(file: URL, lua: string): string {
  return lua.replace(/^--- @include "(_[\w-]+\.lua)"$/gm, (_line, name: string) => readFileSync(new URL(name, file), "utf8").trimEnd());
}

export class RedisScript {
  /** The name it is defined under on a client: its file's name without `.lua`, such as `take-8`. */
  readonly name: string;
  readonly numberOfKeys: number;
  readonly lua: string;
  /** Its SHA-1, as EVALSHA names it. */
  readonly sha: string;

  constructor(file: URL) {
    const fileName = file.pathname.slice(file.pathname.lastIndexOf("/") + 1);
    const parts = FILE_NAME.exec(fileName);
    if (!parts) throw new Error(`${file.pathname}: a Redis script's file is named <verb>-<number of keys>.lua`);
    this.name = `${parts[1]}-${parts[2]}`;
    this.numberOfKeys = Number(parts[2]);
    this.lua = withIncludes(file, readFileSync(file, "utf8"));
    this.sha = createHash("sha1").update(this.lua).digest("hex");
    const other = loaded.get(this.name);
    if (other !== undefined && other.lua !== this.lua) throw new Error(`two different Redis scripts are named ${fileName}`);
    loaded.set(this.name, this);
  }

  /** Runs the script on `client` (made by the store's connection factories): its reply. */
  async run(client: ScriptClient, keys: readonly string[], args: readonly ScriptArgument[] = []): Promise<unknown> {
    this.checkKeys(keys);
    return Reflect.apply(this.commandOn(client), client, [...keys, ...args]);
  }

  /** Adds a run of the script to a pipeline of a client made by the store's connection factories. */
  queue(pipeline: ChainableCommander, keys: readonly string[], args: readonly ScriptArgument[] = []): void {
    this.checkKeys(keys);
    Reflect.apply(this.commandOn(pipeline), pipeline, [...keys, ...args]);
  }

  private commandOn(client: ScriptClient | ChainableCommander): DefinedScript {
    const command = definedOn(client, this.name);
    if (typeof command !== "function") {
      throw new Error(`the Redis script ${this.name} is not defined on this client: make clients with the store's connection factories, or load the script before making them`);
    }
    return command;
  }

  private checkKeys(keys: readonly string[]) {
    if (keys.length !== this.numberOfKeys) throw new Error(`the Redis script ${this.name} takes ${this.numberOfKeys} keys, not ${keys.length}`);
  }
}

/** Runs `script` on a transaction connection: EVALSHA, and EVAL when the server lacks it (a restarted or flushed server). */
export async function runOn(connection: RespConnection, script: RedisScript, keys: readonly string[], args: readonly ScriptArgument[] = []): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) throw new Error(`the Redis script ${script.name} takes ${script.numberOfKeys} keys, not ${keys.length}`);
  let [reply] = await connection.send([["EVALSHA", script.sha, keys.length, ...keys, ...args]]);
  if (replyCodeOf(reply) === "NOSCRIPT") [reply] = await connection.send([["EVAL", script.lua, keys.length, ...keys, ...args]]);
  if (reply instanceof Error) throw reply;
  return reply;
}

function definedOn(client: ScriptClient | ChainableCommander, name: string): DefinedScript | undefined {
  return (client as unknown as Record<string, DefinedScript | undefined>)[name];
}

/** Deletes a key if it still holds a given value (a claim or marker that may have passed to someone else). */
export const compareAndDelete = new RedisScript(new URL("./scripts/compare-and-delete-1.lua", import.meta.url));

/** Sets a key's expiry if it still holds a given value (extends a claim that is still ours). */
export const compareAndPexpire = new RedisScript(new URL("./scripts/compare-and-pexpire-1.lua", import.meta.url));
