import { useRef, useState } from 'preact/hooks';
import {
  Composer,
  dropAndPaste,
  ExampleStrip,
  SamplingControls,
  useAttachments,
  useExamples,
} from './inputs';
import {
  type AnswerStats,
  formatStats,
  GREEDY,
  type Sampling,
  samplingBody,
  streamChat,
} from './stream-chat';

interface Column {
  sampling: Sampling;
  text: string;
  stats?: AnswerStats;
  error?: string;
  stopped?: boolean;
}

/** The settings that differ from the server's defaults, in one line. */
function describe(s: Sampling): string {
  const body = samplingBody(s);
  return Object.entries(body)
    .map(([k, v]) => `${k.replace('_', ' ')} ${Array.isArray(v) ? v.join('|') : v}`)
    .join(' · ');
}

const START: Column[] = [
  { sampling: GREEDY, text: '' },
  { sampling: { ...GREEDY, temperature: '1', top_k: '20', seed: '1' }, text: '' },
];

/**
 * Side-by-side chat: one prompt (and pictures) sent twice at once to the served engine with two
 * sampling settings; the answers stream into two columns.
 */
export function SideBySide({ multimodal }: { multimodal: boolean }) {
  const [cols, setCols] = useState<Column[]>(START);
  const [draft, setDraft] = useState('');
  const [busy, setBusy] = useState(false);
  const controller = useRef<AbortController>();
  const att = useAttachments();
  const examples = useExamples();

  const patch = (i: number, p: Partial<Column>) =>
    setCols((cs) => cs.map((c, j) => (j === i ? { ...c, ...p } : c)));

  const send = async () => {
    if (busy || draft.trim() === '') return;
    const abort = new AbortController();
    controller.current = abort;
    setBusy(true);
    setCols((cs) => cs.map((c) => ({ sampling: c.sampling, text: '' })));
    const turns = [{ role: 'user' as const, text: draft, images: att.items }];
    await Promise.all(
      cols.map(async (c, i) => {
        try {
          const { text, stats } = await streamChat(turns, c.sampling, abort.signal, (text) =>
            patch(i, { text }),
          );
          patch(i, { text, stats });
        } catch (e) {
          if ((e as Error).name === 'AbortError') patch(i, { stopped: true });
          else patch(i, { error: (e as Error).message });
        }
      }),
    );
    setBusy(false);
  };

  return (
    <div class="side-by-side" {...dropAndPaste(att)}>
      <ExampleStrip
        {...examples}
        onPick={(url, q) => {
          att.setItems([url]);
          if (q) setDraft(q);
        }}
        onQuestion={setDraft}
      />
      <Composer
        att={att}
        multimodal={multimodal}
        draft={draft}
        setDraft={setDraft}
        busy={busy}
        onSend={() => void send()}
        onStop={() => controller.current?.abort()}
        placeholder="One prompt, two sampling settings"
        sendLabel="Send to both"
      />
      <div class="columns">
        {cols.map((c, i) => (
          <section class="column answer-column" key={i} data-column={i}>
            <h3>
              {i === 0 ? 'A' : 'B'} <span class="setting">{describe(c.sampling)}</span>
            </h3>
            <details>
              <summary>Sampling {i === 0 ? 'A' : 'B'}</summary>
              <SamplingControls
                value={c.sampling}
                onChange={(s) => patch(i, { sampling: s })}
                id={String(i)}
              />
            </details>
            <p class="text">{c.text}</p>
            {c.error && <p class="error server-error">{c.error}</p>}
            {c.stopped && <p class="note">stopped</p>}
            {c.stats && <p class="stats">{formatStats(c.stats)}</p>}
          </section>
        ))}
      </div>
    </div>
  );
}
