import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** The repo root: the nearest folder above `from` holding turbo.json. */
export function repoRoot(from = process.cwd()): string {
  let dir = resolve(from);
  while (!existsSync(join(dir, 'turbo.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no turbo.json above ${from}`);
    dir = up;
  }
  return dir;
}

/** `../shared/fixtures` beside the checkout (or $SWITCHYARD_FIXTURES). */
export function fixturesRoot(): string {
  return process.env.SWITCHYARD_FIXTURES ?? join(repoRoot(), '..', 'shared', 'fixtures');
}

export interface Fixture {
  name: string;
  dir: string;
  /** Set when the folder is missing: tests skip with this message. */
  missing?: string;
  reference: () => FixtureReference;
  logits: (file: string) => Float32Array;
}

export interface FixtureCase {
  messages?: unknown[];
  prompt?: string;
  prompt_text?: string;
  prompt_ids?: number[];
  input_ids?: number[];
  generated_ids: number[];
  top10_step0: [number, number][];
  margins: number[];
  logits0_file?: string;
  images?: string[];
  pixel_values_shape?: number[];
  pixel_values_file?: string;
  image_sizes?: number[][];
}

export interface FixtureReference {
  chat: FixtureCase[];
  completion?: FixtureCase[];
  tokenize?: { text: string; ids: number[]; ids_with_special: number[]; decoded: string }[];
}

const warned = new Set<string>();

/** The fixture `name` in `root` (default: `fixturesRoot()`). */
export function fixture(name: string, root = fixturesRoot()): Fixture {
  const dir = join(root, name);
  const missing = existsSync(join(dir, 'reference.json')) ? undefined : `fixture folder ${dir} is missing`;
  if (missing && !warned.has(dir)) {
    warned.add(dir);
    console.warn(`[switchyard] skipping the ${name} parity tests: ${missing}`);
  }
  return {
    name,
    dir,
    missing,
    reference: () => JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')),
    logits: (file) => {
      const b = readFileSync(join(dir, file));
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    },
  };
}

/** A describe title that carries the skip reason, so a skipped run says what is missing. */
export function fixtureTitle(f: Fixture, title: string): string {
  return f.missing ? `${title} (skipped: ${f.missing})` : title;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
