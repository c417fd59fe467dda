import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { dataUrl, type Example, getBlob, getJson } from './api';
import type { Sampling } from './stream-chat';

/** Pictures attached to the next message (data: URLs), added by picker, drop, paste or example. */
export function useAttachments() {
  const [items, setItems] = useState<string[]>([]);
  const [error, setError] = useState('');
  const add = async (files: Iterable<File>) => {
    const list = [...files];
    const bad = list.find((f) => !f.type.startsWith('image/'));
    setError(
      bad
        ? `${bad.name || 'that file'} is not a picture (${bad.type || 'unknown type'}); attach PNG, JPEG or WebP`
        : '',
    );
    const urls = await Promise.all(list.filter((f) => f.type.startsWith('image/')).map(dataUrl));
    setItems((old) => [...old, ...urls]);
  };
  return { items, setItems, error, add };
}

export type Attachments = ReturnType<typeof useAttachments>;

/** Drag-and-drop and paste handlers that attach pictures; spread onto a region of the page. */
export function dropAndPaste(att: Attachments) {
  return {
    onDragOver: (e: JSX.TargetedDragEvent<HTMLElement>) => e.preventDefault(),
    onDrop: (e: JSX.TargetedDragEvent<HTMLElement>) => {
      e.preventDefault();
      if (e.dataTransfer?.files.length) void att.add(e.dataTransfer.files);
    },
    onPaste: (e: JSX.TargetedClipboardEvent<HTMLElement>) => {
      const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
      if (files.length) {
        e.preventDefault();
        void att.add(files);
      }
    },
  };
}

export function AttachmentList({ att, multimodal }: { att: Attachments; multimodal: boolean }) {
  const input = useRef<HTMLInputElement>(null);
  if (!multimodal && att.items.length === 0 && !att.error) return null;
  return (
    <div class="attachments">
      {att.items.map((url, i) => (
        <figure class="thumb" key={url.slice(-40) + i}>
          <img src={url} alt={`attachment ${i + 1}`} />
          <button
            type="button"
            class="remove"
            aria-label={`remove picture ${i + 1}`}
            onClick={() => att.setItems(att.items.filter((_, j) => j !== i))}
          >
            ×
          </button>
        </figure>
      ))}
      <button type="button" class="secondary" onClick={() => input.current?.click()}>
        Attach picture
      </button>
      <input
        ref={input}
        type="file"
        accept="image/*"
        multiple
        hidden
        data-testid="file-input"
        onChange={(e) => {
          const files = e.currentTarget.files;
          if (files) void att.add(files);
          e.currentTarget.value = '';
        }}
      />
      {att.error && <span class="error">{att.error}</span>}
    </div>
  );
}

/** The model folder's example pictures (as data: URLs) and the questions its reference asks. */
export function useExamples() {
  const [state, setState] = useState<{ examples: (Example & { url: string })[]; questions: string[] }>({
    examples: [],
    questions: [],
  });
  useEffect(() => {
    let live = true;
    getJson<{ examples: Example[]; questions: string[] }>('/v1/playground/examples')
      .then(async ({ examples, questions }) => {
        const withUrls = await Promise.all(
          examples.map(async (e) => ({
            ...e,
            url: await dataUrl(await getBlob(`/v1/playground/examples/${e.file}`)),
          })),
        );
        if (live) setState({ examples: withUrls, questions });
      })
      .catch(() => {});
    return () => {
      live = false;
    };
  }, []);
  return state;
}

/** Example pictures, one click from being attached with their question; and every question. */
export function ExampleStrip({
  examples,
  questions,
  onPick,
  onQuestion,
}: ReturnType<typeof useExamples> & {
  onPick: (url: string, question: string | undefined) => void;
  onQuestion: (q: string) => void;
}) {
  if (examples.length === 0 && questions.length === 0) return null;
  return (
    <section class="examples" aria-label="examples">
      {examples.length > 0 && (
        <div class="example-pictures">
          {examples.map((e) => (
            <button
              type="button"
              class="example"
              key={e.file}
              data-file={e.file}
              title={e.question ? `${e.file}: ${e.question}` : e.file}
              onClick={() => onPick(e.url, e.question)}
            >
              <img src={e.url} alt={e.file} />
            </button>
          ))}
        </div>
      )}
      {questions.length > 0 && (
        <div class="example-questions">
          {questions.map((q) => (
            <button type="button" class="chip" key={q} onClick={() => onQuestion(q)}>
              {q}
            </button>
          ))}
        </div>
      )}
    </section>
  );
}

const FIELDS: { key: keyof Sampling; label: string; hint: string }[] = [
  { key: 'temperature', label: 'temperature', hint: '0 = greedy' },
  { key: 'top_p', label: 'top-p', hint: '0–1' },
  { key: 'top_k', label: 'top-k', hint: 'blank = off' },
  { key: 'max_tokens', label: 'max tokens', hint: '' },
  { key: 'seed', label: 'seed', hint: 'blank = random' },
];

export function SamplingControls({
  value,
  onChange,
  id,
}: {
  value: Sampling;
  onChange: (s: Sampling) => void;
  id: string;
}) {
  return (
    <fieldset class="sampling" data-testid={`sampling-${id}`}>
      {FIELDS.map((f) => (
        <label key={f.key}>
          <span>{f.label}</span>
          <input
            name={f.key}
            inputMode="decimal"
            placeholder={f.hint}
            value={value[f.key] as string}
            onInput={(e) => onChange({ ...value, [f.key]: e.currentTarget.value })}
          />
        </label>
      ))}
      <label class="wide">
        <span>stop (one per line)</span>
        <textarea
          name="stop"
          rows={1}
          value={value.stop}
          onInput={(e) => onChange({ ...value, stop: e.currentTarget.value })}
        />
      </label>
      <label class="check">
        <input
          type="checkbox"
          name="ignore_eos"
          checked={value.ignore_eos}
          onChange={(e) => onChange({ ...value, ignore_eos: e.currentTarget.checked })}
        />
        <span>ignore EOS</span>
      </label>
    </fieldset>
  );
}

/**
 * The message box of the chat modes: attachments, the prompt, Send (Stop while an answer streams),
 * and any extra rows (`children`). With `enterSends`, Enter sends and Shift+Enter breaks the line.
 */
export function Composer(props: {
  att: Attachments;
  multimodal: boolean;
  draft: string;
  setDraft: (text: string) => void;
  busy: boolean;
  onSend: () => void;
  onStop: () => void;
  placeholder: string;
  sendLabel: string;
  enterSends?: boolean;
  children?: ComponentChildren;
}) {
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSend();
      }}
    >
      <AttachmentList att={props.att} multimodal={props.multimodal} />
      <div class="row">
        <textarea
          name="prompt"
          rows={2}
          placeholder={props.placeholder}
          value={props.draft}
          onInput={(e) => props.setDraft(e.currentTarget.value)}
          onKeyDown={
            props.enterSends
              ? (e) => {
                  if (e.key === 'Enter' && !e.shiftKey) {
                    e.preventDefault();
                    props.onSend();
                  }
                }
              : undefined
          }
        />
        {props.busy ? (
          <button type="button" class="stop" onClick={props.onStop}>
            Stop
          </button>
        ) : (
          <button type="submit" class="send">
            {props.sendLabel}
          </button>
        )}
      </div>
      {props.children}
    </form>
  );
}
