// The interface every integrated application implements: its configuration (schema, defaults,
// rules), the job specification it registers, and the shape of its pod, service and network
// policy. Apps never touch Redis, HTTP or the Kubernetes API: the service and the reconciler
// call these hooks with plain objects. Imports valibot, Kubernetes object types and
// src/store/keys.ts (for the Owner type) only.

import type { V1NetworkPolicy, V1Pod, V1Service } from "@kubernetes/client-node";
import type * as v from "valibot";
import type { Owner } from "../store/keys.ts";

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

/** `[apps.<name>]` of config.toml. */
export interface AppSettings {
  enabled: boolean;
  image: string;
  image_version: string;
}

/** What the pod hooks know of the record they shape a pod for. */
export interface PodContext<Config> {
  owner: Owner;
  jobId: string;
  etag: string;
  config: Config;
  settings: AppSettings;
}

export interface IntegratedApp<Config = unknown> {
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
  /** Whether the app should have a running pod now. */
  shouldRun(context: PodContext<Config>): boolean;
  /** Whether a running pod still fits the configuration (beyond its ETag and version). */
  podMatches(pod: V1Pod, context: PodContext<Config>): boolean;
  /** Shapes the generic pod (spec §6) before it is created. */
  mutatePod(pod: V1Pod, context: PodContext<Config>): void;
  mutateService(service: V1Service, context: PodContext<Config>): void;
  mutateNetworkPolicy(policy: V1NetworkPolicy, context: PodContext<Config>): void;
}

export function defineApp<Config>(app: IntegratedApp<Config>): IntegratedApp<Config> {
  return app;
}
