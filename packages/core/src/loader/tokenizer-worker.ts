/** The thread of a `TokenizerThread`: the checkpoint's own tokenizer, encoding one text at a time. */
import { parentPort, workerData } from 'node:worker_threads';
import { Checkpoint } from './checkpoint.js';

const tokenizer = Checkpoint.open((workerData as { model: string }).model).tokenizer;

parentPort!.on('message', (job: { id: number; text: string; addSpecial: boolean }) => {
  try {
    const ids = Int32Array.from(tokenizer.encode(job.text, job.addSpecial));
    parentPort!.postMessage({ id: job.id, ids }, [ids.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
