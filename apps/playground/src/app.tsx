import { useEffect, useState } from 'preact/hooks';
import { apiKey, getJson, type Info, type ServerError, setApiKey } from './api';
import { Chat } from './chat';
import { Compare } from './compare';
import { SideBySide } from './side-by-side';

const MODES = [
  { id: 'chat', label: 'Chat' },
  { id: 'compare', label: 'Compare' },
  { id: 'side-by-side', label: 'Side by side' },
] as const;
type Mode = (typeof MODES)[number]['id'];

const modeOf = (hash: string): Mode => MODES.find((m) => `#${m.id}` === hash)?.id ?? 'chat';

/** The page: the served model in the header, and the three modes as tabs (the URL hash names one). */
export function App() {
  const [mode, setMode] = useState<Mode>(modeOf(location.hash));
  const [info, setInfo] = useState<Info>();
  const [error, setError] = useState<ServerError>();
  const [key, setKey] = useState(apiKey());

  useEffect(() => {
    const onHash = () => setMode(modeOf(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    getJson<Info>('/v1/playground/info').then(
      (i) => {
        setInfo(i);
        setError(undefined);
      },
      (e: ServerError) => setError(e),
    );
  }, [key]);

  return (
    <>
      <header>
        <h1>Switchyard</h1>
        {info && (
          <p class="model" data-testid="model">
            <strong>{info.model}</strong> <span>{info.engine.device}</span> <span>{info.engine.dtype}</span>{' '}
            <span>
              {info.engine.scheduler} × {info.engine.attention}
            </span>
          </p>
        )}
        <nav>
          {MODES.map((m) => (
            <a
              key={m.id}
              href={`#${m.id}`}
              class={mode === m.id ? 'tab active' : 'tab'}
              aria-current={mode === m.id ? 'page' : undefined}
            >
              {m.label}
            </a>
          ))}
        </nav>
      </header>
      <main>
        {error && (
          <div class="error server-error" role="alert">
            <p>{error.message}</p>
            {error.status === 401 && (
              <form
                onSubmit={(e) => {
                  e.preventDefault();
                  const v = (e.currentTarget.elements.namedItem('key') as HTMLInputElement).value;
                  setApiKey(v);
                  setKey(v);
                }}
              >
                <input name="key" type="password" placeholder="API key" autocomplete="off" />
                <button type="submit">Use key</button>
              </form>
            )}
          </div>
        )}
        {info && mode === 'chat' && <Chat multimodal={info.multimodal} />}
        {info && mode === 'compare' && <Compare info={info} />}
        {info && mode === 'side-by-side' && <SideBySide multimodal={info.multimodal} />}
      </main>
    </>
  );
}
