import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/** Every .ts file under `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The code of a file with its comments blanked out (line numbers kept). */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' ')).replace(/(^|\s)\/\/.*$/gm, '$1');
}

const FAMILY = /llava|internvl|clip|intern_?vit/i;

/**
 * The plugin boundary: model families live in `packages/models-*`. Core's code (comments aside)
 * names none of them, so a new family never needs a core edit. Biome's noRestrictedImports keeps
 * core from importing the packages; this keeps their names out.
 */
describe('core names no model family (the plugin boundary)', () => {
  it(`finds ${FAMILY} only in comments under packages/core/src`, () => {
    const root = join(import.meta.dirname, '..', '..', 'core', 'src');
    const hits: string[] = [];
    const files = sources(root);
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) {
      withoutComments(readFileSync(file, 'utf8'))
        .split('\n')
        .forEach((line, i) => {
          if (FAMILY.test(line)) hits.push(`${relative(root, file)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(hits).toEqual([]);
  });

  it('would see a family name in code', () => {
    expect(FAMILY.test(withoutComments("const kind = 'llava'; // a comment"))).toBe(true);
    expect(FAMILY.test(withoutComments('const kind = 1; // llava\n/* InternVL */'))).toBe(false);
  });
});
