import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { ORT_API_SLOTS, ORT_API_VERSION, type OrtApiName } from './ort-api-slots.js';

/** An opaque native pointer as koffi hands it out. */
export type Ptr = unknown;

/** An ORT call failed: `message` is ORT's own, `code` its OrtErrorCode. */
export class OrtError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = 'OrtError';
  }
}

/** ONNXTensorElementDataType values used here. */
export const TensorType = {
  float: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  float16: 10,
  bfloat16: 16,
} as const;
export type TensorTypeName = keyof typeof TensorType;

/** Bytes per element of each TensorType. */
export const TENSOR_TYPE_BYTES: Record<TensorTypeName, number> = {
  float: 4,
  uint8: 1,
  int32: 4,
  int64: 8,
  float16: 2,
  bfloat16: 2,
};

export const GraphOptimization = { disabled: 0, basic: 1, extended: 2, all: 99 } as const;

/**
 * The C prototypes of the OrtApi slots this binding calls (opaque handles as `void *`). Only these
 * are decoded; the slot index of each comes from the generated `ORT_API_SLOTS`.
 */
const PROTOTYPES = {
  GetErrorCode: 'int f(void *status)',
  GetErrorMessage: 'const char *f(void *status)',
  ReleaseStatus: 'void f(void *status)',
  CreateEnv: 'void *f(int level, const char *logid, _Out_ void **out)',
  ReleaseEnv: 'void f(void *env)',
  CreateSessionOptions: 'void *f(_Out_ void **out)',
  ReleaseSessionOptions: 'void f(void *so)',
  SetSessionGraphOptimizationLevel: 'void *f(void *so, int level)',
  SetIntraOpNumThreads: 'void *f(void *so, int n)',
  EnableProfiling: 'void *f(void *so, const char *prefix)',
  SessionEndProfiling: 'void *f(void *session, void *allocator, _Out_ void **out)',
  GetAllocatorWithDefaultOptions: 'void *f(_Out_ void **out)',
  AllocatorFree: 'void *f(void *allocator, void *p)',
  AddSessionConfigEntry: 'void *f(void *so, const char *key, const char *value)',
  CreateSessionFromArray: 'void *f(void *env, const void *data, size_t len, void *so, _Out_ void **out)',
  ReleaseSession: 'void f(void *session)',
  SessionGetInputCount: 'void *f(void *session, _Out_ size_t *out)',
  SessionGetOutputCount: 'void *f(void *session, _Out_ size_t *out)',
  CreateRunOptions: 'void *f(_Out_ void **out)',
  AddRunConfigEntry: 'void *f(void *ro, const char *key, const char *value)',
  ReleaseRunOptions: 'void f(void *ro)',
  CreateCpuMemoryInfo: 'void *f(int allocatorType, int memType, _Out_ void **out)',
  ReleaseMemoryInfo: 'void f(void *info)',
  CreateTensorWithDataAsOrtValue:
    'void *f(void *info, void *data, size_t len, const int64_t *shape, size_t rank, int type, _Out_ void **out)',
  GetTensorMutableData: 'void *f(void *value, _Out_ void **out)',
  ReleaseValue: 'void f(void *value)',
  CreateIoBinding: 'void *f(void *session, _Out_ void **out)',
  ReleaseIoBinding: 'void f(void *binding)',
  BindInput: 'void *f(void *binding, const char *name, void *value)',
  BindOutput: 'void *f(void *binding, const char *name, void *value)',
  ClearBoundInputs: 'void f(void *binding)',
  ClearBoundOutputs: 'void f(void *binding)',
  RunWithBinding: 'void *f(void *session, void *ro, void *binding)',
  Run: 'void *f(void *session, void *ro, const char **inNames, void **inputs, size_t nIn, const char **outNames, size_t nOut, _Inout_ void **outputs)',
  RegisterExecutionProviderLibrary: 'void *f(void *env, const char *name, const char *path)',
  UnregisterExecutionProviderLibrary: 'void *f(void *env, const char *name)',
  GetEpDevices: 'void *f(void *env, _Out_ void **devices, _Out_ size_t *count)',
  EpDevice_EpName: 'const char *f(void *device)',
  EpDevice_MemoryInfo: 'void *f(void *device, int memType)',
  SessionOptionsAppendExecutionProvider_V2:
    'void *f(void *so, void *env, void **devices, size_t n, const char **keys, const char **values, size_t count)',
} as const satisfies Partial<Record<OrtApiName, string>>;

type Fn = (...args: unknown[]) => unknown;
type Api = { -readonly [K in keyof typeof PROTOTYPES]: Fn };

const loaded = new Map<string, Api>();
/** koffi's prototype types are process-wide (named), so they are declared once. */
let protoTypes: { getApi: TypeObject; slots: Record<string, TypeObject> } | undefined;
function prototypes(): NonNullable<typeof protoTypes> {
  protoTypes ??= {
    getApi: koffi.proto('void *OrtGetApi(uint32_t v)'),
    slots: Object.fromEntries(
      Object.entries(PROTOTYPES).map(([name, proto]) => [
        name,
        koffi.proto(proto.replace(/\bf\(/, `Ort_${name}(`)),
      ]),
    ),
  };
  return protoTypes;
}

/**
 * Loads an onnxruntime shared library and decodes the OrtApi slots this binding uses
 * (`GetApi(ORT_API_VERSION)`: a newer library serves an older API version unchanged).
 */
function loadApi(libraryPath: string): Api {
  const hit = loaded.get(libraryPath);
  if (hit) return hit;
  let lib: LibraryHandle;
  try {
    lib = koffi.load(libraryPath);
  } catch (e) {
    throw new OrtError(`cannot load onnxruntime from ${libraryPath}: ${(e as Error).message}`, -1);
  }
  const getApiBase = lib.func('void *OrtGetApiBase()');
  const base = getApiBase();
  const types = prototypes();
  const getApi = koffi.decode(koffi.decode(base, 0, 'void *'), types.getApi) as Fn;
  const table = getApi(ORT_API_VERSION);
  if (!table) throw new OrtError(`${libraryPath} does not serve ORT API version ${ORT_API_VERSION}`, -1);
  const api = {} as Api;
  for (const name of Object.keys(PROTOTYPES)) {
    const slot = ORT_API_SLOTS[name as OrtApiName];
    const fnPtr = koffi.decode(table, slot * 8, 'void *');
    api[name as keyof Api] = koffi.decode(fnPtr, types.slots[name]) as Fn;
  }
  loaded.set(libraryPath, api);
  return api;
}

/**
 * A typed binding of the ORT C API over one library, and the owner of every native resource
 * created through it: `close()` releases them all (in reverse creation order); `live` counts the
 * ones not yet released. Every OrtStatus becomes a thrown `OrtError` carrying ORT's message.
 * Not thread-safe; one instance per executor.
 */
export class OrtRuntime {
  private readonly api: Api;
  /** Live native resources: handle → its release call. */
  private readonly resources = new Map<Ptr, () => void>();
  readonly env: Ptr;
  private closed = false;

  constructor(
    readonly libraryPath: string,
    { logLevel = 3, logId = 'switchyard' } = {},
  ) {
    this.api = loadApi(libraryPath);
    this.env = this.create('Env', (out) => this.api.CreateEnv(logLevel, logId, out));
  }

  /** Native resources created through this runtime and not yet released. */
  get live(): number {
    return this.resources.size;
  }

  private check(status: unknown): void {
    if (!status) return;
    const code = this.api.GetErrorCode(status) as number;
    const message = this.api.GetErrorMessage(status) as string;
    this.api.ReleaseStatus(status);
    throw new OrtError(message, code);
  }

  /** Calls a Create* whose last parameter is the out handle, and tracks its release. */
  private create(kind: string, call: (out: Ptr[]) => unknown): Ptr {
    if (this.closed) throw new OrtError('the ORT runtime is closed', -1);
    const out: Ptr[] = [null];
    this.check(call(out));
    const handle = out[0];
    const release = this.api[`Release${kind}` as keyof Api];
    this.resources.set(handle, () => release(handle));
    return handle;
  }

  /** Releases one resource created here (no-op when already released). */
  release(handle: Ptr): void {
    const release = this.resources.get(handle);
    if (!release) return;
    this.resources.delete(handle);
    release();
  }

  // --- session options ---

  sessionOptions({
    optimization = 'all' as keyof typeof GraphOptimization,
    intraOpThreads = 0,
    config = {} as Record<string, string>,
    profilePrefix = '',
  } = {}): Ptr {
    const so = this.create('SessionOptions', (out) => this.api.CreateSessionOptions(out));
    if (profilePrefix) this.check(this.api.EnableProfiling(so, profilePrefix));
    this.check(this.api.SetSessionGraphOptimizationLevel(so, GraphOptimization[optimization]));
    if (intraOpThreads > 0) this.check(this.api.SetIntraOpNumThreads(so, intraOpThreads));
    for (const [k, v] of Object.entries(config)) this.check(this.api.AddSessionConfigEntry(so, k, v));
    return so;
  }

  /**
   * Registers a plugin execution-provider library (e.g. libonnxruntime_providers_cuda.so). With
   * `keep`, `close()` leaves it registered (ORT's env is process-wide: other runtimes may use it).
   */
  registerProviderLibrary(name: string, path: string, { keep = false } = {}): void {
    this.check(this.api.RegisterExecutionProviderLibrary(this.env, name, path));
    if (keep) return;
    this.resources.set(`ep-library:${name}`, () => {
      const status = this.api.UnregisterExecutionProviderLibrary(this.env, name);
      if (status) this.api.ReleaseStatus(status);
    });
  }

  /** The devices the registered providers offer: [{ epName, handle }]. Owned by the env. */
  epDevices(): { epName: string; handle: Ptr }[] {
    const devices: Ptr[] = [null];
    const count: number[] = [0];
    this.check(this.api.GetEpDevices(this.env, devices, count));
    if (!count[0]) return [];
    const handles = koffi.decode(devices[0], 'void *', Number(count[0])) as Ptr[];
    return handles.map((handle) => ({ epName: this.api.EpDevice_EpName(handle) as string, handle }));
  }

  /** Appends the provider of `device` to the session options, with its provider options. */
  appendProvider(so: Ptr, device: Ptr, options: Record<string, string> = {}): void {
    const keys = Object.keys(options);
    this.check(
      this.api.SessionOptionsAppendExecutionProvider_V2(
        so,
        this.env,
        [device],
        1,
        keys,
        keys.map((k) => options[k]),
        keys.length,
      ),
    );
  }

  /** The OrtMemoryInfo of a device's default memory (owned by the device; not released here). */
  deviceMemoryInfo(device: Ptr): Ptr {
    const info = this.api.EpDevice_MemoryInfo(device, 0);
    if (!info) throw new OrtError('the execution-provider device has no default memory info', -1);
    return info;
  }

  cpuMemoryInfo(): Ptr {
    // OrtDeviceAllocator (0), OrtMemTypeDefault (0).
    return this.create('MemoryInfo', (out) => this.api.CreateCpuMemoryInfo(0, 0, out));
  }

  // --- sessions ---

  /** A session from an in-memory ONNX model (external data resolved by the options' folder entry). */
  session(model: Uint8Array, so: Ptr): Ptr {
    return this.create('Session', (out) =>
      this.api.CreateSessionFromArray(this.env, model, model.length, so, out),
    );
  }

  /** Ends a profiled session's profile; returns the JSON file ORT wrote. */
  endProfiling(session: Ptr): string {
    const allocator: Ptr[] = [null];
    this.check(this.api.GetAllocatorWithDefaultOptions(allocator));
    const out: Ptr[] = [null];
    this.check(this.api.SessionEndProfiling(session, allocator[0], out));
    const path = koffi.decode(out[0], 'char', -1) as string;
    this.check(this.api.AllocatorFree(allocator[0], out[0]));
    return path;
  }

  sessionIoCount(session: Ptr): { inputs: number; outputs: number } {
    const i: number[] = [0];
    const o: number[] = [0];
    this.check(this.api.SessionGetInputCount(session, i));
    this.check(this.api.SessionGetOutputCount(session, o));
    return { inputs: Number(i[0]), outputs: Number(o[0]) };
  }

  runOptions(config: Record<string, string> = {}): Ptr {
    const ro = this.create('RunOptions', (out) => this.api.CreateRunOptions(out));
    for (const [k, v] of Object.entries(config)) this.check(this.api.AddRunConfigEntry(ro, k, v));
    return ro;
  }

  setRunConfig(ro: Ptr, key: string, value: string): void {
    this.check(this.api.AddRunConfigEntry(ro, key, value));
  }

  // --- tensors ---

  /**
   * An OrtValue over memory at a fixed address (host or device, per `memoryInfo`); the memory must
   * outlive the value. `address` is a koffi pointer or a bigint address.
   */
  tensorAt(memoryInfo: Ptr, address: Ptr | bigint, type: TensorTypeName, shape: readonly number[]): Ptr {
    const count = shape.reduce((a, b) => a * b, 1);
    const data = typeof address === 'bigint' ? koffi.as(address, 'void *') : address;
    const dims = BigInt64Array.from(shape.map(BigInt));
    return this.create('Value', (out) =>
      this.api.CreateTensorWithDataAsOrtValue(
        memoryInfo,
        data,
        count * TENSOR_TYPE_BYTES[type],
        dims,
        shape.length,
        TensorType[type],
        out,
      ),
    );
  }

  /** The data pointer of a tensor OrtValue. */
  tensorData(value: Ptr): Ptr {
    const out: Ptr[] = [null];
    this.check(this.api.GetTensorMutableData(value, out));
    return out[0];
  }

  /** A plain Run with OrtValue inputs; returns the outputs (tracked, release them when done). */
  run(session: Ptr, ro: Ptr | null, inputs: Record<string, Ptr>, outputNames: string[]): Ptr[] {
    const names = Object.keys(inputs);
    const outputs: Ptr[] = outputNames.map(() => null);
    this.check(
      this.api.Run(
        session,
        ro,
        names,
        names.map((n) => inputs[n]),
        names.length,
        outputNames,
        outputNames.length,
        outputs,
      ),
    );
    for (const v of outputs) this.resources.set(v, () => this.api.ReleaseValue(v));
    return outputs;
  }

  // --- IO binding ---

  ioBinding(session: Ptr): Ptr {
    return this.create('IoBinding', (out) => this.api.CreateIoBinding(session, out));
  }

  bindInput(binding: Ptr, name: string, value: Ptr): void {
    this.check(this.api.BindInput(binding, name, value));
  }

  bindOutput(binding: Ptr, name: string, value: Ptr): void {
    this.check(this.api.BindOutput(binding, name, value));
  }

  clearOutputs(binding: Ptr): void {
    this.api.ClearBoundOutputs(binding);
  }

  clearBindings(binding: Ptr): void {
    this.api.ClearBoundInputs(binding);
    this.api.ClearBoundOutputs(binding);
  }

  runWithBinding(session: Ptr, ro: Ptr | null, binding: Ptr): void {
    this.check(this.api.RunWithBinding(session, ro, binding));
  }

  /** Releases every resource still live (newest first), then the env. Idempotent. */
  close(): void {
    if (this.closed) return;
    const all = [...this.resources.entries()].reverse();
    this.resources.clear();
    for (const [, release] of all) release();
    this.closed = true;
  }
}

/** Host memory at a fixed address (for OrtValues that must not move), freed by `free()`. */
export class HostBuffer {
  readonly ptr: Ptr;
  readonly bytes: ArrayBuffer;
  private freed = false;

  constructor(readonly byteLength: number) {
    this.ptr = koffi.alloc('uint8', Math.max(8, byteLength));
    this.bytes = koffi.view(this.ptr, Math.max(8, byteLength));
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    koffi.free(this.ptr);
  }
}
