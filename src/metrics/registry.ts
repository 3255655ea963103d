// A small Prometheus registry: counters, gauges and histograms with labels, written out in the
// text exposition format 0.0.4 (HELP and TYPE lines, escaped label values, cumulative buckets
// ending in +Inf). No dependency and no runtime API, so it works the same under Bun, Deno and
// Node. Labels are declared up front and every sample must give exactly those: a typo in a label
// name fails at the call, not as a silent new series.
// Imports nothing.

export type Labels = Record<string, string | number>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Seconds; from 1 ms to 10 s, the range of an API request or a reconcile. */
export const DEFAULT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

abstract class Metric {
  abstract readonly type: "counter" | "gauge" | "histogram";

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!NAME.test(name)) throw new Error(`metric name ${name} is not valid in Prometheus`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) throw new Error(`${name}: label name ${label} is not valid`);
    }
  }

  /** The series key: label values in declared order, so `{a, b}` and `{b, a}` are one series. */
  protected keyOf(labels: Labels): string {
    // The hot path (a cache hit counts one): no labels declared, none given.
    if (this.labelNames.length === 0 && isEmpty(labels)) return "[]";
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || this.labelNames.some((name) => !(name in labels))) {
      throw new Error(`${this.name}: expected labels {${this.labelNames.join(", ")}}, got {${given.join(", ")}}`);
    }
    return JSON.stringify(this.labelNames.map((name) => String(labels[name])));
  }

  protected labelText(key: string, extra?: [string, string]): string {
    const values = JSON.parse(key) as string[];
    const pairs = this.labelNames.map((name, i) => `${name}="${escapeLabelValue(values[i]!)}"`);
    if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
  }

  header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  abstract samples(): string;
}

export class Counter extends Metric {
  readonly type = "counter";
  /** Per series, a cell of its own: a bound series adds to its cell without looking it up. */
  private readonly values = new Map<string, { value: number }>();

  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
    this.cell(this.keyOf(labels)).value += by;
  }

  /**
   * One series, its labels checked once and its cell found once (at its first increment, so that
   * a series bound but never counted is not written out): for a hot path that counts the same
   * series often.
   */
  bind(labels: Labels): { inc(by?: number): void } {
    const key = this.keyOf(labels);
    let cell: { value: number } | undefined;
    return {
      inc: (by = 1) => {
        if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
        cell ??= this.cell(key);
        cell.value += by;
      },
    };
  }

  private cell(key: string): { value: number } {
    let cell = this.values.get(key);
    if (cell === undefined) {
      cell = { value: 0 };
      this.values.set(key, cell);
    }
    return cell;
  }

  /** The current value of one series (0 when it never moved): for tests and benchmarks. */
  get(labels: Labels = {}): number {
    return this.values.get(this.keyOf(labels))?.value ?? 0;
  }

  samples(): string {
    let out = "";
    for (const [key, { value }] of this.values) out += `${this.name}${this.labelText(key)} ${formatValue(value)}\n`;
    return out;
  }
}

export class Gauge extends Metric {
  readonly type = "gauge";
  private readonly values = new Map<string, number>();

  set(labels: Labels, value: number): void {
    this.values.set(this.keyOf(labels), value);
  }

  /** Forgets every series: a value that could not be measured is left out rather than left stale. */
  clear(): void {
    this.values.clear();
  }

  get(labels: Labels = {}): number | undefined {
    return this.values.get(this.keyOf(labels));
  }

  samples(): string {
    let out = "";
    for (const [key, value] of this.values) out += `${this.name}${this.labelText(key)} ${formatValue(value)}\n`;
    return out;
  }
}

interface HistogramSeries {
  /** Per bucket, the observations that fell into it (not cumulative; summed when written). */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric {
  readonly type = "histogram";
  private readonly series = new Map<string, HistogramSeries>();
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[] = DEFAULT_BUCKETS) {
    super(name, help, labelNames);
    if (labelNames.includes("le")) throw new Error(`${name}: a histogram may not have a label "le"`);
    const sorted = [...buckets].filter((b) => Number.isFinite(b)).sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b, i) => i > 0 && b === sorted[i - 1])) throw new Error(`${name}: buckets must be distinct finite numbers`);
    this.buckets = sorted;
  }

  observe(labels: Labels, value: number): void {
    this.record(this.seriesOf(this.keyOf(labels)), value);
  }

  /**
   * One series, its labels checked once and its series found once (at its first observation, so
   * that a series bound but never observed is not written out): for a hot path that observes the
   * same series often.
   */
  bind(labels: Labels): { observe(value: number): void } {
    const key = this.keyOf(labels);
    let series: HistogramSeries | undefined;
    return {
      observe: (value) => {
        series ??= this.seriesOf(key);
        this.record(series, value);
      },
    };
  }

  private seriesOf(key: string): HistogramSeries {
    let series = this.series.get(key);
    if (!series) {
      series = { counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(key, series);
    }
    return series;
  }

  private record(series: HistogramSeries, value: number): void {
    const { buckets } = this;
    let index = 0;
    while (index < buckets.length && !(value <= buckets[index]!)) index++;
    series.counts[index]!++;
    series.sum += value;
    series.count++;
  }

  /** Observations of one series so far: for tests and benchmarks. */
  count(labels: Labels = {}): number {
    return this.series.get(this.keyOf(labels))?.count ?? 0;
  }

  samples(): string {
    let out = "";
    for (const [key, series] of this.series) {
      let cumulative = 0;
      this.buckets.forEach((bound, i) => {
        cumulative += series.counts[i]!;
        out += `${this.name}_bucket${this.labelText(key, ["le", formatValue(bound)])} ${cumulative}\n`;
      });
      out += `${this.name}_bucket${this.labelText(key, ["le", "+Inf"])} ${series.count}\n`;
      out += `${this.name}_sum${this.labelText(key)} ${formatValue(series.sum)}\n`;
      out += `${this.name}_count${this.labelText(key)} ${series.count}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric>();

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }

  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets?: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  private add<M extends Metric>(metric: M): M {
    if (this.metrics.has(metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }

  /** The text exposition format 0.0.4; every metric has its HELP and TYPE, even before its first sample. */
  expose(): string {
    let out = "";
    for (const metric of this.metrics.values()) out += metric.header() + metric.samples();
    return out;
  }
}

export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function isEmpty(labels: Labels): boolean {
  for (const _ in labels) return false;
  return true;
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
