// The interface every integrated application implements, and the job specification it shapes.
// Apps never touch Redis, HTTP or Kubernetes directly: the service, worker and reconciler call
// these hooks. Imports valibot and src/store/keys.ts (for the Owner type) only.

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
}

export function defineApp<Config>(app: IntegratedApp<Config>): IntegratedApp<Config> {
  return app;
}
