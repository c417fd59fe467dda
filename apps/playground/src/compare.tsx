import { useMemo, useState } from 'preact/hooks';
import { deleteJson, type Info, postEvents } from './api';
import { Chart, COLORS, cdfData, type Line } from './charts';

interface ConfigForm {
  name: string;
  scheduler: string;
  attention: string;
  policy: string;
  max_num_batched_tokens: string;
  block_size: string;
  max_num_seqs: string;
  kv_cache_tokens: string;
  enable_prefix_caching: boolean;
  enable_chunked_prefill: boolean;
}

type WorkloadForm = Record<
  | 'workload'
  | 'num_requests'
  | 'input_len'
  | 'output_len'
  | 'range_ratio'
  | 'shared_prefix_len'
  | 'num_prefixes'
  | 'num_turns'
  | 'num_images'
  | 'request_rate'
  | 'seed',
  string
>;

interface Summary {
  mean: number;
  p50: number;
  p99: number;
}

/** One config's figures as `POST /v1/playground/runs` reports them. */
interface ConfigResult {
  name: string;
  requests: number;
  duration_s: number;
  output_tok_s: number;
  total_tok_s: number;
  ttft_ms: Summary;
  tpot_ms: Summary;
  itl_ms: Summary;
  e2e_ms: Summary;
  prefix_hit_rate: number;
  preemptions: number;
  kv_peak_usage: number;
  cdf: { ttft_ms: number[]; itl_ms: number[]; e2e_ms: number[] };
  timeline: { t_ms: number[]; kv_usage: number[]; running: number[]; waiting: number[] };
  engine: { scheduler: string; attention: string; policy: string; blockSize: number; numBlocks: number };
  cli: string;
  build_ms: number;
}

type Slot =
  | { state: 'waiting' | 'running'; finished: number; total: number }
  | ConfigResult
  | { error: string };

type RunEvent =
  | { type: 'start'; id: string; configs: number }
  | { type: 'config-start'; index: number; name: string }
  | { type: 'progress'; index: number; finished: number; total: number }
  | { type: 'config-done'; index: number; result: ConfigResult }
  | { type: 'error'; index: number; message: string }
  | { type: 'done'; id: string; status: string };

const config = (name: string, scheduler: string, attention: string): ConfigForm => ({
  name,
  scheduler,
  attention,
  policy: 'fcfs',
  max_num_batched_tokens: '',
  block_size: '',
  max_num_seqs: '',
  kv_cache_tokens: '',
  enable_prefix_caching: true,
  enable_chunked_prefill: true,
});

const WORKLOAD: WorkloadForm = {
  workload: 'shared-prefix',
  num_requests: '16',
  input_len: '32',
  output_len: '16',
  range_ratio: '0',
  shared_prefix_len: '64',
  num_prefixes: '2',
  num_turns: '4',
  num_images: '4',
  request_rate: 'inf',
  seed: '0',
};

/** Workload fields each kind uses (the others are not sent). */
const WORKLOAD_FIELDS: Record<string, (keyof WorkloadForm)[]> = {
  random: [],
  'shared-prefix': ['shared_prefix_len', 'num_prefixes'],
  'multi-turn': ['num_turns'],
  images: ['num_images'],
};
const COMMON: (keyof WorkloadForm)[] = [
  'num_requests',
  'input_len',
  'output_len',
  'range_ratio',
  'request_rate',
  'seed',
];

/** A typed number as a number; anything else as typed, for the server to refuse by name. */
const value = (s: string): unknown => (s.trim() !== '' && Number.isFinite(Number(s)) ? Number(s) : s.trim());

export function requestBody(configs: ConfigForm[], w: WorkloadForm) {
  return {
    configs: configs.map((c) => {
      const out: Record<string, unknown> = {
        name: c.name,
        scheduler: c.scheduler,
        attention: c.attention,
        policy: c.policy,
      };
      for (const k of ['max_num_batched_tokens', 'block_size', 'max_num_seqs', 'kv_cache_tokens'] as const)
        if (c[k].trim() !== '') out[k] = value(c[k]);
      out.enable_prefix_caching = c.enable_prefix_caching;
      out.enable_chunked_prefill = c.enable_chunked_prefill;
      return out;
    }),
    workload: Object.fromEntries([
      ['workload', w.workload],
      ...[...COMMON, ...(WORKLOAD_FIELDS[w.workload] ?? [])].map((k) => [k, value(w[k])]),
    ]),
  };
}

/** Compare mode: engine configurations run one after another on one workload, figures side by side. */
export function Compare({ info }: { info: Info }) {
  const [configs, setConfigs] = useState<ConfigForm[]>([
    config('fcfs × paged', 'fcfs', 'paged'),
    config('continuous × radix', 'continuous', 'radix'),
  ]);
  const [workload, setWorkload] = useState<WorkloadForm>(WORKLOAD);
  const [slots, setSlots] = useState<Slot[]>([]);
  const [error, setError] = useState('');
  const [running, setRunning] = useState(false);
  const [sent, setSent] = useState<ReturnType<typeof requestBody>>();
  const [runId, setRunId] = useState<string>();

  const setConfig = (i: number, patch: Partial<ConfigForm>) =>
    setConfigs((cs) => cs.map((c, j) => (j === i ? { ...c, ...patch } : c)));

  const run = async () => {
    const body = requestBody(configs, workload);
    setError('');
    setRunning(true);
    setSent(body);
    setSlots(body.configs.map(() => ({ state: 'waiting', finished: 0, total: 0 })));
    const put = (i: number, s: Slot) => setSlots((ss) => ss.map((x, j) => (j === i ? s : x)));
    try {
      for await (const e of postEvents<RunEvent>('/v1/playground/runs', body)) {
        if (e.type === 'start') setRunId(e.id);
        else if (e.type === 'config-start') put(e.index, { state: 'running', finished: 0, total: 0 });
        else if (e.type === 'progress')
          put(e.index, { state: 'running', finished: e.finished, total: e.total });
        else if (e.type === 'config-done') put(e.index, e.result);
        else if (e.type === 'error') put(e.index, { error: e.message });
      }
    } catch (e) {
      setError((e as Error).message);
      setSlots([]);
    } finally {
      setRunning(false);
      setRunId(undefined);
    }
  };
  const cancel = () => {
    if (runId) deleteJson(`/v1/playground/runs/${runId}`).catch((e: Error) => setError(e.message));
  };

  const done = slots.filter((s): s is ConfigResult => 'cli' in s);
  return (
    <div class="compare">
      <section class="configs">
        {configs.map((c, i) => (
          <fieldset class="config" key={i} data-config={i}>
            <legend>
              <input
                class="name"
                aria-label={`name of config ${i + 1}`}
                value={c.name}
                onInput={(e) => setConfig(i, { name: e.currentTarget.value })}
              />
            </legend>
            <Select
              label="scheduler"
              value={c.scheduler}
              options={info.schedulers}
              onChange={(v) => setConfig(i, { scheduler: v })}
            />
            <Select
              label="KV manager"
              value={c.attention}
              options={info.attentions}
              onChange={(v) => setConfig(i, { attention: v })}
            />
            <Select
              label="queue policy"
              value={c.policy}
              options={info.policies}
              onChange={(v) => setConfig(i, { policy: v })}
            />
            {(
              [
                ['max_num_batched_tokens', 'token budget', 'default'],
                ['block_size', 'block size', String(info.served.block_size ?? 16)],
                ['max_num_seqs', 'max running seqs', String(info.served.max_num_seqs ?? 64)],
                ['kv_cache_tokens', 'KV pool tokens', String(info.served.kv_cache_tokens ?? '')],
              ] as const
            ).map(([k, label, hint]) => (
              <label key={k}>
                <span>{label}</span>
                <input
                  name={k}
                  inputMode="numeric"
                  placeholder={hint}
                  value={c[k]}
                  onInput={(e) => setConfig(i, { [k]: e.currentTarget.value })}
                />
              </label>
            ))}
            <label class="check">
              <input
                type="checkbox"
                name="enable_prefix_caching"
                checked={c.enable_prefix_caching}
                onChange={(e) => setConfig(i, { enable_prefix_caching: e.currentTarget.checked })}
              />
              <span>prefix caching</span>
            </label>
            <label class="check">
              <input
                type="checkbox"
                name="enable_chunked_prefill"
                checked={c.enable_chunked_prefill}
                onChange={(e) => setConfig(i, { enable_chunked_prefill: e.currentTarget.checked })}
              />
              <span>chunked prefill</span>
            </label>
            {configs.length > 1 && (
              <button
                type="button"
                class="secondary"
                onClick={() => setConfigs(configs.filter((_, j) => j !== i))}
              >
                Remove
              </button>
            )}
          </fieldset>
        ))}
        {configs.length < 8 && (
          <button
            type="button"
            class="secondary add"
            onClick={() =>
              setConfigs([
                ...configs,
                { ...configs[configs.length - 1], name: `config ${configs.length + 1}` },
              ])
            }
          >
            Add config
          </button>
        )}
      </section>
      <fieldset class="workload">
        <legend>Workload</legend>
        <Select
          label="kind"
          value={workload.workload}
          options={info.workloads}
          onChange={(v) => setWorkload({ ...workload, workload: v })}
        />
        {[...COMMON.slice(0, 3), ...(WORKLOAD_FIELDS[workload.workload] ?? []), ...COMMON.slice(3)].map(
          (k) => (
            <label key={k}>
              <span>{k.replaceAll('_', ' ')}</span>
              <input
                name={k}
                value={workload[k]}
                onInput={(e) => setWorkload({ ...workload, [k]: e.currentTarget.value })}
              />
            </label>
          ),
        )}
      </fieldset>
      <div class="row">
        <button type="button" class="run" disabled={running} onClick={() => void run()}>
          {running ? 'Running…' : 'Run comparison'}
        </button>
        {running && runId && (
          <button type="button" class="stop" onClick={cancel}>
            Cancel
          </button>
        )}
      </div>
      {error && (
        <p class="error server-error" role="alert">
          {error}
        </p>
      )}
      {slots.length > 0 && <Results slots={slots} names={sent?.configs.map((c) => String(c.name)) ?? []} />}
      {done.length > 0 && done.length === slots.length && sent && <Numbers results={done} body={sent} />}
    </div>
  );
}

function Select({
  label,
  value,
  options,
  onChange,
}: {
  label: string;
  value: string;
  options: string[];
  onChange: (v: string) => void;
}) {
  return (
    <label>
      <span>{label}</span>
      <select name={label} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function Results({ slots, names }: { slots: Slot[]; names: string[] }) {
  return (
    <section class="results">
      {slots.map((s, i) => (
        <article
          class="result-column"
          key={i}
          data-index={i}
          style={{ borderTopColor: COLORS[i % COLORS.length] }}
        >
          <h3>{names[i]}</h3>
          {'error' in s ? (
            <p class="error server-error">{s.error}</p>
          ) : 'state' in s ? (
            <p class="progress">
              {s.state === 'waiting'
                ? 'waiting'
                : s.total
                  ? `running: ${s.finished}/${s.total} requests`
                  : 'building the engine…'}
            </p>
          ) : (
            <ResultColumn r={s} color={COLORS[i % COLORS.length]} />
          )}
        </article>
      ))}
    </section>
  );
}

function ResultColumn({ r, color }: { r: ConfigResult; color: string }) {
  const t = r.timeline;
  const lines = useMemo<Line[]>(
    () => [
      { label: 'running', color, values: t.running },
      { label: 'waiting', color: '#888', values: t.waiting, dash: true },
      { label: 'KV usage %', color: '#16a34a', values: t.kv_usage.map((u) => u * 100), right: true },
    ],
    [t, color],
  );
  return (
    <>
      <dl class="figures">
        <Figure
          label="output tok/s"
          metric="output_tok_s"
          v={r.output_tok_s}
          text={r.output_tok_s.toFixed(1)}
        />
        <Figure label="TTFT p50" metric="ttft_p50" v={r.ttft_ms.p50} text={`${ms(r.ttft_ms.p50)} ms`} />
        <Figure label="ITL p50" metric="itl_p50" v={r.itl_ms.p50} text={`${ms(r.itl_ms.p50)} ms`} />
        <Figure
          label="prefix hit rate"
          metric="prefix_hit_rate"
          v={r.prefix_hit_rate}
          text={pct(r.prefix_hit_rate)}
        />
        <Figure label="preemptions" metric="preemptions" v={r.preemptions} text={String(r.preemptions)} />
        <Figure label="KV peak" metric="kv_peak_usage" v={r.kv_peak_usage} text={pct(r.kv_peak_usage)} />
      </dl>
      <Chart
        title="Running, waiting, KV usage"
        x={t.t_ms}
        lines={lines}
        xLabel="ms"
        yLabel="requests"
        rightLabel="KV %"
        step
      />
    </>
  );
}

function Figure({ label, metric, v, text }: { label: string; metric: string; v: number; text: string }) {
  return (
    <div class="figure" data-metric={metric} data-value={String(v)}>
      <dt>{label}</dt>
      <dd>{text}</dd>
    </div>
  );
}

const ROWS: [string, (r: ConfigResult) => string][] = [
  ['requests', (r) => String(r.requests)],
  ['duration s', (r) => r.duration_s.toFixed(3)],
  ['output tok/s', (r) => r.output_tok_s.toFixed(1)],
  ['total tok/s', (r) => r.total_tok_s.toFixed(1)],
  ['TTFT mean / p50 / p99 ms', (r) => [r.ttft_ms.mean, r.ttft_ms.p50, r.ttft_ms.p99].map(ms).join(' / ')],
  ['ITL mean / p50 / p99 ms', (r) => [r.itl_ms.mean, r.itl_ms.p50, r.itl_ms.p99].map(ms).join(' / ')],
  ['TPOT mean / p50 / p99 ms', (r) => [r.tpot_ms.mean, r.tpot_ms.p50, r.tpot_ms.p99].map(ms).join(' / ')],
  ['e2e mean / p50 / p99 ms', (r) => [r.e2e_ms.mean, r.e2e_ms.p50, r.e2e_ms.p99].map(ms).join(' / ')],
  ['prefix hit rate', (r) => pct(r.prefix_hit_rate)],
  ['preemptions', (r) => String(r.preemptions)],
  ['KV peak usage', (r) => pct(r.kv_peak_usage)],
  ['KV blocks × size', (r) => `${r.engine.numBlocks} × ${r.engine.blockSize}`],
  ['engine build ms', (r) => r.build_ms.toFixed(0)],
];

function Numbers({ results, body }: { results: ConfigResult[]; body: unknown }) {
  const cdfs = useMemo(
    () =>
      (['ttft_ms', 'itl_ms', 'e2e_ms'] as const).map((k) => {
        const { x, ys } = cdfData(results.map((r) => r.cdf[k]));
        const lines: Line[] = results.map((r, i) => ({
          label: r.name,
          color: COLORS[i % COLORS.length],
          values: ys[i],
        }));
        return { k, x, lines };
      }),
    [results],
  );
  const json = JSON.stringify(body, null, 2);
  const cli = results.map((r) => r.cli).join('\n');
  return (
    <section class="numbers">
      <div class="cdfs">
        {cdfs.map(({ k, x, lines }) => (
          <Chart
            key={k}
            title={`${k.replace('_ms', '').toUpperCase()} CDF`}
            x={x}
            lines={lines}
            xLabel="ms"
            yLabel="fraction"
            step
          />
        ))}
      </div>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th />
              {results.map((r, i) => (
                <th key={i} style={{ color: COLORS[i % COLORS.length] }}>
                  {r.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {ROWS.map(([label, f]) => (
              <tr key={label}>
                <th>{label}</th>
                {results.map((r, i) => (
                  <td key={i}>{f(r)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="row">
        <CopyButton label="Copy as JSON" text={json} />
        <CopyButton label="Copy as CLI command" text={cli} />
      </div>
      <details>
        <summary>Reproduce with switchyard bench</summary>
        <pre class="cli">{cli}</pre>
        <pre class="json">{json}</pre>
      </details>
    </section>
  );
}

function CopyButton({ label, text }: { label: string; text: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard permission (or an insecure origin): copy through a selected textarea.
      const area = document.createElement('textarea');
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <button type="button" class="secondary" onClick={() => void copy()}>
      {copied ? 'Copied' : label}
    </button>
  );
}
