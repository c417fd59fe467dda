// Vision-language fixtures through the engine on a GPU device (vision tower and decoder there),
// through our own preprocessing: prompt ids, and greedy ids against transformers' wherever the
// reference margins exceed 5e-2. All cases of a fixture are submitted at once (concurrent images).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine } from '@switchyard/server/engine';
import { idsAgree } from './parity-case.mjs';

export async function vlmParity(root, options) {
  const rows = [];
  for (const name of ['llava-tiny', 'internvl-tiny']) {
    const dir = join(root, name);
    const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
    const engine = await createEngine({ model: dir, maxModelLen: 512, kvCacheTokens: 4096, ...options });
    const results = await engine.generate(
      ref.chat.map((c) => ({
        messages: c.messages,
        images: (c.images ?? []).map((f) => new Uint8Array(readFileSync(join(root, 'images', f)))),
        sampling: { maxTokens: c.generated_ids.length, ignoreEos: true },
      })),
    );
    for (const [i, c] of ref.chat.entries()) {
      const r = results[i];
      rows.push({
        fixture: name,
        case: i,
        images: (c.images ?? []).length,
        prompt_ids_equal: JSON.stringify(r.promptTokenIds) === JSON.stringify(c.input_ids),
        ...idsAgree(r.outputs[0].tokenIds, c),
      });
    }
    await engine.close();
  }
  return rows;
}
