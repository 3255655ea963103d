// Label and field selectors of list and watch requests, parsed once per request into a
// predicate. The grammar is Kubernetes' own (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
// `k notin (a,b)`, `k>1`, `k<1`, requirements joined by commas, all of them must hold).
// Imports ./status.ts only.

import { badRequest } from "./status.ts";

export type Labels = Record<string, string> | undefined;

type Requirement =
  | { key: string; op: "exists" | "absent" }
  | { key: string; op: "in" | "notin"; values: Set<string> }
  | { key: string; op: "gt" | "lt"; limit: number };

/** A selector as a predicate, with the `label=value` pairs every match has (for an index). */
export type LabelSelector = ((labels: Labels) => boolean) & { required: [string, string][] };

/** Parses `text` (empty or missing: everything matches); a malformed selector is a 400. */
export function parseLabelSelector(text: string | null | undefined): LabelSelector {
  const requirements = new LabelSelectorParser(text ?? "").parse();
  const selector = (labels: Labels) => requirements.every((requirement) => holds(requirement, labels ?? {}));
  const required = requirements.flatMap((r): [string, string][] => (r.op === "in" && r.values.size === 1 ? [[r.key, [...r.values][0]!]] : []));
  return Object.assign(selector, { required });
}

function holds(requirement: Requirement, labels: Record<string, string>): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  const value = labels[requirement.key];
  switch (requirement.op) {
    case "exists":
      return present;
    case "absent":
      return !present;
    case "in":
      return present && requirement.values.has(value!);
    case "notin":
      // As in Kubernetes: an object without the label is "not in" every set.
      return !present || !requirement.values.has(value!);
    case "gt":
    case "lt": {
      if (!present || !/^-?\d+$/.test(value!)) return false;
      const number = Number(value);
      return requirement.op === "gt" ? number > requirement.limit : number < requirement.limit;
    }
  }
}

const KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

class LabelSelectorParser {
  private position = 0;

  constructor(private readonly text: string) {}

  parse(): Requirement[] {
    const requirements: Requirement[] = [];
    this.skipSpaces();
    if (this.atEnd()) return requirements;
    for (;;) {
      requirements.push(this.requirement());
      this.skipSpaces();
      if (this.atEnd()) return requirements;
      this.expect(",");
    }
  }

  private requirement(): Requirement {
    this.skipSpaces();
    if (this.peek() === "!") {
      this.position++;
      return { key: this.key(), op: "absent" };
    }
    const key = this.key();
    this.skipSpaces();
    if (this.atEnd() || this.peek() === ",") return { key, op: "exists" };
    if (this.consume("==") || this.consume("=")) return { key, op: "in", values: new Set([this.value()]) };
    if (this.consume("!=")) return { key, op: "notin", values: new Set([this.value()]) };
    if (this.consume(">")) return { key, op: "gt", limit: this.integer() };
    if (this.consume("<")) return { key, op: "lt", limit: this.integer() };
    const word = this.word();
    if (word === "in" || word === "notin") return { key, op: word, values: this.valueSet() };
    throw this.error(`unexpected '${word || this.peek()}', expected an operator`);
  }

  private key(): string {
    this.skipSpaces();
    const key = this.word();
    if (!KEY.test(key)) throw this.error(`invalid label key '${key}'`);
    return key;
  }

  private value(): string {
    this.skipSpaces();
    const value = this.word();
    if (!VALUE.test(value)) throw this.error(`invalid label value '${value}'`);
    return value;
  }

  private integer(): number {
    this.skipSpaces();
    const word = this.word();
    if (!/^-?\d+$/.test(word)) throw this.error(`'${word}' is not an integer`);
    return Number(word);
  }

  private valueSet(): Set<string> {
    this.skipSpaces();
    this.expect("(");
    const values = new Set<string>();
    for (;;) {
      values.add(this.value());
      this.skipSpaces();
      if (this.consume(")")) return values;
      this.expect(",");
    }
  }

  /** A run of characters that cannot be operators, separators or parentheses. */
  private word(): string {
    const start = this.position;
    while (!this.atEnd() && !/[\s,()=!<>]/.test(this.peek())) this.position++;
    return this.text.slice(start, this.position);
  }

  private skipSpaces() {
    while (!this.atEnd() && /\s/.test(this.peek())) this.position++;
  }

  private consume(token: string): boolean {
    if (!this.text.startsWith(token, this.position)) return false;
    this.position += token.length;
    return true;
  }

  private expect(token: string) {
    if (!this.consume(token)) throw this.error(`expected '${token}'`);
  }

  private peek = () => this.text.charAt(this.position);
  private atEnd = () => this.position >= this.text.length;

  private error(why: string) {
    return badRequest(`unable to parse requirement: ${why} at position ${this.position} of labelSelector "${this.text}"`);
  }
}

/**
 * A field selector (`metadata.name=x,status.phase!=Running`): only equality and inequality, on
 * the fields that `supportedFields` names, each read from the object by `readField`.
 */
export type FieldSelector = (object: unknown) => boolean;

export function parseFieldSelector(
  text: string | null | undefined,
  supportedFields: readonly string[],
): FieldSelector {
  const requirements = (text ?? "")
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
    .map((part) => {
      const match = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
      if (!match) throw badRequest(`invalid field selector: '${part}'`);
      const [, field, operator, value] = match as unknown as [string, string, string, string];
      if (!supportedFields.includes(field)) throw badRequest(`field label not supported: ${field}`);
      return { field, equal: operator !== "!=", value };
    });
  return (object) =>
    requirements.every(({ field, equal, value }) => (readField(object, field) === value) === equal);
}

/** The value of a dotted path as a string, "" when missing (as Kubernetes compares it). */
function readField(object: unknown, path: string): string {
  let current: unknown = object;
  for (const step of path.split(".")) {
    if (current === null || typeof current !== "object") return "";
    current = (current as Record<string, unknown>)[step];
  }
  return current === undefined || current === null ? "" : String(current);
}
