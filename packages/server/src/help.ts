/** `switchyard <command> --help`: one text per command, kept in step with docs/CLI.md. */
export const ENGINE_HELP = `engine options (generate, bench, serve); the model may also come first, unflagged:
  --model DIR                  a Hugging Face checkpoint folder (also --model-path, --model_dir)
  --tokenizer DIR              use this folder's tokenizer (also --tokenizer-path)
  --chat-template FILE|NAME    a Jinja file, or built-in: chatml, vicuna_v1.1
  --scheduler fcfs|continuous  (default continuous)
  --attention paged|radix      KV cache manager (default paged)
  --device cpu|webgpu|cuda     (default cpu; cuda needs \`switchyard setup cuda\` once)
  --dtype auto|float32|float16|bfloat16 (auto: float32 on cpu, float16 on webgpu and cuda; bfloat16 on cuda; half, float, bf16 accepted)
  --quantization int4          webgpu and cuda
  --int4-max-batch N|all       cuda int4: decode batches up to N run int4 weights, prefill and
                               larger batches fp16, both held (default 4); all: int4 only
  --cuda-lib-dir DIR           cuda: where libcudart/cublas 13 and cuDNN 9 are, if not found
  --policy fcfs|lpm|priority   queue policy (default fcfs; also --schedule-policy)
  --max-model-len N            longest prompt + output (also --context-length, --max_req_total_len)
  --max-num-seqs N             (also --max-running-requests, --running_max_req_size)
  --max-num-batched-tokens N   (also --chunked-prefill-size, --batch_max_tokens)
  --kv-cache-tokens N          KV pool size (also --max-total-tokens, --max_total_token_num)
  --gpu-memory-utilization F   webgpu, cuda: size the KV pool from F of the GPU's memory
                               (also --mem-fraction-static, --mem_fraction)
  --block-size N  --no-prefix-caching (also --disable-radix-cache)  --enable-prefix-caching
  --no-chunked-prefill         whole prompts only (the token budget must hold the longest)
  --generation-config auto|vllm|none|DIR  omitted sampling settings: auto = the model's
                               generation_config.json, vllm = vLLM's defaults, none = greedy
  --image-cache-mb N (256)  --image-cache-entries N (also --cache_capacity)
  --vision-batch-size N (16)   image tiles one vision tower run encodes at most: images of
                               concurrent requests share a run; 0 or 1: each alone
                               (also --visual_infer_batch_size)
  --json                       machine-readable output
options of vLLM, SGLang or LightLLM that Switchyard lacks (--tensor-parallel-size,
--trust-remote-code, ...) are refused with what to do instead`;

export const HELP: Record<string, string> = {
  generate: `usage: switchyard generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | --messages FILE.json) [options]
  --image PATH                 an image for the prompt (repeatable, in order)
  --max-tokens N               (default 16)
  --temperature T              (default 0: greedy)
  --top-p P  --top-k K  --min-p P  --seed S  --repetition-penalty R
  --stop STR                   (repeatable)  --ignore-eos
${ENGINE_HELP}`,
  bench: `usage: switchyard bench --model DIR [options]
  --workload random|shared-prefix|multi-turn|images   (default random)
  --num-turns N (4)  --num-images N (4)
  --num-requests N (64)  --input-len N (128)  --output-len N (64)  --range-ratio R (0)
  --shared-prefix-len N (256)  --num-prefixes N (4)  --request-rate R|inf (inf)  --seed S (0)
  --url http://host:port       measure a running server instead of an in-process engine
${ENGINE_HELP}`,
  serve: `usage: switchyard serve [--model DIR | DIR] [options]
  --host H (127.0.0.1)  --port N (8000)  --api-key KEY (or $SWITCHYARD_API_KEY)
  --served-model-name NAME     the id clients send as "model" (default: the folder's name)
  --max-waiting N (1024)  --drain-timeout S (30)  --max-images-per-request N (8)
  --allowed-media-domains a.com,b.org  --allowed-local-media-path DIR
  --log-level fatal|error|warn|info|debug|trace|silent (info)  one JSON line per request on stderr
  --log-prompts                put prompt text in the request lines (never by default)
  --no-log-requests            no request lines (also --disable-log-requests)
  --stats-interval S (10)      a throughput / queue / KV line every S seconds while busy; 0: off
  --max-image-pixels N         width × height of all images of one request (larger: 400)
  --max-image-pixels-in-flight N  pixels decoded and preprocessed at once, all requests together
  --image-threads N            worker threads that decode and preprocess images
  --headers-timeout S (10)  --request-timeout S (60)  --keep-alive-timeout S   slow clients
  --no-playground              no page at / and no /v1/playground/*
  --executor-isolation none|thread|process  where the model's steps run: this thread, a worker
                               thread (default with --device cuda; keeps /health and streams
                               answering during steps), or a child process (a native crash fails
                               that step's requests and the process is restarted)
  --executor-thread            same as --executor-isolation thread (--no-executor-thread: none)
  --executor-max-restarts N (3)  restarts of a dying executor within 5 minutes before giving up
  with no model, serves the embedded vision demo
${ENGINE_HELP}`,
  start: `usage: switchyard start [serve options]
  serves the embedded vision demo model (models/switchyard-demo-vision) on http://127.0.0.1:8000;
  takes every option of \`switchyard serve --help\``,
  setup: `usage: switchyard setup cuda
  fetches ONNX Runtime 1.29's core and CUDA provider (npm packages com.github.asus4.onnxruntime*,
  ~330 MB, not part of npm ci) into ~/.cache/switchyard/ort-cuda for --device cuda; the CUDA 13
  runtime (libcudart, cuBLAS, cuDNN 9) is found from --cuda-lib-dir, LD_LIBRARY_PATH, CUDA_HOME or
  a Python environment's nvidia/*/lib`,
  chat: `usage: switchyard chat
  asks the embedded vision demo model one question about a picture and prints the answer`,
};

/** True when the arguments ask for help. */
export function wantsHelp(args: string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}
