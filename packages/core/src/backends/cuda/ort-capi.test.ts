import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../onnx/graph-builder.js';
import { DataType, encodeModel } from '../../onnx/proto.js';
import { ortNodeLibrary } from '../../testing/capi-tower.js';
import { HostBuffer, OrtError, OrtRuntime } from './ort-capi.js';

/**
 * The binding runs the CPU provider of onnxruntime-node's own core (ORT 1.30 serves API 29), so
 * resource handling and the IO-binding path are checked in CI without any CUDA package.
 */
const LIB = ortNodeLibrary() as string;

/** y = a + b * 2, and its row argmax (int64). */
function tinyModel(): Uint8Array {
  const g = new GraphBuilder();
  const a = g.input('a', DataType.FLOAT, ['N', 4]);
  const b = g.input('b', DataType.FLOAT, ['N', 4]);
  const y = g.op('Add', [a, g.op('Mul', [b, g.float32([2])])]);
  g.output(y, 'y', DataType.FLOAT, ['N', 4]);
  g.output(g.op('ArgMax', [y], { axis: -1, keepdims: 0 }), 'idx', DataType.INT64, ['N']);
  return encodeModel(g.build({ '': 21 }, 'tiny'));
}

describe.skipIf(process.platform !== 'linux' || process.arch !== 'x64')(
  'ORT C API binding (CPU provider)',
  () => {
    it('runs a graph through IO binding over fixed host addresses and releases every resource', () => {
      const rt = new OrtRuntime(LIB);
      expect(rt.live).toBe(1); // the env
      const so = rt.sessionOptions({ optimization: 'all', intraOpThreads: 1 });
      const session = rt.session(tinyModel(), so);
      expect(rt.sessionIoCount(session)).toEqual({ inputs: 2, outputs: 2 });
      const cpu = rt.cpuMemoryInfo();
      const bufs = [
        new HostBuffer(2 * 4 * 4),
        new HostBuffer(2 * 4 * 4),
        new HostBuffer(2 * 4 * 4),
        new HostBuffer(16),
      ];
      const [a, b, y, idx] = bufs;
      new Float32Array(a.bytes, 0, 8).set([1, 2, 3, 4, 5, 6, 7, 8]);
      new Float32Array(b.bytes, 0, 8).set([0, 0, 10, 0, -1, -1, -1, -9]);
      const binding = rt.ioBinding(session);
      rt.bindInput(binding, 'a', rt.tensorAt(cpu, a.ptr, 'float', [2, 4]));
      rt.bindInput(binding, 'b', rt.tensorAt(cpu, b.ptr, 'float', [2, 4]));
      rt.bindOutput(binding, 'y', rt.tensorAt(cpu, y.ptr, 'float', [2, 4]));
      rt.bindOutput(binding, 'idx', rt.tensorAt(cpu, idx.ptr, 'int64', [2]));
      const ro = rt.runOptions({ 'memory.enable_memory_arena_shrinkage': 'cpu:0' });
      rt.runWithBinding(session, ro, binding);
      expect([...new Float32Array(y.bytes, 0, 8)]).toEqual([1, 2, 23, 4, 3, 4, 5, -10]);
      expect([...new BigInt64Array(idx.bytes, 0, 2)]).toEqual([2n, 2n]);
      // The outputs were written in place: rewriting an input and running again updates them.
      new Float32Array(a.bytes, 0, 8)[0] = 100;
      rt.runWithBinding(session, ro, binding);
      expect(new Float32Array(y.bytes, 0, 1)[0]).toBe(100);
      expect(new BigInt64Array(idx.bytes, 0, 1)[0]).toBe(0n);
      // env, options, session, memory info, 4 values, binding, run options
      expect(rt.live).toBe(10);
      rt.clearBindings(binding);
      rt.close();
      expect(rt.live).toBe(0);
      rt.close(); // idempotent
      for (const buf of bufs) buf.free();
      expect(() => rt.runOptions()).toThrow(/closed/);
    });

    it('plain Run returns tracked outputs, released one by one', () => {
      const rt = new OrtRuntime(LIB);
      const session = rt.session(tinyModel(), rt.sessionOptions({ intraOpThreads: 1 }));
      const cpu = rt.cpuMemoryInfo();
      const a = new HostBuffer(16);
      const b = new HostBuffer(16);
      new Float32Array(a.bytes, 0, 4).set([1, 1, 1, 1]);
      new Float32Array(b.bytes, 0, 4).set([0, 3, 0, 0]);
      const before = rt.live;
      const [y] = rt.run(
        session,
        null,
        { a: rt.tensorAt(cpu, a.ptr, 'float', [1, 4]), b: rt.tensorAt(cpu, b.ptr, 'float', [1, 4]) },
        ['y'],
      );
      expect(rt.live).toBe(before + 3);
      expect(rt.tensorData(y)).toBeTruthy();
      rt.release(y);
      expect(rt.live).toBe(before + 2);
      rt.close();
      expect(rt.live).toBe(0);
      a.free();
      b.free();
    });

    it("writes ORT's profile of a session's runs", () => {
      const rt = new OrtRuntime(LIB);
      const dir = mkdtempSync(join(tmpdir(), 'ort-profile-'));
      try {
        const session = rt.session(tinyModel(), rt.sessionOptions({ profilePrefix: join(dir, 'p') }));
        const cpu = rt.cpuMemoryInfo();
        const a = new HostBuffer(16);
        rt.run(
          session,
          null,
          { a: rt.tensorAt(cpu, a.ptr, 'float', [1, 4]), b: rt.tensorAt(cpu, a.ptr, 'float', [1, 4]) },
          ['y'],
        );
        const file = rt.endProfiling(session);
        expect(file.startsWith(join(dir, 'p'))).toBe(true);
        const events = JSON.parse(readFileSync(file, 'utf8')) as {
          cat: string;
          args?: { op_name?: string };
        }[];
        expect(events.some((e) => e.cat === 'Node' && e.args?.op_name === 'ArgMax')).toBe(true);
        a.free();
      } finally {
        rt.close();
        rmSync(dir, { recursive: true, force: true });
      }
      expect(rt.live).toBe(0);
    });

    it("turns an OrtStatus into an OrtError with ORT's message", () => {
      const rt = new OrtRuntime(LIB);
      try {
        const so = rt.sessionOptions();
        expect(() => rt.session(new Uint8Array([1, 2, 3, 4]), so)).toThrow(OrtError);
        const session = rt.session(tinyModel(), so);
        const binding = rt.ioBinding(session);
        // Unbound inputs: ORT names what is missing.
        expect(() => rt.runWithBinding(session, null, binding)).toThrow(/input|a|b/i);
        expect(() => rt.registerProviderLibrary('Nope', '/nonexistent/libnope.so')).toThrow(OrtError);
        expect(() => rt.sessionOptions({ config: { 'session.bogus': 'x' } })).not.toThrow();
      } finally {
        rt.close();
      }
      expect(rt.live).toBe(0);
    });
  },
);
