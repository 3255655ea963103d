// The interface every integrated application implements: its configuration (schema, defaults,
// rules), the job specification it registers, and the shape of its pod, service and network
// policy. Apps never touch Redis, HTTP or the Kubernetes API: the service and the reconciler
// call these hooks with plain objects. Imports valibot, Kubernetes object types and
// src/store/keys.ts (for the Owner type) only.

import type { V1NetworkPolicy, V1Pod, V1Service, V1Volume } from "@kubernetes/client-node";
import type * as v from "valibot";
import type { Owner } from "./owner.ts";
import type { AppRuntime } from "./runtime.ts";

/** UCloud's JobSpecification, the fields this service fills in (see spec §4.2). */
export interface JobSpecification {
  product: { id: string; category: string; provider: string };
  application: { name: string; version: string };
  name: string;
  replicas: number;
  parameters: Record<string, unknown>;
  resources: unknown[];
  labels?: Record<string, string>;
}

/** A configuration rule broken: where (a path inside `config`) and why. */
export interface ConfigProblem {
  path: string;
  reason: string;
}

/** `[apps.<name>]` of config.toml: what every app has, and the keys of particular apps. */
export interface AppSettings {
  enabled: boolean;
  image: string;
  image_version: string;
  port_min?: number;
  port_max?: number;
  ip_address?: string;
  relays?: boolean;
  inactivity?: number;
}

/** What the pod hooks know of the record they shape a pod for. */
export interface PodContext<Config, Facts = unknown> {
  owner: Owner;
  jobId: string;
  etag: string;
  config: Config;
  settings: AppSettings;
  /**
   * The volume of the storage root, named `ucloud-filesystem` (a hostPath of the root, or a
   * PersistentVolumeClaim): user data is mounted from it by `subPath` only, as UCloud does, so the
   * kubelet resolves each path inside the volume. Never a hostPath inside the storage root.
   */
  filesystem: V1Volume;
  /** What `observe` found out for this reconcile (folder access, leases, the port held). */
  facts: Facts;
}

export interface IntegratedApp<Config = unknown, Facts = unknown> {
  readonly name: string;
  /** Internal apps (the terminal) have no configuration routes; the service changes them itself. */
  readonly internal: boolean;
  /** Shape of a configuration; its output is what gets stored. */
  readonly configSchema: v.GenericSchema<unknown, Config>;
  defaultConfig(owner: Owner): Config;
  /** Rules that span several fields (duplicates, limits). Runs after the schema. */
  validate(config: Config): ConfigProblem | null;
  /** Adjusts the generic job specification before the job is registered. */
  mutateJobSpec(owner: Owner, spec: JobSpecification): JobSpecification;

  /** Written to the pod annotation `ucloud.dk/iapp-version`; a pod with another one is replaced. */
  version(settings: AppSettings): string | undefined;
  /**
   * Rules that need the world beyond the configuration (Syncthing: no restricted folder), checked
   * before an update is stored. Answers the problem, or null.
   */
  admit?(owner: Owner, config: Config, runtime: AppRuntime): Promise<ConfigProblem | null>;
  /**
   * What must go from a stored configuration by itself (Syncthing: folders that became
   * restricted since): the configuration without it, and why, in words for the owner; or null.
   * The reconciler stores it as a new version (new ETag), so the pod restarts without it.
   */
  prune?(context: PodContext<Config, Facts>): { config: Config; warnings: string[] } | null;
  /**
   * Reads what the other runtime hooks depend on, once per reconcile (folder access, leases).
   * `pod` is the job's pod as the watch cache has it (null when there is none): what it was
   * started with need not be read again (Syncthing's port).
   */
  observe(context: Omit<PodContext<Config, Facts>, "facts"> & { pod?: V1Pod | null }, runtime: AppRuntime): Promise<Facts>;
  /** Whether the app should have a running pod now. */
  shouldRun(context: PodContext<Config, Facts>): boolean;
  /** Whether a running pod still fits the configuration (beyond its ETag and version). */
  podMatches(pod: V1Pod, context: PodContext<Config, Facts>): boolean;
  /**
   * Before a pod is created: applies the configuration's side effects (state files) and claims
   * what the pod needs (a port). Answers why the pod cannot start now, or null.
   */
  prepareStart(context: PodContext<Config, Facts>, runtime: AppRuntime): Promise<string | null>;
  /** The job has no pod any more and will not get one now: give back what prepareStart claimed. */
  release(jobId: string, runtime: AppRuntime): Promise<void>;
  /** Shapes the generic pod (spec §6) before it is created. */
  mutatePod(pod: V1Pod, context: PodContext<Config, Facts>): void;
  mutateService(service: V1Service, context: PodContext<Config, Facts>): void;
  mutateNetworkPolicy(policy: V1NetworkPolicy, context: PodContext<Config, Facts>): void;
  /** Services beyond the job's headless one (owned by the pod, like it). */
  extraServices(context: PodContext<Config, Facts>): V1Service[];
  /** When `shouldRun` will change by itself (a lease running out): in how many ms, or null. */
  recheckAfter(context: PodContext<Config, Facts>): number | null;
  /** After a reset was stored: side effects of a reset (Syncthing wipes its state folder). */
  reset(owner: Owner, runtime: AppRuntime): Promise<void>;
}

export function defineApp<Config, Facts>(app: IntegratedApp<Config, Facts>): IntegratedApp<Config, Facts> {
  return app;
}
