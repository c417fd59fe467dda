import type { DataTypeCode } from './proto.js';

/** Resolves a checkpoint weight name to an initializer of the graph (adding it once). */
export type WeightRef = (name: string) => string;

/**
 * Initializers a graph computes from the weights at build time (packed or quantized forms),
 * written once into the graph cache beside it.
 */
export interface DerivedWeights {
  read(weight: string): Float32Array;
  add(def: { name: string; dataType: DataTypeCode; dims: number[] }, bytes: Uint8Array): string;
  /**
   * `com.microsoft.MatMulNBits` weights (int4, block 32, as `quantizeInt4` makes them) of
   * `weights` stacked by rows — N rows in all, K columns: `B` [N, K/32, 16] uint8 and `scales`
   * [N·K/32] fp16, named `${id}.B` and `${id}.scales`. The graph cache computes them after the
   * build on worker threads, in parallel; absent, the recipe quantizes through `read` and `add`.
   */
  int4?(weights: string[], N: number, K: number, id: string): { B: string; scales: string };
}
