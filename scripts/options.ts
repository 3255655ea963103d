// Numeric options of the benchmark scripts: `--name N`, `--name=N`, or an environment variable.

export function option(name: string, envName: string, fallback: number): number {
  const argv = process.argv.slice(2);
  let raw: string | undefined = process.env[envName];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) raw = argv[i + 1];
    else if (argv[i]!.startsWith(`--${name}=`)) raw = argv[i]!.slice(name.length + 3);
  }
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} / ${envName}: expected a number, got '${raw}'`);
  return value;
}
