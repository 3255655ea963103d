// Users' configurations of their apps (spec §2 to §4, §11): the four operations retrieve, update,
// reset and restart, a record's history and the rollback to a kept version, with their rules (the ETag required when `[api] require_etag`, validation and
// the app's admission before anything is stored), and the entry to the terminal's open and
// activity (./terminal.ts). Every change goes through the write loop (./write-loop.ts). Knows
// nothing of HTTP or Kubernetes; the HTTP layer calls the ConfigurationService and nothing else.
// Imports src/apps/registry.ts, src/store/records.ts and src/ucloud/jobs.ts (types),
// src/domain (types), src/base/errors.ts and ./preconditions.ts, ./terminal.ts, ./unavailable.ts,
// ./validation.ts, ./write-loop.ts.

import type { IntegratedApp } from "../domain/app.ts";
import type { AppRegistry } from "../apps/registry.ts";
import type { AppRuntime } from "../domain/runtime.ts";
import { invalidConfiguration, noConfigurationRoutes, notFound, preconditionRequired, unknownApplication } from "../base/errors.ts";
import type { Owner } from "../domain/owner.ts";
import type { StoredRecord, Version, Via } from "../domain/record.ts";
import type { RecordStore } from "../store/records.ts";
import type { JobRegistry } from "../ucloud/jobs.ts";
import { INITIAL_ETAG, type Preconditions } from "./preconditions.ts";
import type { ShellSession } from "../store/shell-sessions.ts";
import { openShellSession, type ShellSessionSettings } from "./shell.ts";
import { openTerminal, type Terminal, type TerminalOpened, terminalActivity } from "./terminal.ts";
import { orUnavailable, rethrowUnavailable } from "./unavailable.ts";
import { validateConfig } from "./validation.ts";
import { WriteLoop } from "./write-loop.ts";

export interface ConfigurationServiceOptions {
  apps: AppRegistry;
  store: RecordStore;
  jobs: JobRegistry;
  providerId: string;
  requireEtag: boolean;
  /** How long to wait for another replica registering the same record's first job. */
  jobClaimWaitMs: number;
  /** Storage, ports and leases: for the terminal's open and activity (required by them). */
  runtime?: AppRuntime;
  /** `[apps.terminal] inactivity`: how long an open or activity keeps the terminal alive. Default 15 minutes. */
  terminalInactivityMs?: number;
  log?: (level: "warn" | "error", message: string, fields?: Record<string, unknown>) => void;
  /** The terminal's shell sessions (openTerminalInFolder). */
  shells?: Omit<ShellSessionSettings, "storage"> & {
    /** `[server] public_url`: where the UI reaches this service ("" when unknown: the request's own URL). */
    publicUrl: string;
  };
}

export interface View {
  etag: string;
  config: unknown;
  /** What the service itself removed from the configuration, and why (a folder marked restricted); absent when nothing. */
  warnings?: string[];
}

/** One page of a record's history. */
export interface HistoryPage {
  items: Version[];
  /** Where the next page starts (pass it as `next`), or null after the last. */
  next: string | null;
}

const TERMINAL = "terminal";
const DEFAULT_TERMINAL_INACTIVITY_MS = 15 * 60_000;

export class ConfigurationService {
  private readonly writes: WriteLoop;

  constructor(private readonly options: ConfigurationServiceOptions) {
    this.writes = new WriteLoop(options);
  }

  /** An app with configuration routes (the terminal has none: it is internal, and configured by opening it). */
  configurableApp(name: string): IntegratedApp<unknown> {
    const app = this.options.apps.get(name);
    if (!app) throw unknownApplication(name);
    if (app.internal) throw noConfigurationRoutes(app.name, this.options.providerId);
    return app;
  }

  /**
   * Never throws: a refused app is a rejected promise. One `.then` on the read rather than async
   * and await: with the cache off the read is one HGETALL, and every promise around it counts.
   */
  retrieve(appName: string, owner: Owner): Promise<View> {
    let app: IntegratedApp<unknown>;
    try {
      app = this.configurableApp(appName);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.options.store.read(app.name, owner).then((record) => viewOf(app, owner, record), rethrowUnavailable);
  }

  /**
   * What retrieve answers, when this replica's cache holds the record; undefined whenever retrieve
   * would do anything else (read Redis, or refuse the app): for the HTTP layer's warm retrieve,
   * which answers without waiting a turn (src/http/warm-retrieve.ts).
   */
  retrieveCached(appName: string, owner: Owner): View | undefined {
    const app = this.options.apps.get(appName);
    if (app === undefined || app.internal) return undefined;
    const record = this.options.store.cached(app.name, owner);
    return record === undefined ? undefined : viewOf(app, owner, record);
  }

  /** Validates `rawConfig` and stores it with a new ETag. Answers the new ETag. */
  async update(appName: string, owner: Owner, rawConfig: unknown, pre: Preconditions, via: Via = "provider"): Promise<{ etag: string }> {
    const app = this.configurableApp(appName);
    if (this.options.requireEtag && pre.expectedETag === null && pre.ifMatch === null) throw preconditionRequired();
    const config = validateConfig(app, rawConfig);
    await this.admit(app, owner, config);
    const result = await this.writes.change(app, owner, pre, () => ({ kind: "write", config }), via);
    return { etag: result.etag! };
  }

  /**
   * The record's kept versions, newest first, `itemsPerPage` at a time; `next` (from the page
   * before) is the ETag of that page's last version. Answers the next page's token, or null.
   */
  async history(appName: string, owner: Owner, itemsPerPage: number, next: string | null): Promise<HistoryPage> {
    const app = this.configurableApp(appName);
    const versions = await orUnavailable(this.options.store.history(app.name, owner));
    let start = 0;
    if (next !== null) {
      const after = versions.findIndex((version) => version.etag === next);
      // The version the page ended with is no longer kept: the walk has reached what is kept.
      start = after === -1 ? versions.length : after + 1;
    }
    const items = versions.slice(start, start + itemsPerPage);
    const more = start + itemsPerPage < versions.length;
    return { items, next: more && items.length > 0 ? items[items.length - 1]!.etag : null };
  }

  /**
   * Makes the configuration of the kept version `etag` current again, as a new version (kind
   * `rollback`, a new ETag), validated and admitted again as an update is. 404 when no kept
   * version has that ETag.
   */
  async rollback(appName: string, owner: Owner, etag: string, pre: Preconditions, via: Via = "provider"): Promise<{ etag: string }> {
    const app = this.configurableApp(appName);
    if (this.options.requireEtag && pre.expectedETag === null && pre.ifMatch === null) throw preconditionRequired();
    const versions = await orUnavailable(this.options.store.history(app.name, owner));
    const version = versions.find((kept) => kept.etag === etag);
    if (!version) throw notFound(`No kept version of the ${app.name} configuration has the ETag "${etag}". The history lists the versions kept.`);
    const config = validateConfig(app, version.config);
    await this.admit(app, owner, config);
    const result = await this.writes.change(app, owner, pre, () => ({ kind: "write", config, as: "rollback" }), via);
    return { etag: result.etag! };
  }

  /** Stores the default configuration with a new ETag; with no record, does nothing. */
  async reset(appName: string, owner: Owner, pre: Preconditions, via: Via = "provider"): Promise<{ etag: string | null }> {
    const app = this.configurableApp(appName);
    // The side effects (Syncthing wipes its state folder) are the worker's, once the old pod is
    // gone: a pod still running could write its state again right after a wipe done here.
    const result = await this.writes.change(app, owner, pre, (record) =>
      record === null ? { kind: "nothing" } : { kind: "write", config: app.defaultConfig(owner), reset: true },
      via,
    );
    return { etag: result.etag };
  }

  /** Asks the worker to recreate the job's pod; a record whose job is gone gets a new job. */
  async restart(appName: string, owner: Owner, pre: Preconditions, via: Via = "provider"): Promise<{ etag: string }> {
    const app = this.configurableApp(appName);
    const result = await this.writes.change(
      app,
      owner,
      pre,
      (record) => {
        if (record === null) throw notFound(`There is no ${app.name} configuration to restart. Save a configuration first.`);
        return { kind: "restart" };
      },
      via,
    );
    return { etag: result.etag! };
  }

  /** Opens the owner's terminal on `folder`: see openTerminal in ./terminal.ts. */
  async openTerminal(owner: Owner, folder: string): Promise<TerminalOpened> {
    return openTerminal(this.terminal(), owner, folder);
  }

  /** A key press in the owner's terminal: see terminalActivity in ./terminal.ts. */
  async terminalActivity(owner: Owner): Promise<void> {
    return terminalActivity(this.terminal(), owner);
  }

  /** A shell session of `owner` in `folder`: see openShellSession in ./shell.ts. */
  async openShellSession(owner: Owner, folder: string): Promise<ShellSession> {
    this.terminal();
    const { shells } = this.options;
    if (!shells) throw new Error("ConfigurationService: shell sessions need the `shells` option");
    return openShellSession({ ...shells, storage: this.runtime().storage }, owner, folder);
  }

  /** `[ucloud] provider_id`. */
  get providerId(): string {
    return this.options.providerId;
  }

  /** `[server] public_url`, or "" when the request's own URL is to be used. */
  publicUrl(): string {
    return this.options.shells?.publicUrl ?? "";
  }

  private terminal(): Terminal {
    const app = this.options.apps.get(TERMINAL);
    if (!app) throw unknownApplication(TERMINAL);
    return {
      app,
      store: this.options.store,
      runtime: this.runtime(),
      writes: this.writes,
      inactivityMs: this.options.terminalInactivityMs ?? DEFAULT_TERMINAL_INACTIVITY_MS,
    };
  }

  private runtime(): AppRuntime {
    const { runtime } = this.options;
    if (!runtime) throw new Error("ConfigurationService: the terminal and admission rules need the `runtime` option");
    return runtime;
  }

  /** The app's rules that look beyond the configuration (Syncthing's restricted folders). */
  private async admit(app: IntegratedApp<unknown>, owner: Owner, config: unknown): Promise<void> {
    if (!app.admit) return;
    const problem = await orUnavailable(app.admit(owner, config, this.runtime()));
    if (problem) throw invalidConfiguration(`config.${problem.path}: ${problem.reason}`);
  }
}

/** What a retrieve answers for `record` (null: none stored, the app's default applies). */
function viewOf(app: IntegratedApp<unknown>, owner: Owner, record: StoredRecord | null): View {
  if (!record) return { etag: INITIAL_ETAG, config: app.defaultConfig(owner) };
  return record.warnings === undefined ? { etag: record.etag, config: record.config } : { etag: record.etag, config: record.config, warnings: record.warnings };
}
