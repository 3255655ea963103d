// Whether a configuration may be stored, checked before anything is stored or registered (spec
// §4.1): the app's valibot schema, then the app's own rules, then its size as stored. A refusal is
// a 400 naming the field at fault (`config.folders[0].path`), or a 413 naming the limit. Pure: no
// Redis, no storage (rules that look at drives are the apps' `admit`, run by configurations.ts).
// Imports valibot, src/domain/app.ts (types) and src/base/errors.ts.

import * as v from "valibot";
import type { IntegratedApp } from "../domain/app.ts";
import { configurationTooLarge, invalidConfiguration } from "../base/errors.ts";

/**
 * The most a stored configuration may take, as UTF-8 JSON: every replica's cache, every retrieve
 * and every reconcile carries it whole. 1,000 Syncthing folders and devices of ordinary length
 * take about a third of it; the request body limit alone (an operator may raise it) is no bound.
 */
export const MAX_CONFIG_BYTES = 512 * 1024;

const utf8 = new TextEncoder();

/** The configuration as it will be stored, or the 400 (or 413, over MAX_CONFIG_BYTES) saying why not. */
export function validateConfig(app: IntegratedApp<unknown>, raw: unknown): unknown {
  const result = v.safeParse(app.configSchema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const path = v.getDotPath(issue);
    throw invalidConfiguration(`${formatPath(path)}: ${describe(issue)}`);
  }
  const problem = app.validate(result.output);
  if (problem) throw invalidConfiguration(`config.${problem.path}: ${problem.reason}`);
  // Measured as stored: unknown fields are gone, ids and defaults filled in.
  const bytes = utf8.encode(JSON.stringify(result.output)).length;
  if (bytes > MAX_CONFIG_BYTES) throw configurationTooLarge(bytes, MAX_CONFIG_BYTES);
  return result.output;
}

function formatPath(dotPath: string | null): string {
  if (!dotPath) return "config";
  return `config.${dotPath.replace(/\.(\d+)(?=\.|$)/g, "[$1]")}`;
}

function describe(issue: v.BaseIssue<unknown>): string {
  if (issue.expected && issue.received && /^Invalid (type|key)/.test(issue.message)) {
    return `expected ${issue.expected}, got ${issue.received}`;
  }
  return issue.message;
}
