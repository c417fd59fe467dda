/** The server's public HTTP API, as the page uses it. Errors carry the server's own wording. */

const KEY = 'switchyard-api-key';

export function apiKey(): string {
  return localStorage.getItem(KEY) ?? '';
}

export function setApiKey(key: string): void {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

/** An error the server answered (`{"error": {"message", "param"}}`), or a network failure. */
export class ServerError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (json) h['content-type'] = 'application/json';
  const key = apiKey();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function errorOf(res: Response): Promise<ServerError> {
  const raw = await res.text().catch(() => '');
  try {
    const e = JSON.parse(raw).error;
    if (e && typeof e.message === 'string') return new ServerError(e.message, res.status, e.param ?? null);
  } catch {}
  return new ServerError(raw.trim() || `HTTP ${res.status}`, res.status);
}

async function send(path: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers: headers(init.body !== undefined) });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ServerError(`cannot reach the server: ${(e as Error).message}`, 0);
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await send(path)).json() as Promise<T>;
}

export async function deleteJson<T>(path: string): Promise<T> {
  return (await send(path, { method: 'DELETE' })).json() as Promise<T>;
}

export async function getBlob(path: string): Promise<Blob> {
  return (await send(path)).blob();
}

/**
 * POSTs a JSON body and yields the `data:` payloads of the server-sent events it answers with,
 * parsed, until `[DONE]`. An `{"error": …}` payload is thrown as a ServerError.
 */
export async function* postEvents<T>(path: string, body: unknown, signal?: AbortSignal): AsyncGenerator<T> {
  const res = await send(path, { method: 'POST', body: JSON.stringify(body), signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    while (true) {
      const { value, done } = await reader.read();
      buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let end = buf.indexOf('\n\n');
      while (end >= 0) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = event
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(l[5] === ' ' ? 6 : 5))
          .join('\n');
        if (data === '[DONE]') return;
        if (data) {
          const payload = JSON.parse(data);
          if (payload?.error) throw new ServerError(payload.error.message ?? String(payload.error), 200);
          yield payload as T;
        }
        end = buf.indexOf('\n\n');
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

export interface Info {
  model: string;
  engine: {
    model: string;
    architecture: string;
    scheduler: string;
    attention: string;
    device: string;
    dtype: string;
    blockSize: number;
    kvCacheTokens: number;
    maxModelLen: number;
  };
  multimodal: boolean;
  schedulers: string[];
  attentions: string[];
  policies: string[];
  workloads: string[];
  served: Record<string, unknown>;
}

export interface Example {
  file: string;
  question?: string;
  answer?: string;
}

/** A file or blob as a data: URL (what the chat API takes for pictures). */
export function dataUrl(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result as string);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}
