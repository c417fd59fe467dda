import { useRef, useState } from 'preact/hooks';
import {
  Composer,
  dropAndPaste,
  ExampleStrip,
  SamplingControls,
  useAttachments,
  useExamples,
} from './inputs';
import { type AnswerStats, formatStats, GREEDY, type Sampling, streamChat, type Turn } from './stream-chat';

interface Shown extends Turn {
  stats?: AnswerStats;
  error?: string;
  stopped?: boolean;
  streaming?: boolean;
}

/** Chat mode: a conversation with the served model, pictures attached, answers streamed. */
export function Chat({ multimodal }: { multimodal: boolean }) {
  const [turns, setTurns] = useState<Shown[]>([]);
  const [draft, setDraft] = useState('');
  const [sampling, setSampling] = useState<Sampling>(GREEDY);
  const [busy, setBusy] = useState(false);
  const controller = useRef<AbortController>();
  const att = useAttachments();
  const examples = useExamples();

  const send = async () => {
    if (busy || (draft.trim() === '' && att.items.length === 0)) return;
    const user: Shown = { role: 'user', text: draft, images: att.items };
    const history = [...turns.filter((t) => !t.error), user];
    const answer: Shown = { role: 'assistant', text: '', images: [], streaming: true };
    setTurns([...turns, user, answer]);
    setDraft('');
    att.setItems([]);
    setBusy(true);
    const abort = new AbortController();
    controller.current = abort;
    const update = (patch: Partial<Shown>) =>
      setTurns((ts) => [...ts.slice(0, -1), { ...ts[ts.length - 1], ...patch }]);
    try {
      const { text, stats } = await streamChat(history, sampling, abort.signal, (text) => update({ text }));
      update({ text, stats, streaming: false });
    } catch (e) {
      if ((e as Error).name === 'AbortError') update({ stopped: true, streaming: false });
      else update({ error: (e as Error).message, streaming: false });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="chat" {...dropAndPaste(att)}>
      <ExampleStrip
        {...examples}
        onPick={(url, q) => {
          att.setItems([url]);
          if (q) setDraft(q);
        }}
        onQuestion={setDraft}
      />
      <ol class="messages" aria-live="polite">
        {turns.map((t, i) => (
          <li class={`message ${t.role}`} key={i} data-streaming={t.streaming ? 'true' : undefined}>
            {t.images.map((url, j) => (
              <img class="sent-picture" src={url} alt={`attachment ${j + 1}`} key={j} />
            ))}
            {(t.text || t.role === 'user' || t.streaming) && <p class="text">{t.text}</p>}
            {t.error && <p class="error server-error">{t.error}</p>}
            {t.stopped && <p class="note">stopped</p>}
            {t.stats && <p class="stats">{formatStats(t.stats)}</p>}
          </li>
        ))}
      </ol>
      <Composer
        att={att}
        multimodal={multimodal}
        draft={draft}
        setDraft={setDraft}
        busy={busy}
        onSend={() => void send()}
        onStop={() => controller.current?.abort()}
        placeholder="Ask about a picture: paste, drop or attach one"
        sendLabel="Send"
        enterSends
      >
        <div class="row">
          <button type="button" class="secondary" disabled={busy} onClick={() => setTurns([])}>
            New chat
          </button>
        </div>
      </Composer>
      <details class="settings">
        <summary>Sampling</summary>
        <SamplingControls value={sampling} onChange={setSampling} id="chat" />
      </details>
    </div>
  );
}
