// Which op or binding crashes a tiny session on the CUDA provider (GPU machine).
//   OP=Conv|MatMul RO=1 node scripts/gpu/cuda-diag-ops.mjs

import { openCudaProvider } from '../../packages/core/dist/backends/cuda/cuda-provider.js';
import { HostBuffer } from '../../packages/core/dist/backends/cuda/ort-capi.js';
import { GraphBuilder } from '../../packages/core/dist/onnx/graph-builder.js';
import { DataType, encodeModel } from '../../packages/core/dist/onnx/proto.js';

const log = (m) => process.stderr.write(`${m}\n`);
const g = new GraphBuilder();
const x = g.input('x', DataType.FLOAT, [1, 3, 8, 8]);
const op = process.env.OP ?? 'MatMul';
const flat = g.reshape(x, [24, 8]);
const w84 = () => g.float32(new Float32Array(8 * 4).fill(0.1), [8, 4]);
let y;
let shape = [24, 4];
if (op === 'Conv') {
  const w = g.float32(new Float32Array(4 * 3 * 4 * 4).fill(0.1), [4, 3, 4, 4]);
  y = g.op('Conv', [x, w], { strides: [4, 4], kernel_shape: [4, 4] });
  shape = [1, 4, 2, 2];
} else if (op === 'Identity') {
  y = g.op('Identity', [g.op('MatMul', [flat, w84()])]);
} else if (op === 'Gelu') {
  y = g.op('Gelu', [g.op('MatMul', [flat, w84()])]);
} else if (op === 'LayerNorm') {
  y = g.op(
    'LayerNormalization',
    [g.op('MatMul', [flat, w84()]), g.float32([1, 1, 1, 1]), g.float32([0, 0, 0, 0])],
    { axis: -1 },
  );
} else if (op === 'Softmax') {
  y = g.op('Softmax', [g.op('MatMul', [flat, w84()])], { axis: -1 });
} else if (op === 'Gemm') {
  y = g.op('Gemm', [flat, g.float32(new Float32Array(4 * 8).fill(0.1), [4, 8]), g.float32([0, 0, 0, 0])], {
    transB: 1,
  });
} else if (op === 'Expand') {
  const cls = g.op('Expand', [g.float32([1, 2, 3, 4], [1, 4]), g.int64([24, 4])]);
  y = g.op('Add', [cls, g.op('MatMul', [flat, w84()])]);
} else {
  y = g.op('MatMul', [flat, w84()]);
}
g.output(y, 'y', DataType.FLOAT, shape);
const model = encodeModel(g.build({ '': Number(process.env.OPSET ?? 21) }, 'diag'));
const p = openCudaProvider();
const { ort } = p;
const so = ort.sessionOptions({});
ort.appendProvider(so, p.device, {});
const session = ort.session(model, so);
log('session ok');
const cpu = ort.cpuMemoryInfo();
const a = new HostBuffer(4 * 192);
const b = new HostBuffer(4 * 96);
new Float32Array(a.bytes, 0, 192).fill(1);
const binding = ort.ioBinding(session);
ort.bindInput(binding, 'x', ort.tensorAt(cpu, a.ptr, 'float', [1, 3, 8, 8]));
ort.bindOutput(binding, 'y', ort.tensorAt(cpu, b.ptr, 'float', shape));
log('bound');
ort.runWithBinding(session, process.env.RO === '1' ? ort.runOptions({}) : null, binding);
log(`ran: ${new Float32Array(b.bytes, 0, 4)}`);
p.close();
