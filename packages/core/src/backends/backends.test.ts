import { describe, expect, it } from 'vitest';
import { backendRegistry, createContainer } from '../container.js';
import { deviceMemoryBytes } from '../engine/memory-fraction.js';
import { Checkpoint } from '../loader/checkpoint.js';
import { llamaFamilyDecoder } from '../models/llama-family.js';
import { fixture, fixtureTitle } from '../testing/fixtures.js';
import { cpuBackend } from './cpu/cpu-backend.js';
import { cudaBackend } from './cuda/cuda-backend.js';
import { webgpuBackend } from './webgpu/webgpu-backend.js';

describe('the backend registry', () => {
  it('holds the backends core ships, and a miss lists them', () => {
    const c = createContainer();
    expect(backendRegistry(c).names()).toEqual(['cpu', 'cuda', 'webgpu']);
    expect(() => backendRegistry(c).get('tpu')).toThrow("unknown backend 'tpu'; known: cpu, cuda, webgpu");
  });

  it('lists what each backend runs, the default dtype first', () => {
    const c = createContainer();
    expect(backendRegistry(c).get('cpu')).toMatchObject({ dtypes: ['float32'], quantizations: ['none'] });
    expect(backendRegistry(c).get('webgpu')).toMatchObject({
      dtypes: ['float16'],
      quantizations: ['none', 'int4'],
    });
  });

  const fx = fixture('llama3-tiny');
  it.skipIf(fx.missing)(
    fixtureTitle(fx, 'cpu refuses memoryUtilization; webgpu needs the GPU memory size for it'),
    async () => {
      const ckpt = Checkpoint.open(fx.dir);
      const model = { architecture: ckpt.architecture, decoder: llamaFamilyDecoder(ckpt.textConfig) };
      const options = {
        blockSize: 16,
        maxModelLen: 64,
        quantization: 'none' as const,
        memoryUtilization: 0.9,
      };
      await expect(cpuBackend.createExecutor(ckpt, model, { ...options, dtype: 'float32' })).rejects.toThrow(
        'a GPU memory fraction needs a device pool, and the cpu backend has none; size the KV cache with --kv-cache-tokens N',
      );
      // Where nvidia-smi is missing the size is unknown, and webgpu says so (on a GPU host it sizes the pool).
      if (deviceMemoryBytes() === undefined) {
        await expect(
          webgpuBackend.createExecutor(ckpt, model, { ...options, dtype: 'float16' }),
        ).rejects.toThrow(
          "the GPU's memory size is unknown (no nvidia-smi); size the KV cache with --kv-cache-tokens N",
        );
      }
    },
  );

  it.skipIf(fx.missing)(fixtureTitle(fx, 'cpu refuses settings instead of dropping them'), async () => {
    const ckpt = Checkpoint.open(fx.dir);
    const model = { architecture: ckpt.architecture, decoder: llamaFamilyDecoder(ckpt.textConfig) };
    const options = { blockSize: 16, maxModelLen: 64, quantization: 'none' as const, dtype: 'float32' };
    await expect(
      cpuBackend.createExecutor(ckpt, model, { ...options, settings: { cudaLibDir: '/x' } }),
    ).rejects.toThrow('the cpu backend takes no settings; got cudaLibDir (settings are for webgpu and cuda)');
  });

  it.skipIf(fx.missing)(fixtureTitle(fx, 'an unknown webgpu setting names the known ones'), async () => {
    const ckpt = Checkpoint.open(fx.dir);
    const model = { architecture: ckpt.architecture, decoder: llamaFamilyDecoder(ckpt.textConfig) };
    const options = { blockSize: 16, maxModelLen: 64, dtype: 'float16', quantization: 'none' as const };
    await expect(
      webgpuBackend.createExecutor(ckpt, model, { ...options, settings: { fuse: true } }),
    ).rejects.toThrow("unknown webgpu setting 'fuse'; known: attentionMetadata, validationMode");
  });
});

describe('PagedAttention backends refuse what the op does not run right', () => {
  const fx = fixture('llama3-tiny');
  const options = { blockSize: 256, maxModelLen: 64, quantization: 'none' as const, dtype: 'float16' };
  it.skipIf(fx.missing)(fixtureTitle(fx, 'a head dimension that is not a multiple of 8'), async () => {
    const ckpt = Checkpoint.open(fx.dir);
    const decoder = { ...llamaFamilyDecoder(ckpt.textConfig), headDim: 36 };
    const model = { architecture: ckpt.architecture, decoder };
    for (const backend of [webgpuBackend, cudaBackend]) {
      await expect(backend.createExecutor(ckpt, model, options)).rejects.toThrow(
        `the ${backend.name} backend's PagedAttention needs a head dimension that is a multiple of 8; this model's is 36: use --device cpu`,
      );
    }
  });

  it.skipIf(fx.missing)(fixtureTitle(fx, 'a sliding window'), async () => {
    const ckpt = Checkpoint.open(fx.dir);
    const decoder = { ...llamaFamilyDecoder(ckpt.textConfig), slidingWindow: 8 };
    const model = { architecture: ckpt.architecture, decoder };
    for (const backend of [webgpuBackend, cudaBackend]) {
      await expect(backend.createExecutor(ckpt, model, options)).rejects.toThrow(
        /sliding-window attention \(sliding_window 8\) does not match transformers .* use --device cpu/,
      );
    }
  });
});
