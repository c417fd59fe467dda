import { float32ToHalf } from '../loader/safetensors.js';
import {
  type AttrValue,
  DataType,
  type DataTypeCode,
  type ModelDef,
  type NodeDef,
  type TensorDef,
  type ValueInfoDef,
} from './proto.js';

/**
 * Builds an ONNX graph op by op. Each `op()` call returns its output name(s); names are made
 * unique from a readable prefix, so a dumped graph reads like the model's module tree.
 */
export class GraphBuilder {
  readonly nodes: NodeDef[] = [];
  readonly initializers: TensorDef[] = [];
  readonly inputs: ValueInfoDef[] = [];
  readonly outputs: ValueInfoDef[] = [];
  private readonly used = new Map<string, number>();
  private readonly constants = new Map<string, string>();
  private scope = '';

  /** Runs `fn` with names prefixed by `scope` (e.g. 'layers.3'). */
  within<T>(scope: string, fn: () => T): T {
    const prev = this.scope;
    this.scope = prev ? `${prev}.${scope}` : scope;
    try {
      return fn();
    } finally {
      this.scope = prev;
    }
  }

  private fresh(base: string): string {
    const name = this.scope ? `${this.scope}.${base}` : base;
    const n = this.used.get(name) ?? 0;
    this.used.set(name, n + 1);
    return n === 0 ? name : `${name}_${n}`;
  }

  input(name: string, dataType: DataTypeCode, shape: (number | string)[]): string {
    this.inputs.push({ name, dataType, shape });
    return name;
  }

  output(value: string, name: string, dataType: DataTypeCode, shape: (number | string)[]): void {
    this.op('Identity', [value], {}, { name, outputName: name });
    this.outputs.push({ name, dataType, shape });
  }

  initializer(t: TensorDef): string {
    this.initializers.push(t);
    return t.name;
  }

  op(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { domain?: string; name?: string; outputName?: string } = {},
  ): string {
    return this.opN(op, inputs, 1, attrs, opts)[0];
  }

  opN(
    op: string,
    inputs: string[],
    numOutputs: number,
    attrs: Record<string, AttrValue> = {},
    opts: { domain?: string; name?: string; outputName?: string } = {},
  ): string[] {
    const name = this.fresh(opts.name ?? op);
    const outputs = Array.from({ length: numOutputs }, (_, i) =>
      i === 0 && opts.outputName ? opts.outputName : numOutputs === 1 ? name : `${name}:${i}`,
    );
    this.nodes.push({ op, inputs, outputs, name, attrs, domain: opts.domain });
    return outputs;
  }

  /** A shared int64 constant (shapes, axes, indices). */
  int64(values: number[], dims = [values.length]): string {
    return this.constant(DataType.INT64, values, dims, () => {
      const b = new BigInt64Array(values.map((v) => BigInt(v)));
      return new Uint8Array(b.buffer);
    });
  }

  int32(values: number[], dims = [values.length]): string {
    return this.constant(DataType.INT32, values, dims, () => new Uint8Array(Int32Array.from(values).buffer));
  }

  /**
   * An fp16 (or, with `dataType` BFLOAT16, bf16) initializer (not shared by value: these are
   * tables, not small constants).
   */
  float16(
    values: Float32Array,
    dims: number[],
    name: string,
    dataType: DataTypeCode = DataType.FLOAT16,
  ): string {
    const half = float32ToHalf(values, dataType === DataType.BFLOAT16 ? 'bfloat16' : 'float16');
    this.initializers.push({ name, dataType, dims, raw: new Uint8Array(half.buffer) });
    return name;
  }

  float32(values: number[] | Float32Array, dims = [values.length]): string {
    return this.constant(
      DataType.FLOAT,
      Array.from(values),
      dims,
      () => new Uint8Array(Float32Array.from(values).buffer),
    );
  }

  private constant(
    dataType: DataTypeCode,
    values: number[],
    dims: number[],
    bytes: () => Uint8Array,
  ): string {
    const key = `${dataType}:${dims.join('x')}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      this.constants.set(key, name);
      this.initializers.push({ name, dataType, dims, raw: bytes() });
    }
    return name;
  }

  reshape(x: string, shape: number[]): string {
    return this.op('Reshape', [x, this.int64(shape)], {}, { name: 'reshape' });
  }

  transpose(x: string, perm: number[]): string {
    return this.op('Transpose', [x], { perm }, { name: 'transpose' });
  }

  build(opsets: Record<string, number>, name?: string): ModelDef {
    return {
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
      opsets,
      name,
    };
  }
}
