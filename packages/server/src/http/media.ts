import { lookup as dnsLookup } from 'node:dns/promises';
import { constants as fsConstants } from 'node:fs';
import { open, realpath, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { domainToASCII, fileURLToPath } from 'node:url';
import { decodeDataUrl } from '@switchyard/core';
import { badRequest, HttpError, toHttpError } from './errors.js';

/** Where images named in requests may come from, and how large they may be. */
export interface MediaPolicy {
  /**
   * Hostnames (exact, lower-case; a leading '*.' allows subdomains, not the bare domain) from which
   * http(s) images may be fetched. A literal IP host must be listed itself. Empty: none.
   */
  allowedDomains: string[];
  /** A folder under which local files may be read (file:// URLs or plain absolute paths); undefined: none. */
  allowedLocalPath?: string;
  /** Largest image in bytes (default 20 MiB). */
  maxBytes?: number;
  /** Fetch timeout ms, for the whole fetch including lookups and redirects (default 10 s). */
  timeoutMs?: number;
  /** For tests only: resolve hostnames (default node:dns/promises lookup with {all:true}). */
  lookup?: (host: string) => Promise<{ address: string; family: number }[]>;
  /**
   * For tests only, never set it in a server: lets the one address 127.0.0.1 through the address check,
   * so a local test server can stand in for an allow-listed host. Every other refused address (the rest
   * of 127/8, ::1, private, link-local, ...) stays refused, so refusals can still be tested around it.
   */
  allowPrivateAddressesForTests?: boolean;
}

export const DEFAULT_MAX_MEDIA_BYTES = 20 * 1024 * 1024;
export const DEFAULT_MEDIA_TIMEOUT_MS = 10_000;
/** Redirects followed per fetch; one more is refused. */
export const MAX_MEDIA_REDIRECTS = 3;

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Loads the bytes of an image given as a data: URL, an http(s) URL or a local path, enforcing the policy.
 * Throws HttpError 400 naming what is wrong and what to do; aborting `signal` (the client went away)
 * stops a fetch or a read where it is and rejects with the signal's reason.
 */
export async function loadMedia(
  url: string,
  policy: MediaPolicy,
  param = 'messages',
  signal?: AbortSignal,
): Promise<Uint8Array> {
  signal?.throwIfAborted();
  if (typeof url !== 'string' || url.trim() === '') {
    throw badRequest(
      'the image URL is empty; send a data: URL, an http(s) URL or an absolute file path',
      param,
    );
  }
  const maxBytes = policy.maxBytes ?? DEFAULT_MAX_MEDIA_BYTES;
  if (/^data:/i.test(url)) {
    try {
      return decodeDataUrl(url, { maxBytes, param });
    } catch (e) {
      throw toHttpError(e);
    }
  }
  if (isAbsolute(url)) return readLocal(url, policy, maxBytes, param, signal);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badRequest(
      `the image URL ${show(url)} is neither a data: URL, an http(s) URL nor an absolute file path; ` +
        'send the image as data:image/<type>;base64,<payload> or as a full URL',
      param,
    );
  }
  switch (parsed.protocol) {
    case 'http:':
    case 'https:':
      return fetchRemote(parsed, policy, maxBytes, param, signal);
    case 'file:': {
      let path: string;
      try {
        path = fileURLToPath(parsed);
      } catch (e) {
        throw badRequest(
          `the file URL ${show(url)} cannot be read as a local path (${(e as Error).message}); use file:///absolute/path`,
          param,
        );
      }
      return readLocal(path, policy, maxBytes, param, signal);
    }
    default:
      throw badRequest(
        `image URLs with the scheme "${parsed.protocol}" are not supported; use a data: URL, an http(s) URL or a local file path`,
        param,
      );
  }
}

/** A URL or path as shown in an error message: quoted, and cut short when long. */
function show(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);
}

const tooLarge = (size: number | string, maxBytes: number, param: string) =>
  badRequest(`the image is ${size} bytes, more than the ${maxBytes}-byte limit; send a smaller image`, param);

// ---------------------------------------------------------------- addresses

function parseIPv4(s: string): number | undefined {
  if (isIP(s) !== 4) return undefined;
  return s.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function parseIPv6(input: string): number[] | undefined {
  let s = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (isIP(s) !== 6) return undefined;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [Math.floor(v4 / 65536), v4 % 65536];
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string) =>
    part === ''
      ? []
      : part.split(':').map((h) => (/^[0-9a-f]{1,4}$/i.test(h) ? Number.parseInt(h, 16) : Number.NaN));
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  if ([...head, ...rest].some(Number.isNaN)) return undefined;
  const given = head.length + rest.length + tail.length;
  if (halves.length === 2) {
    return given > 7 ? undefined : [...head, ...new Array<number>(8 - given).fill(0), ...rest, ...tail];
  }
  return given === 8 ? [...head, ...tail] : undefined;
}

const V4_REFUSED: [base: string, bits: number, what: string][] = [
  ['0.0.0.0', 8, 'unspecified ("this network")'],
  ['127.0.0.0', 8, 'loopback'],
  ['10.0.0.0', 8, 'private'],
  ['172.16.0.0', 12, 'private'],
  ['192.168.0.0', 16, 'private'],
  ['169.254.0.0', 16, 'link-local'],
  ['100.64.0.0', 10, 'carrier-grade NAT (shared)'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved or broadcast'],
];

function classifyV4(n: number): string | undefined {
  for (const [base, bits, what] of V4_REFUSED) {
    const size = 2 ** (32 - bits);
    if (Math.floor(n / size) === Math.floor(parseIPv4(base)! / size)) return what;
  }
  return undefined;
}

function classifyV6(h: number[]): string | undefined {
  const zeros = (from: number, to: number) => h.slice(from, to).every((g) => g === 0);
  const embedded = (hi: number, lo: number) => classifyV4(hi * 65536 + lo);
  if (zeros(0, 8)) return 'unspecified';
  if (zeros(0, 7) && h[7] === 1) return 'loopback';
  if (zeros(0, 5) && h[5] === 0xffff) {
    const what = embedded(h[6], h[7]);
    return what && `IPv4-mapped ${what}`;
  }
  if (zeros(0, 6)) return 'reserved (IPv4-compatible)';
  if (h[0] === 0x64 && h[1] === 0xff9b && zeros(2, 6)) {
    const what = embedded(h[6], h[7]);
    return what && `NAT64-embedded ${what}`;
  }
  if (h[0] === 0x2002) {
    const what = embedded(h[1], h[2]);
    return what && `6to4-embedded ${what}`;
  }
  if ((h[0] & 0xfe00) === 0xfc00) return 'private (unique local)';
  if ((h[0] & 0xffc0) === 0xfe80) return 'link-local';
  if ((h[0] & 0xffc0) === 0xfec0) return 'private (site-local)';
  if ((h[0] & 0xff00) === 0xff00) return 'multicast';
  return undefined;
}

/**
 * Why an image may not be fetched from this IP address ('loopback', 'private', 'link-local', ...),
 * or undefined for a public address.
 */
export function classifyAddress(address: string): string | undefined {
  const v4 = parseIPv4(address);
  if (v4 !== undefined) return classifyV4(v4);
  const v6 = parseIPv6(address);
  if (v6 !== undefined) return classifyV6(v6);
  return 'not a valid IP address';
}

// ---------------------------------------------------------------- http(s)

/** The host of a URL without IPv6 brackets or a trailing dot. */
const bareHost = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');

function normalizeEntry(entry: string): string {
  const e = entry
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
  if (isIP(e) === 6) return new URL(`http://[${e}]/`).hostname.slice(1, -1);
  if (isIP(e) === 4) return e;
  const wildcard = e.startsWith('*.');
  const name = wildcard ? e.slice(2) : e;
  const ascii = domainToASCII(name) || name;
  return wildcard ? `*.${ascii}` : ascii;
}

function hostAllowed(host: string, allowed: string[]): boolean {
  const literal = isIP(host) !== 0;
  return allowed.some((entry) => {
    const e = normalizeEntry(entry);
    if (e.startsWith('*.')) return !literal && host.endsWith(e.slice(1)) && host.length > e.length - 1;
    return host === e;
  });
}

interface Address {
  address: string;
  family: number;
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(signal.reason);
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/** Checks a URL's scheme, host and every address it resolves to; answers the addresses to connect to. */
async function checkTarget(
  url: URL,
  policy: MediaPolicy,
  signal: AbortSignal,
  param: string,
): Promise<Address[]> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badRequest(`the image URL ${show(url.href)} must use http or https, not ${url.protocol}`, param);
  }
  if (url.username || url.password) {
    throw badRequest(
      `the image URL ${show(url.href)} carries credentials; image URLs may not contain user:password@`,
      param,
    );
  }
  const host = bareHost(url);
  if (policy.allowedDomains.length === 0) {
    throw badRequest(
      `fetching images from URLs is disabled on this server (${show(url.href)}); send the image inline as a ` +
        'data: URL, or ask the operator to allow its domain with --allowed-media-domains',
      param,
    );
  }
  if (!hostAllowed(host, policy.allowedDomains)) {
    throw badRequest(
      `the image host "${host}" is not in the server's allowed media domains; send the image inline as a ` +
        'data: URL, or ask the operator to add the domain to --allowed-media-domains',
      param,
    );
  }
  let addresses: Address[];
  if (isIP(host) !== 0) {
    addresses = [{ address: host, family: isIP(host) }];
  } else {
    const lookup = policy.lookup ?? ((h: string) => dnsLookup(h, { all: true, verbatim: true }));
    try {
      addresses = await Promise.race([lookup(host), rejectOnAbort(signal)]);
    } catch (e) {
      if (e instanceof HttpError) throw e;
      const code = (e as { code?: string }).code ?? (e as Error).message;
      throw badRequest(
        `the image host "${host}" could not be resolved (${code}); check the image URL`,
        param,
      );
    }
    if (addresses.length === 0) {
      throw badRequest(`the image host "${host}" resolved to no addresses; check the image URL`, param);
    }
  }
  const checked: Address[] = [];
  for (const { address } of addresses) {
    const family = isIP(address);
    const pinnedTestServer = policy.allowPrivateAddressesForTests === true && address === '127.0.0.1';
    const why =
      family === 0 ? 'not a valid IP address' : pinnedTestServer ? undefined : classifyAddress(address);
    if (why) {
      // The address itself is not shown: it would map the operator's network for the client.
      throw badRequest(
        `the image host "${host}" resolves to a ${why} address; images may only be fetched ` +
          'from public addresses, so send this image inline as a data: URL',
        param,
      );
    }
    checked.push({ address, family });
  }
  return checked;
}

/** A lookup that answers only the checked addresses, so the connection can't be re-resolved elsewhere. */
function pinnedLookup(addresses: Address[]): LookupFunction {
  return (_hostname, options, callback) => {
    const family = options.family;
    const wanted = family === 4 || family === 'IPv4' ? 4 : family === 6 || family === 'IPv6' ? 6 : 0;
    const usable = addresses.filter((a) => wanted === 0 || a.family === wanted);
    const list = usable.length > 0 ? usable : addresses;
    if (options.all) callback(null, list);
    else callback(null, list[0].address, list[0].family);
  };
}

/**
 * Why a connection failed, without the peer's address (Node's messages carry `connect ECONNREFUSED
 * 10.1.2.3:80`): the error code alone, or the message with every IP address masked.
 */
function reason(e: Error): string {
  const code = (e as { code?: string }).code;
  if (code) return code;
  return e.message
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b/g, '<address>')
    .replace(/\[?[0-9a-f]*:[0-9a-f:]+:[0-9a-f.]*\]?(:\d+)?/gi, '<address>');
}

type Hop = { kind: 'redirect'; location: string } | { kind: 'body'; bytes: Uint8Array };

function fetchOnce(
  url: URL,
  addresses: Address[],
  signal: AbortSignal,
  maxBytes: number,
  param: string,
): Promise<Hop> {
  return new Promise<Hop>((resolvePromise, rejectPromise) => {
    let settled = false;
    let response: IncomingMessage | undefined;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      fn();
      request.destroy();
      response?.destroy();
    };
    const fail = (e: unknown) => finish(() => rejectPromise(e));
    const onAbort = () => fail(signal.reason);
    const where = show(url.href);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const host = bareHost(url);
    const request = send(
      {
        protocol: url.protocol,
        hostname: host,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { accept: 'image/*', 'accept-encoding': 'identity', 'user-agent': 'switchyard' },
        agent: false,
        lookup: pinnedLookup(addresses),
      },
      (res) => {
        response = res;
        res.on('error', (e) => fail(badRequest(`fetching the image ${where} failed: ${reason(e)}`, param)));
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (REDIRECT_STATUSES.has(status) && location) {
          finish(() => resolvePromise({ kind: 'redirect', location }));
          return;
        }
        if (status < 200 || status > 299) {
          fail(
            badRequest(
              `fetching the image ${where} answered HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}` +
                `${REDIRECT_STATUSES.has(status) ? ' without a Location header' : ''}; check that the URL is right and public`,
              param,
            ),
          );
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBytes) {
          fail(tooLarge(declared, maxBytes, param));
          return;
        }
        const chunks: Buffer[] = [];
        let total = 0;
        res.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (total > maxBytes) fail(tooLarge(`over ${maxBytes}`, maxBytes, param));
          else chunks.push(chunk);
        });
        res.on('end', () => {
          const bytes = Buffer.concat(chunks, total);
          finish(() =>
            resolvePromise({
              kind: 'body',
              bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
            }),
          );
        });
        res.on('close', () => {
          if (!res.complete)
            fail(badRequest(`the connection closed before the image ${where} was fully sent`, param));
        });
      },
    );
    request.on('error', (e) => fail(badRequest(`fetching the image ${where} failed: ${reason(e)}`, param)));
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    request.end();
  });
}

async function fetchRemote(
  start: URL,
  policy: MediaPolicy,
  maxBytes: number,
  param: string,
  outer?: AbortSignal,
): Promise<Uint8Array> {
  const timeoutMs = policy.timeoutMs ?? DEFAULT_MEDIA_TIMEOUT_MS;
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(outer?.reason);
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  const timer = setTimeout(
    () =>
      controller.abort(
        badRequest(
          `fetching the image ${show(start.href)} took longer than ${timeoutMs} ms; use a faster host or send the image inline as a data: URL`,
          param,
        ),
      ),
    timeoutMs,
  );
  try {
    let url = start;
    for (let redirects = 0; ; redirects++) {
      const addresses = await checkTarget(url, policy, controller.signal, param);
      const hop = await fetchOnce(url, addresses, controller.signal, maxBytes, param);
      if (hop.kind === 'body') return hop.bytes;
      if (redirects >= MAX_MEDIA_REDIRECTS) {
        throw badRequest(
          `fetching the image ${show(start.href)} redirected more than ${MAX_MEDIA_REDIRECTS} times; use the image's final URL`,
          param,
        );
      }
      try {
        url = new URL(hop.location, url);
      } catch {
        throw badRequest(
          `fetching the image ${show(url.href)} redirected to an invalid URL ${show(hop.location)}`,
          param,
        );
      }
    }
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onOuterAbort);
  }
}

// ---------------------------------------------------------------- local files

/** Whether `target` is `root` or lies under it (both absolute and normalized). */
function within(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

async function readLocal(
  path: string,
  policy: MediaPolicy,
  maxBytes: number,
  param: string,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  if (policy.allowedLocalPath === undefined) {
    throw badRequest(
      'reading local image files is disabled on this server; send the image inline as a data: URL, ' +
        'or ask the operator to allow a folder with --allowed-local-media-path',
      param,
    );
  }
  const outside = () =>
    badRequest(
      `the image path ${show(path)} is outside the server's allowed local media folder; ` +
        'use a file inside that folder or send the image inline as a data: URL',
      param,
    );
  if (path.includes('\0')) throw badRequest(`the image path ${show(path)} contains a NUL character`, param);
  const configuredRoot = resolve(policy.allowedLocalPath);
  let root: string;
  try {
    root = await realpath(configuredRoot);
  } catch {
    throw badRequest(
      'local image files are unavailable: the allowed local media folder cannot be read; send the image inline as a data: URL',
      param,
    );
  }
  const lexical = resolve(path);
  if (!within(configuredRoot, lexical) && !within(root, lexical)) throw outside();
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw badRequest(`the image file ${show(path)} does not exist; check the path`, param);
    }
    throw badRequest(`the image file ${show(path)} cannot be read (${code ?? (e as Error).message})`, param);
  }
  if (!within(root, real)) throw outside();
  // A FIFO, socket or device would block a libuv thread in open() or read() until a writer comes:
  // refuse anything but a regular file before opening it, and open without blocking in case the
  // path was swapped for one in between (the stat after opening catches that).
  const notRegular = () => badRequest(`the image path ${show(path)} is not a regular file`, param);
  try {
    if (!(await stat(real)).isFile()) throw notRegular();
  } catch (e) {
    if (e instanceof HttpError) throw e;
    const code = (e as { code?: string }).code;
    throw badRequest(`the image file ${show(path)} cannot be read (${code ?? (e as Error).message})`, param);
  }
  signal?.throwIfAborted();
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(
      real,
      fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0),
    );
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw badRequest(`the image file ${show(path)} cannot be read (${code ?? (e as Error).message})`, param);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw notRegular();
    if (info.size > maxBytes) throw tooLarge(info.size, maxBytes, param);
    // Read at most one byte past the limit, in case the file grew since it was measured.
    const buffer = Buffer.alloc(Math.min(info.size, maxBytes) + 1);
    let length = 0;
    while (length < buffer.length) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw tooLarge(`over ${maxBytes}`, maxBytes, param);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
  } catch (e) {
    if (e instanceof HttpError || signal?.aborted) throw e;
    const code = (e as { code?: string }).code;
    throw badRequest(`the image file ${show(path)} cannot be read (${code ?? (e as Error).message})`, param);
  } finally {
    await handle.close();
  }
}
