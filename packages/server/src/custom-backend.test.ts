import { createContainer } from '@switchyard/core';
import { describe, expect, it } from 'vitest';
import { register as registerSequentialCpu } from '../../../docs/examples/sequential-cpu-backend.js';
import { DEMO_MODEL } from './cli.js';
import { createEngine, registerBuiltins } from './create-engine.js';

const PROMPTS = ['Which module defines quote?', 'What is paged attention?', 'What does json.dumps do?'];
const request = (p: string) => ({ messages: [{ role: 'user', content: p }], sampling: { maxTokens: 16 } });

describe('a backend registered from outside the packages (docs/examples)', () => {
  it("runs the demo model with the built-in cpu backend's ids, on its own pool", async () => {
    const cpu = await createEngine({ model: DEMO_MODEL });
    const expected = await cpu.generate(PROMPTS.map(request));
    await cpu.close();

    const container = registerBuiltins(createContainer());
    registerSequentialCpu(container);
    const engine = await createEngine({
      model: DEMO_MODEL,
      device: 'cpu-sequential',
      container,
      checkIntegrity: true,
    });
    try {
      expect(engine.info.device).toBe('cpu-sequential');
      // The backend sized the pool: its own default, not the cpu backend's byte budget.
      expect(engine.info.kvCacheTokens).toBe(4096);
      const results = await engine.generate(PROMPTS.map(request));
      results.forEach((r, i) => {
        expect(r.outputs[0].tokenIds).toEqual(expected[i].outputs[0].tokenIds);
      });
    } finally {
      await engine.close();
    }
  });

  it('is refused by name where it is not registered, and lists the known ones', async () => {
    await expect(createEngine({ model: DEMO_MODEL, device: 'cpu-sequential' })).rejects.toThrow(
      "device 'cpu-sequential' is not available; available: cpu, cuda, webgpu",
    );
  });
});
