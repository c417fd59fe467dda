import * as ort from 'onnxruntime-node';
import type { Executor, KvPoolShape, StepSequence } from '../../executor.js';
import type { Checkpoint } from '../../loader/checkpoint.js';
import type { DecoderSpec } from '../../model.js';
import { buildDecoder, DecoderIO } from '../../onnx/decoder-recipe.js';
import { cachedGraph } from '../../onnx/graph-cache.js';
import { gatherImageRows } from '../image-rows.js';
import { cpuSessionOptions, openSession } from '../ort-session.js';
import { gatheredAttention, GatheredAttentionIO as IO } from './gathered-attention.js';

const MASKED = -1e9;

export interface CpuExecutorOptions extends KvPoolShape {
  /** Intra-op threads for ORT (default: ORT's choice). */
  numThreads?: number;
  /** ORT session options laid over the defaults (`cpuSessionOptions`). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** The CPU backend's decoder: the shared recipe in fp32 with gathered attention. */
const CPU_RECIPE = {
  attention: gatheredAttention,
  dtype: 'float32',
  linear: 'gemm',
  fuseProjections: false,
  fuseNorms: false,
  argmax: false,
} as const;

/**
 * The CPU execution provider in fp32. The KV pool is one Float32Array per layer for K and one for
 * V, laid out [numBlocks · blockSize, kvHeads · headDim]: slot = block · blockSize + offset. Each
 * step gathers the batch's cached KV from the pool, runs the decoder graph once over the packed
 * tokens, and scatters the new tokens' K/V back to their slots. A cached position whose slot
 * another sequence of the same step computes (a block shared within the step) is read from that
 * sequence's new K/V in the graph, so it is written before it is read.
 */
export class CpuExecutor implements Executor {
  readonly device = 'cpu';
  readonly vocabSize: number;
  readonly kvBytesPerToken: number;
  readonly pool: KvPoolShape;
  private readonly rowSize: number;
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly spec: DecoderSpec,
    options: CpuExecutorOptions,
  ) {
    this.vocabSize = spec.vocabSize;
    this.rowSize = spec.numKvHeads * spec.headDim;
    this.kvBytesPerToken = 2 * spec.numLayers * this.rowSize * Float32Array.BYTES_PER_ELEMENT;
    this.pool = { numBlocks: options.numBlocks, blockSize: options.blockSize };
    const slots = options.numBlocks * options.blockSize;
    this.keys = Array.from({ length: spec.numLayers }, () => new Float32Array(slots * this.rowSize));
    this.values = Array.from({ length: spec.numLayers }, () => new Float32Array(slots * this.rowSize));
  }

  static async create(
    ckpt: Checkpoint,
    spec: DecoderSpec,
    options: CpuExecutorOptions,
  ): Promise<CpuExecutor> {
    const graph = cachedGraph(ckpt, 'decoder', { spec, ep: 'cpu', recipe: 'gathered' }, (g, w) =>
      buildDecoder(g, spec, w, CPU_RECIPE),
    );
    const session = await openSession(graph, `decoder (${ckpt.dir})`, 'cpu', {
      ...cpuSessionOptions(options.numThreads),
      ...options.sessionOptions,
    });
    return new CpuExecutor(session, spec, options);
  }

  async run(batch: readonly StepSequence[]): Promise<Float32Array> {
    const { blockSize } = this.pool;
    const row = this.rowSize;
    let T = 0;
    let P = 0;
    let S = 0;
    const members: Member[] = batch.map((s, index) => {
      const m = { s, index, token: T, past: P };
      T += s.tokenIds.length;
      P += s.start;
      if (s.allLogits) S += s.tokenIds.length;
      else if (s.sample) S++;
      return m;
    });
    const inputIds = new Int32Array(T);
    const positions = new Int32Array(T);
    const newSlots = new Int32Array(T);
    const pastSlots = new Int32Array(P);
    const sampleIndex = new Int32Array(S);
    let sampled = 0;
    for (const { s, token, past } of members) {
      for (let j = 0; j < s.start; j++) pastSlots[past + j] = slotOf(s.blockTable, j, blockSize);
      for (let i = 0; i < s.tokenIds.length; i++) {
        inputIds[token + i] = s.tokenIds[i];
        positions[token + i] = s.start + i;
        newSlots[token + i] = slotOf(s.blockTable, s.start + i, blockSize);
      }
      if (s.allLogits) for (let i = 0; i < s.tokenIds.length; i++) sampleIndex[sampled++] = token + i;
      else if (s.sample) sampleIndex[sampled++] = token + s.tokenIds.length - 1;
    }
    const keyRows = keyRowsOf(members, pastSlots, newSlots, P);
    // Decodes (one new token) and prefill chunks attend in separate padded groups.
    const outIndex = new Int32Array(T);
    const window = this.spec.slidingWindow;
    const decodes = members.filter((m) => m.s.tokenIds.length === 1);
    const decode = attentionGroup(decodes, keyRows, P, outIndex, 0, window);
    const prefills = members.filter((m) => m.s.tokenIds.length !== 1);
    const prefill = attentionGroup(prefills, keyRows, P, outIndex, decode.numRows, window);

    const feeds: Record<string, ort.Tensor> = {
      [DecoderIO.inputIds]: new ort.Tensor('int32', inputIds, [T]),
      [IO.positionIds]: new ort.Tensor('int32', positions, [T]),
      [IO.outIndex]: new ort.Tensor('int32', outIndex, [T]),
      [DecoderIO.sampleIndex]: new ort.Tensor('int32', sampleIndex, [S]),
    };
    if (this.spec.imageEmbeds) Object.assign(feeds, this.imageFeeds(batch, T));
    [decode, prefill].forEach((grp, i) => {
      feeds[IO.kvIndex(i)] = new ort.Tensor('int32', grp.kvIndex, [grp.kvIndex.length]);
      feeds[IO.qIndex(i)] = new ort.Tensor('int32', grp.qIndex, [grp.qIndex.length]);
      feeds[IO.attnBias(i)] = new ort.Tensor('float32', grp.bias, [grp.B, 1, 1, grp.Lq, grp.Lk]);
    });
    for (let l = 0; l < this.spec.numLayers; l++) {
      feeds[IO.pastKey(l)] = new ort.Tensor('float32', gatherRows(this.keys[l], pastSlots, row), [P, row]);
      feeds[IO.pastValue(l)] = new ort.Tensor('float32', gatherRows(this.values[l], pastSlots, row), [
        P,
        row,
      ]);
    }
    const out = await this.session.run(feeds);
    for (let l = 0; l < this.spec.numLayers; l++) {
      scatterRows(this.keys[l], newSlots, out[IO.presentKey(l)].data as Float32Array, row);
      scatterRows(this.values[l], newSlots, out[IO.presentValue(l)].data as Float32Array, row);
    }
    for (const tensor of Object.values(out)) if (tensor !== out[DecoderIO.logits]) tensor.dispose();
    return out[DecoderIO.logits].data as Float32Array;
  }

  /** `image_embeds` rows for the image positions among this step's tokens, and each token's row. */
  private imageFeeds(batch: readonly StepSequence[], T: number): Record<string, ort.Tensor> {
    const { data, numRows, embedIndex } = gatherImageRows(batch, this.spec.hiddenSize, T);
    return {
      [DecoderIO.imageEmbeds]: new ort.Tensor('float32', data, [numRows, this.spec.hiddenSize]),
      [DecoderIO.embedIndex]: new ort.Tensor('int32', embedIndex, [T]),
    };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

interface Member {
  s: StepSequence;
  /** Position in the batch. */
  index: number;
  /** Row of the sequence's first new token in the packed batch. */
  token: number;
  /** Row of its first cached token in the gathered past. */
  past: number;
}

interface AttentionGroup {
  B: number;
  Lq: number;
  Lk: number;
  kvIndex: Int32Array;
  qIndex: Int32Array;
  bias: Float32Array;
  numRows: number;
}

/**
 * Per sequence, the row of concat(past, new) holding each cached position's K/V: its gathered
 * past row, or — when another sequence of this step writes that slot — that token's new row.
 */
function keyRowsOf(members: Member[], pastSlots: Int32Array, newSlots: Int32Array, P: number): Int32Array[] {
  let written: Map<number, number> | undefined;
  const rows = members.map(({ s, past }) => {
    const r = new Int32Array(s.start);
    for (let j = 0; j < s.start; j++) r[j] = past + j;
    return r;
  });
  members.forEach(({ s, past }, m) => {
    for (let j = 0; j < s.start; j++) {
      if (!written) {
        written = new Map();
        for (let t = 0; t < newSlots.length; t++) written.set(newSlots[t], P + t);
      }
      const row = written.get(pastSlots[past + j]);
      if (row !== undefined) rows[m][j] = row;
    }
  });
  return rows;
}

/**
 * The padded layout of one attention group; fills `outIndex` for its tokens, whose padded rows
 * start at `rowBase`. A query at position p sees keys p - window + 1 … p (all keys up to p without
 * a window). An empty group becomes one fully masked dummy sequence.
 */
function attentionGroup(
  members: Member[],
  keyRows: Int32Array[],
  P: number,
  outIndex: Int32Array,
  rowBase: number,
  window: number | undefined,
): AttentionGroup {
  const B = Math.max(1, members.length);
  let Lq = 1;
  let Lk = 1;
  for (const { s } of members) {
    Lq = Math.max(Lq, s.tokenIds.length);
    Lk = Math.max(Lk, s.start + s.tokenIds.length);
  }
  const kvIndex = new Int32Array(B * Lk);
  const qIndex = new Int32Array(B * Lq);
  const bias = new Float32Array(B * Lq * Lk).fill(MASKED);
  members.forEach(({ s, token, index }, b) => {
    kvIndex.set(keyRows[index], b * Lk);
    for (let i = 0; i < s.tokenIds.length; i++) {
      const pos = s.start + i;
      kvIndex[b * Lk + pos] = P + token + i;
      qIndex[b * Lq + i] = token + i;
      outIndex[token + i] = rowBase + b * Lq + i;
      const first = window ? Math.max(0, pos - window + 1) : 0;
      bias.fill(0, (b * Lq + i) * Lk + first, (b * Lq + i) * Lk + pos + 1);
    }
  });
  return { B, Lq, Lk, kvIndex, qIndex, bias, numRows: B * Lq };
}

function slotOf(table: readonly number[], pos: number, blockSize: number): number {
  const block = table[Math.floor(pos / blockSize)];
  if (block === undefined) throw new Error(`block table too short for position ${pos}`);
  return block * blockSize + (pos % blockSize);
}

/** Copies pool rows at `slots` into a dense array, one run of consecutive slots at a time. */
function gatherRows(pool: Float32Array, slots: Int32Array, row: number): Float32Array {
  const out = new Float32Array(slots.length * row);
  for (let i = 0; i < slots.length; ) {
    let j = i + 1;
    while (j < slots.length && slots[j] === slots[j - 1] + 1) j++;
    out.set(pool.subarray(slots[i] * row, (slots[j - 1] + 1) * row), i * row);
    i = j;
  }
  return out;
}

function scatterRows(pool: Float32Array, slots: Int32Array, data: Float32Array, row: number): void {
  for (let i = 0; i < slots.length; ) {
    let j = i + 1;
    while (j < slots.length && slots[j] === slots[j - 1] + 1) j++;
    pool.set(data.subarray(i * row, j * row), slots[i] * row);
    i = j;
  }
}
