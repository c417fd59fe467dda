/**
 * A thread of the `ImageWorkerPool`: decodes an image and runs the model's processor on it. It
 * rebuilds the model's `MultimodalSpec` from the checkpoint through the modules the pool names
 * (each exports `register(container)`, or `registerBuiltins(container)`), so the processor is the
 * very one the engine would run, not a copy.
 */
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { SwitchyardError } from '../errors.js';
import type { MultimodalSpec } from '../model.js';
import { describeInWorker } from '../worker-container.js';
import { decodeImage } from './decode.js';

interface Setup {
  model: string;
  modules: string[];
}

async function load({ model, modules }: Setup): Promise<MultimodalSpec> {
  const { checkpoint, spec } = await describeInWorker(model, modules);
  if (!spec.multimodal) throw new Error(`${checkpoint.architecture} takes no images`);
  return spec.multimodal;
}

// libvips' operation cache would keep recent decoded images alive; every image here is decoded once.
sharp.cache(false);
const ready = load(workerData as Setup);
ready.catch(() => {});

parentPort!.on('message', async (job: { id: number; bytes: Uint8Array; maxPixels: number }) => {
  try {
    const mm = await ready;
    const processed = mm.process(await decodeImage(job.bytes, { maxPixels: job.maxPixels }));
    parentPort!.postMessage({ id: job.id, processed }, [processed.pixelValues.buffer as ArrayBuffer]);
  } catch (e) {
    const err = e as Error;
    parentPort!.postMessage({
      id: job.id,
      error: {
        message: err.message,
        kind: e instanceof SwitchyardError ? e.kind : 'internal',
        param: e instanceof SwitchyardError ? e.param : undefined,
      },
    });
  }
});
