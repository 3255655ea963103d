// The Layout section of docs/development.md is the newcomer's map of the code: it names every folder of src/
// (and every file directly in src/), and everything it names exists.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const readme = readFileSync(join(ROOT, "docs/development.md"), "utf8");
const layout = readme.slice(readme.indexOf("## Layout"), readme.indexOf("\n## ", readme.indexOf("## Layout") + 1));

describe("the Layout section of docs/development.md matches the tree", () => {
  test("every folder of src/, and every file directly in it, has its row", () => {
    const entries = readdirSync(join(ROOT, "src"), { withFileTypes: true }).map((entry) => (entry.isDirectory() ? `src/${entry.name}/` : `src/${entry.name}`));
    expect(entries.filter((entry) => !layout.includes(`\`${entry}\``))).toEqual([]);
  });

  test("every folder it names exists, and every file it names exists in its row's folder", () => {
    const missing: string[] = [];
    for (const row of layout.split("\n").filter((line) => line.startsWith("| `"))) {
      const [folder] = /`([^`]+)`/.exec(row)!.slice(1) as [string];
      if (!existsSync(join(ROOT, folder))) missing.push(folder);
      if (!folder.startsWith("src/") || !folder.endsWith("/")) continue;
      const owns = row.split("|")[2] ?? "";
      for (const [, file] of owns.matchAll(/`([\w.-]+\.ts|[\w-]+\/)`/g)) {
        if (!existsSync(join(ROOT, folder, file!))) missing.push(`${folder}${file}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
