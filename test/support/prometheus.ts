// A small, strict parser of the Prometheus text exposition format 0.0.4, for tests: it throws on
// anything a scraper could choke on or misread, rather than skipping it. Checked: every line is
// a HELP, TYPE or other comment, or `name{labels} value`; label values are quoted with only the
// escapes \\ \" \n; a family's TYPE comes before its samples, at most once, and its samples form
// one group; no series twice; counters are not negative; histogram buckets are cumulative,
// ordered by `le`, end in +Inf, and `_count` equals the +Inf bucket.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help?: string;
  samples: Sample[];
}

export class Exposition {
  constructor(readonly families: Map<string, Family>) {}

  /** The value of the sample with exactly these labels, or undefined. */
  get(name: string, labels: Record<string, string> = {}): number | undefined {
    const family = this.families.get(familyOf(name, this.families)) ?? this.families.get(name);
    const wanted = JSON.stringify(sorted(labels));
    return family?.samples.find((s) => s.name === name && JSON.stringify(sorted(s.labels)) === wanted)?.value;
  }

  /** A counter's value, 0 when the series has not appeared yet (as Prometheus treats a new series). */
  counter(name: string, labels: Record<string, string> = {}): number {
    return this.get(name, labels) ?? 0;
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parsePrometheus(text: string): Exposition {
  if (text !== "" && !text.endsWith("\n")) throw new Error("the exposition must end with a newline");
  const families = new Map<string, Family>();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  const typed = new Set<string>();
  let current: string | null = null;
  const lines = text === "" ? [] : text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line)})`;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!match) return; // another comment
      const [, keyword, name, rest = ""] = match as unknown as [string, string, string, string | undefined];
      if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
      let family = families.get(name);
      if (family && family.samples.length > 0) throw new Error(`${where}: ${keyword} after the family's samples`);
      if (!family) {
        family = { name, type: "untyped", samples: [] };
        families.set(name, family);
      }
      if (keyword === "TYPE") {
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type`);
        if (typed.has(name)) throw new Error(`${where}: a second TYPE for ${name}`);
        family.type = rest as Family["type"];
        typed.add(name);
      } else {
        if (family.help !== undefined) throw new Error(`${where}: a second HELP for ${name}`);
        if (!/^(?:[^\\]|\\[\\n])*$/.test(rest)) throw new Error(`${where}: bad escape in HELP`);
        family.help = rest;
      }
      return;
    }
    if (line === "") throw new Error(`${where}: an empty line`);
    const sample = parseSample(line, where);
    const familyName = familyOf(sample.name, families);
    const family = families.get(familyName);
    if (!family || !typed.has(familyName)) throw new Error(`${where}: a sample before its family's TYPE line`);
    if (current !== familyName) {
      if (closed.has(familyName)) throw new Error(`${where}: the samples of ${familyName} are not one group`);
      if (current !== null) closed.add(current);
      current = familyName;
    }
    const series = `${sample.name}${JSON.stringify(sorted(sample.labels))}`;
    if (seenSeries.has(series)) throw new Error(`${where}: the series appears twice`);
    seenSeries.add(series);
    if (family.type === "counter" && !(sample.value >= 0)) throw new Error(`${where}: a counter below zero`);
    if (family.type === "counter" && sample.name !== family.name) throw new Error(`${where}: a counter sample must use the family name`);
    family.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return new Exposition(families);
}

function familyOf(name: string, families: Map<string, Family>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (families.get(base)?.type === "histogram" || families.get(base)?.type === "summary") return base;
    }
  }
  return name;
}

function parseSample(line: string, where: string): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) throw new Error(`${where}: no metric name`);
  const name = nameMatch[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    while (line[i] !== "}") {
      const labelMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (!labelMatch) throw new Error(`${where}: bad label name at ${i}`);
      const label = labelMatch[0];
      i += label.length;
      if (line[i] !== "=" || line[i + 1] !== '"') throw new Error(`${where}: expected ="…" after ${label}`);
      i += 2;
      let value = "";
      for (;;) {
        const ch = line[i];
        if (ch === undefined) throw new Error(`${where}: unterminated label value`);
        if (ch === '"') break;
        if (ch === "\\") {
          const next = line[i + 1];
          if (next === "\\") value += "\\";
          else if (next === '"') value += '"';
          else if (next === "n") value += "\n";
          else throw new Error(`${where}: bad escape \\${next}`);
          i += 2;
          continue;
        }
        value += ch;
        i++;
      }
      i++;
      if (label in labels) throw new Error(`${where}: label ${label} twice`);
      labels[label] = value;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") throw new Error(`${where}: expected , or } at ${i}`);
    }
    i++;
  }
  const rest = /^ (\S+)(?: (-?\d+))?$/.exec(line.slice(i));
  if (!rest) throw new Error(`${where}: expected " value [timestamp]" after the labels`);
  return { name, labels, value: parseValue(rest[1]!, where) };
}

function parseValue(text: string, where: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${text}`);
  return Number(text);
}

function checkHistogram(family: Family) {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(sorted(rest));
    let entry = series.get(key);
    if (!entry) {
      entry = { buckets: [] };
      series.set(key, entry);
    }
    if (sample.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`);
      entry.buckets.push([parseValue(le, family.name), sample.value]);
    } else if (sample.name === `${family.name}_sum`) entry.sum = sample.value;
    else if (sample.name === `${family.name}_count`) entry.count = sample.value;
    else throw new Error(`${family.name}: unexpected sample ${sample.name}`);
  }
  for (const [key, entry] of series) {
    const where = `${family.name}${key}`;
    if (entry.buckets.length === 0) throw new Error(`${where}: no buckets`);
    for (let i = 1; i < entry.buckets.length; i++) {
      if (!(entry.buckets[i]![0] > entry.buckets[i - 1]![0])) throw new Error(`${where}: buckets not ordered by le`);
      if (entry.buckets[i]![1] < entry.buckets[i - 1]![1]) throw new Error(`${where}: buckets not cumulative`);
    }
    const last = entry.buckets.at(-1)!;
    if (last[0] !== Infinity) throw new Error(`${where}: the last bucket is not +Inf`);
    if (entry.count === undefined || entry.sum === undefined) throw new Error(`${where}: _sum or _count missing`);
    if (entry.count !== last[1]) throw new Error(`${where}: _count ${entry.count} differs from the +Inf bucket ${last[1]}`);
  }
}

function sorted(labels: Record<string, string>): [string, string][] {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
