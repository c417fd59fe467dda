import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'vitest';
import { fixture } from '../testing/fixtures.js';
import { clipProcess, decodeImage, internvlProcess, llavaNextProcess } from './index.js';

it('scratch', async () => {
  for (const [name, fn] of [['llava-tiny', clipProcess], ['llava-next-tiny', llavaNextProcess], ['internvl-tiny', internvlProcess]] as const) {
    const fx = fixture(name);
    const ref = fx.reference();
    const procPath = join(fx.dir, 'processor_config.json');
    const pc = JSON.parse(readFileSync(procPath, 'utf8'));
    const cfg = pc.image_processor ?? JSON.parse(readFileSync(join(fx.dir, 'preprocessor_config.json'), 'utf8'));
    for (const c of ref.chat) {
      if (!c.pixel_values_file) continue;
      const img = await decodeImage(new Uint8Array(readFileSync(join(fx.dir, '..', 'images', c.images![0]))));
      const want = fx.logits(c.pixel_values_file);
      for (const kernel of ['pil', 'torch'] as const) {
        const out = fn(img, cfg, { kernel });
        let sum = 0; let max = 0; let nd = 0;
        for (let i = 0; i < want.length; i++) { const d = Math.abs(want[i] - out.pixelValues[i]); sum += d; max = Math.max(max, d); if (d > 1e-6) nd++; }
        console.log(name, c.images![0], kernel, JSON.stringify(out.shape), JSON.stringify(c.pixel_values_shape), 'mean', (sum / want.length).toExponential(3), 'max', max.toExponential(3), 'ndiff', nd, '/', want.length);
      }
    }
  }
});
