// The integrated applications this service knows. Adding an app: one module, one line here.

import type { IntegratedApp } from "../domain/app.ts";
import { syncthing } from "./syncthing.ts";
import { terminal } from "./terminal.ts";

export const allApps: readonly IntegratedApp<any>[] = [syncthing, terminal];

export type AppRegistry = ReadonlyMap<string, IntegratedApp<unknown>>;

/** The apps enabled by `[apps.<name>] enabled`. */
export function enabledApps(enabled: (name: string) => boolean): AppRegistry {
  return new Map(allApps.filter((app) => enabled(app.name)).map((app) => [app.name, app]));
}
