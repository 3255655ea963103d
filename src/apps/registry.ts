// The integrated applications this service knows. Adding an app: one module, one line here.

import type { IntegratedApp } from "../domain/app.ts";
import { syncthing } from "./syncthing.ts";
import { terminal } from "./terminal.ts";

// Each app's hooks take its own config and facts; the registry holds them as unknown.
export const allApps: readonly IntegratedApp<unknown>[] = [syncthing as IntegratedApp<unknown>, terminal as IntegratedApp<unknown>];

export type AppRegistry = ReadonlyMap<string, IntegratedApp<unknown>>;

/** The apps enabled by `[apps.<name>] enabled`. */
export function enabledApps(enabled: (name: string) => boolean): AppRegistry {
  return new Map(allApps.filter((app) => enabled(app.name)).map((app) => [app.name, app]));
}
