import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type ChatMessage,
  type Engine,
  type GenerateRequest,
  locateCudaLibraries,
  SwitchyardError,
  setupCuda,
} from '@switchyard/core';
import { runBench } from './bench.js';
import { createEngine } from './create-engine.js';
import { ENGINE_FLAGS, engineOptions, parseFlags } from './flags.js';
import { HELP, wantsHelp } from './help.js';
import { showLoadProgress } from './load-progress.js';
import { serve } from './serve.js';

/** The embedded demo model that a fresh clone serves with no download. */
export const DEMO_MODEL = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'models',
  'switchyard-demo-text',
);

/** The embedded vision demo: what `npm start` serves. */
export const DEMO_VISION_MODEL = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'models',
  'switchyard-demo-vision',
);

const USAGE = `usage:
  switchyard generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | --messages FILE.json) [options]
  switchyard bench --model DIR [--workload random|shared-prefix] [options]
  switchyard serve [--model DIR] [--host 127.0.0.1] [--port 8000] [options]
  switchyard start            serve the embedded demo model on http://127.0.0.1:8000
  switchyard chat             ask the embedded demo model one question
  switchyard setup cuda       fetch ONNX Runtime's CUDA provider (~330 MB from the npm registry) for --device cuda
\`switchyard COMMAND --help\` lists a command's options; docs/CLI.md has them all`;

/** Runs the CLI; returns the exit status. Errors print one line, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && HELP[command] && wantsHelp(rest)) {
    process.stdout.write(`${HELP[command]}\n`);
    return 0;
  }
  try {
    switch (command) {
      case 'generate':
        return await generate(rest);
      case 'bench':
        return await runBench(rest, engineOptions);
      case 'serve':
        return await serve(rest, DEMO_VISION_MODEL);
      case 'start':
        return await serve(rest, DEMO_VISION_MODEL);
      case 'chat':
        return await chat();
      case 'setup':
        return setup(rest);
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new SwitchyardError(
          `unknown command '${command}'; commands: generate, serve, bench, start, chat, setup`,
        );
    }
  } catch (e) {
    const known =
      e instanceof SwitchyardError || String((e as { code?: string }).code).startsWith('ERR_PARSE_ARGS');
    const msg = known
      ? (e as Error).message
      : `internal error: ${(e as Error).message} (set SWITCHYARD_DEBUG=1 for the stack)`;
    process.stderr.write(`switchyard: ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
    if (!known && process.env.SWITCHYARD_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    return 1;
  }
}

/** The options of `switchyard generate`. */
export const GENERATE_FLAGS = {
  ...ENGINE_FLAGS,
  prompt: { type: 'string' },
  'prompt-ids': { type: 'string' },
  messages: { type: 'string' },
  image: { type: 'string', multiple: true },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  'min-p': { type: 'string' },
  seed: { type: 'string' },
  'repetition-penalty': { type: 'string' },
  stop: { type: 'string', multiple: true },
  'ignore-eos': { type: 'boolean' },
} as const;

async function generate(args: string[]): Promise<number> {
  const values = parseFlags(args, GENERATE_FLAGS);
  const num = (name: keyof typeof values): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n))
      throw new SwitchyardError(`--${name} must be a number, got '${v}'`);
    return n;
  };
  const request: GenerateRequest = {
    sampling: {
      maxTokens: num('max-tokens') ?? 16,
      temperature: num('temperature') ?? 0,
      topP: num('top-p'),
      topK: num('top-k'),
      minP: num('min-p'),
      seed: num('seed'),
      repetitionPenalty: num('repetition-penalty'),
      stop: values.stop,
      ignoreEos: values['ignore-eos'],
    },
  };
  const given = ['prompt', 'prompt-ids', 'messages'].filter(
    (k) => values[k as keyof typeof values] !== undefined,
  );
  if (given.length !== 1)
    throw new SwitchyardError('give exactly one of --prompt, --prompt-ids and --messages');
  if (values.prompt !== undefined) request.prompt = values.prompt;
  if (values['prompt-ids'] !== undefined) request.promptIds = parseIds(values['prompt-ids']);
  if (values.messages !== undefined) request.messages = readMessages(values.messages);

  // One-shot commands stay quiet in scripts: the loading bar only on a terminal.
  const stopProgress = process.stderr.isTTY ? showLoadProgress(process.stderr) : () => {};
  let engine: Engine;
  try {
    // One request: decoding its images on this thread beats starting worker threads for them.
    engine = await createEngine({ ...engineOptions(values), images: { workers: false } });
  } finally {
    stopProgress();
  }
  try {
    if (values.image?.length) {
      request.images = values.image;
      const mm = engine.spec.multimodal;
      if (request.prompt !== undefined && mm) {
        // A raw prompt gets one image placeholder per image before the text, as the model expects.
        const placeholder = `${engine.tokenizer.idToToken(mm.placeholderTokenId)}\n`;
        request.prompt = placeholder.repeat(values.image.length) + request.prompt;
      }
    }
    const [result] = await engine.generate([request]);
    const out = result.outputs[0];
    if (values.json) {
      const json = {
        prompt_token_ids: result.promptTokenIds,
        token_ids: out.tokenIds,
        text: out.text,
        finish_reason: out.finishReason,
      };
      process.stdout.write(`${JSON.stringify(json)}\n`);
    } else {
      process.stdout.write(`${out.text}\n`);
    }
    return 0;
  } finally {
    await engine.close();
  }
}

/** A one-question chat with the demo model, printed. */
async function chat(): Promise<number> {
  const engine: Engine = await createEngine({ model: DEMO_VISION_MODEL, images: { workers: false } });
  try {
    const question = 'What color is the circle?';
    const picture = join(DEMO_VISION_MODEL, 'examples', 'scene1.png');
    const [result] = await engine.generate([
      {
        messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }],
        images: [picture],
        sampling: { maxTokens: 32 },
      },
    ]);
    process.stdout.write(
      `Switchyard ${engine.info.architecture} demo (${engine.info.scheduler} scheduler, ${engine.info.attention} KV cache, ${engine.info.device})\n`,
    );
    process.stdout.write(`> [${picture}] ${question}\n${result.outputs[0].text.trim()}\n`);
    return 0;
  } finally {
    await engine.close();
  }
}

function parseIds(s: string): number[] {
  const ids = s.split(',').map((x) => Number(x.trim()));
  if (ids.some((x) => !Number.isInteger(x) || x < 0))
    throw new SwitchyardError(`--prompt-ids must be comma-separated token ids, got '${s}'`);
  return ids;
}

function readMessages(path: string): ChatMessage[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new SwitchyardError(`cannot read the messages file ${path}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SwitchyardError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * `switchyard setup cuda`: ONNX Runtime 1.29's core and CUDA provider from the npm registry into
 * ~/.cache/switchyard/ort-cuda (not part of `npm ci`), then a check that the CUDA runtime is found.
 */
function setup(args: string[]): number {
  if (args[0] !== 'cuda' || args.length > 1)
    throw new SwitchyardError(`setup takes one target: \`switchyard setup cuda\``);
  const dir = setupCuda({ log: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`ONNX Runtime's CUDA provider is in ${dir}\n`);
  try {
    locateCudaLibraries();
    process.stdout.write('the CUDA runtime libraries were found: --device cuda is ready\n');
  } catch (e) {
    process.stdout.write(`${(e as Error).message}\n`);
  }
  return 0;
}
