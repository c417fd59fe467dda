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
}
