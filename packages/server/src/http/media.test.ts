import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpError } from './errors.js';
import { classifyAddress, loadMedia, type MediaPolicy } from './media.js';

/** Awaits a promise that must fail with a 400 whose message matches `pattern`; answers the error. */
async function refused(promise: Promise<unknown>, pattern: RegExp, param = 'messages'): Promise<HttpError> {
  const e = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HttpError);
  const error = e as HttpError;
  expect(error.status).toBe(400);
  expect(error.param).toBe(param);
  expect(error.message).toMatch(pattern);
  return error;
}

const bytes = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const dataUrl = (b: Uint8Array, type = 'png') =>
  `data:image/${type};base64,${Buffer.from(b).toString('base64')}`;

describe('data: URLs', () => {
  const policy: MediaPolicy = { allowedDomains: [] };

  it('decodes a base64 image', async () => {
    const img = bytes(100);
    expect(await loadMedia(dataUrl(img), policy)).toEqual(img);
    expect(await loadMedia(dataUrl(bytes(1), 'jpeg'), policy)).toEqual(bytes(1));
    expect(await loadMedia(dataUrl(bytes(2), 'svg+xml'), policy)).toEqual(bytes(2));
    expect(await loadMedia('DATA:IMAGE/PNG;BASE64,AAAA', policy)).toEqual(new Uint8Array(3));
    expect(await loadMedia('data:image/png;name=x.png;base64,AAAA', policy)).toEqual(new Uint8Array(3));
  });

  it('returns a plain Uint8Array', async () => {
    const out = await loadMedia(dataUrl(bytes(5)), policy);
    expect(out).toBeInstanceOf(Uint8Array);
    expect(out.byteLength).toBe(5);
  });

  it('refuses an empty payload', async () => {
    await refused(loadMedia('data:image/png;base64,', policy), /empty payload/);
  });

  it('refuses invalid base64 characters, naming the first one and where it is', async () => {
    await refused(loadMedia('data:image/png;base64,AA!A', policy), /not valid base64: "!" at position 2/);
    await refused(loadMedia('data:image/png;base64,AA A', policy), /not valid base64: " " at position 2/);
    await refused(loadMedia('data:image/png;base64,AAAA\nAAAA', policy), /not valid base64/);
    await refused(loadMedia('data:image/png;base64,AA-_', policy), /URL-safe/);
    await refused(loadMedia('data:image/png;base64,%41AAA', policy), /not valid base64/);
  });

  it('refuses bad padding', async () => {
    await refused(loadMedia('data:image/png;base64,AAA', policy), /not a multiple of 4/);
    await refused(loadMedia('data:image/png;base64,AAAAA', policy), /not a multiple of 4/);
    await refused(loadMedia('data:image/png;base64,AA=', policy), /not a multiple of 4/);
    await refused(loadMedia('data:image/png;base64,A===', policy), /padding/);
    await refused(loadMedia('data:image/png;base64,====', policy), /padding/);
    await refused(loadMedia('data:image/png;base64,AA=A', policy), /padding in the wrong place/);
    await refused(loadMedia('data:image/png;base64,AA==AAAA', policy), /padding in the wrong place/);
  });

  it('accepts correct padding', async () => {
    expect(await loadMedia('data:image/png;base64,AA==', policy)).toEqual(new Uint8Array(1));
    expect(await loadMedia('data:image/png;base64,AAA=', policy)).toEqual(new Uint8Array(2));
  });

  it('refuses non-image media types and non-base64 encodings', async () => {
    await refused(loadMedia('data:text/plain;base64,AAAA', policy), /not an image type/);
    await refused(loadMedia('data:;base64,AAAA', policy), /not an image type/);
    await refused(loadMedia('data:image/png,AAAA', policy), /not base64-encoded/);
    await refused(loadMedia('data:image/png;utf8,AAAA', policy), /not base64-encoded/);
    await refused(loadMedia('data:image/png;base64', policy), /no comma/);
  });

  it('enforces maxBytes on the decoded size', async () => {
    const small: MediaPolicy = { allowedDomains: [], maxBytes: 3 };
    expect(await loadMedia('data:image/png;base64,AAAA', small)).toEqual(new Uint8Array(3));
    await refused(loadMedia('data:image/png;base64,AAAAAA==', small), /4 bytes, more than the 3-byte limit/);
    const large = `data:image/png;base64,${'A'.repeat(4 * 1024 * 1024)}`;
    await refused(loadMedia(large, { allowedDomains: [], maxBytes: 1024 }), /3145728 bytes/);
  });

  it('uses the given param name', async () => {
    await refused(
      loadMedia('data:image/png;base64,', policy, 'messages[0].content[1]'),
      /empty/,
      'messages[0].content[1]',
    );
  });
});

describe('unsupported sources', () => {
  const policy: MediaPolicy = { allowedDomains: ['images.test'], allowedLocalPath: tmpdir() };

  it('refuses empty and blank URLs', async () => {
    await refused(loadMedia('', policy), /empty/);
    await refused(loadMedia('   ', policy), /empty/);
  });

  it('refuses other schemes', async () => {
    await refused(loadMedia('ftp://images.test/cat.png', policy), /scheme "ftp:"/);
    await refused(loadMedia('javascript:alert(1)', policy), /scheme "javascript:"/);
    await refused(loadMedia('gopher://images.test/', policy), /scheme "gopher:"/);
    await refused(loadMedia('blob:https://images.test/uuid', policy), /scheme "blob:"/);
  });

  it('refuses relative paths and garbage', async () => {
    await refused(loadMedia('images/cat.png', policy), /neither a data: URL/);
    await refused(loadMedia('./cat.png', policy), /neither a data: URL/);
    await refused(loadMedia('../cat.png', policy), /neither a data: URL/);
    await refused(loadMedia('http://', policy), /neither a data: URL/);
  });

  it('refuses URLs with credentials', async () => {
    await refused(loadMedia('http://user:pw@images.test/cat.png', policy), /credentials/);
  });
});

describe('address classes', () => {
  const refusedAddresses: [string, RegExp][] = [
    ['127.0.0.1', /^loopback$/],
    ['127.255.255.254', /^loopback$/],
    ['::1', /^loopback$/],
    ['0:0:0:0:0:0:0:1', /^loopback$/],
    ['10.0.0.1', /^private$/],
    ['10.255.255.255', /^private$/],
    ['172.16.0.1', /^private$/],
    ['172.31.255.255', /^private$/],
    ['192.168.0.1', /^private$/],
    ['fc00::1', /private/],
    ['fdff:ffff::1', /private/],
    ['fec0::1', /private/],
    ['169.254.169.254', /^link-local$/],
    ['fe80::1', /^link-local$/],
    ['fe80::1%eth0', /^link-local$/],
    ['febf::1', /^link-local$/],
    ['0.0.0.0', /unspecified/],
    ['0.1.2.3', /unspecified/],
    ['::', /^unspecified$/],
    ['100.64.0.1', /carrier-grade NAT/],
    ['100.127.255.255', /carrier-grade NAT/],
    ['224.0.0.1', /^multicast$/],
    ['239.255.255.250', /^multicast$/],
    ['ff02::1', /^multicast$/],
    ['255.255.255.255', /broadcast/],
    ['::ffff:127.0.0.1', /^IPv4-mapped loopback$/],
    ['::ffff:7f00:1', /^IPv4-mapped loopback$/],
    ['0:0:0:0:0:ffff:7f00:1', /^IPv4-mapped loopback$/],
    ['::ffff:10.1.2.3', /^IPv4-mapped private$/],
    ['::ffff:172.16.0.1', /^IPv4-mapped private$/],
    ['::ffff:192.168.1.1', /^IPv4-mapped private$/],
    ['::ffff:169.254.169.254', /^IPv4-mapped link-local$/],
    ['::ffff:0.0.0.0', /^IPv4-mapped unspecified/],
    ['::ffff:100.64.0.1', /^IPv4-mapped carrier-grade NAT/],
    ['::ffff:224.0.0.1', /^IPv4-mapped multicast$/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['64:ff9b::7f00:1', /NAT64-embedded loopback/],
    ['64:ff9b::169.254.169.254', /NAT64-embedded link-local/],
    ['2002:a00:1::1', /6to4-embedded private/],
    ['not-an-ip', /not a valid IP address/],
    ['1.2.3', /not a valid IP address/],
  ];
  const publicAddresses = [
    '8.8.8.8',
    '1.1.1.1',
    '11.0.0.1',
    '172.15.255.255',
    '172.32.0.1',
    '192.167.255.255',
    '192.169.0.1',
    '100.63.255.255',
    '100.128.0.1',
    '169.253.255.255',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2001:4860:4860::8888',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
    'fbff::1',
    'fe7f::1',
  ];

  it.each(refusedAddresses)('classifies %s as refused', (address, what) => {
    expect(classifyAddress(address)).toMatch(what);
  });

  it.each(publicAddresses)('classifies %s as public', (address) => {
    expect(classifyAddress(address)).toBeUndefined();
  });

  it.each(refusedAddresses.filter(([a]) => isIP(a) !== 0))(
    'refuses a host that resolves to %s',
    async (address, what) => {
      const policy: MediaPolicy = {
        allowedDomains: ['images.test'],
        lookup: async () => [{ address, family: isIP(address) }],
      };
      const error = await refused(
        loadMedia('http://images.test/cat.png', policy),
        /may only be fetched from public/,
      );
      expect(error.message).toContain(`resolves to a ${classifyAddress(address)} address`);
      // The resolved address of an allow-listed host is never shown to the client.
      expect(error.message).not.toContain(address);
      expect(classifyAddress(address)).toMatch(what);
    },
  );

  it('refuses when ANY resolved address is refused', async () => {
    const policy: MediaPolicy = {
      allowedDomains: ['images.test'],
      lookup: async () => [
        { address: '8.8.8.8', family: 4 },
        { address: '2606:4700:4700::1111', family: 6 },
        { address: '10.0.0.7', family: 4 },
      ],
    };
    await refused(loadMedia('https://images.test/cat.png', policy), /resolves to a private address/);
  });

  it('refuses lookups that answer nothing or fail', async () => {
    await refused(
      loadMedia('http://images.test/cat.png', { allowedDomains: ['images.test'], lookup: async () => [] }),
      /resolved to no addresses/,
    );
    const failing = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    await refused(
      loadMedia('http://images.test/cat.png', { allowedDomains: ['images.test'], lookup: failing }),
      /could not be resolved \(ENOTFOUND\)/,
    );
    await refused(
      loadMedia('http://images.test/', {
        allowedDomains: ['images.test'],
        lookup: async () => [{ address: 'bogus', family: 4 }],
      }),
      /not a valid IP address/,
    );
  });

  it('refuses localhost through the real resolver', async () => {
    await refused(
      loadMedia('http://localhost/cat.png', { allowedDomains: ['localhost'] }),
      /a loopback address/,
    );
  });

  it('refuses literal IP hosts that are not allow-listed, and checks allow-listed ones like resolved ones', async () => {
    const none: MediaPolicy = { allowedDomains: ['images.test'] };
    await refused(
      loadMedia('http://127.0.0.1/cat.png', none),
      /"127\.0\.0\.1" is not in the server's allowed/,
    );
    await refused(loadMedia('http://8.8.8.8/cat.png', none), /"8\.8\.8\.8" is not in the server's allowed/);
    await refused(loadMedia('http://[::1]/cat.png', none), /"::1" is not in the server's allowed/);
    const listed: MediaPolicy = {
      allowedDomains: ['127.0.0.1', '[::1]', '10.0.0.1', '0:0:0:0:0:ffff:a9fe:a9fe', '0.0.0.0', '2130706433'],
      lookup: async () => {
        throw new Error('literal hosts must not be looked up');
      },
    };
    await refused(loadMedia('http://127.0.0.1/cat.png', listed), /a loopback address/);
    await refused(loadMedia('http://[::1]:8080/cat.png', listed), /a loopback address/);
    await refused(loadMedia('http://10.0.0.1/cat.png', listed), /a private address/);
    await refused(loadMedia('http://[::ffff:169.254.169.254]/', listed), /IPv4-mapped link-local/);
    await refused(loadMedia('http://0.0.0.0/', listed), /unspecified/);
    // Numeric spellings are normalized by the URL parser before any check.
    await refused(loadMedia('http://2130706433/', listed), /"127\.0\.0\.1" resolves to a loopback address/);
    await refused(loadMedia('http://0x7f.1/', listed), /"127\.0\.0\.1" resolves to a loopback address/);
  });
});

describe('the domain allow-list', () => {
  const lookup = async () => [{ address: '10.9.9.9', family: 4 }];
  // A private answer means the host got past the allow-list to the address check.
  const passes = /resolves to a private address/;
  const blocked = /is not in the server's allowed media domains/;

  it('is off when empty', async () => {
    await refused(
      loadMedia('https://images.test/cat.png', { allowedDomains: [] }),
      /disabled.*--allowed-media-domains/,
    );
  });

  it('matches exact hosts, case-insensitively, ignoring a trailing dot', async () => {
    const policy: MediaPolicy = { allowedDomains: ['images.test', 'CAPS.test'], lookup };
    await refused(loadMedia('https://images.test/cat.png', policy), passes);
    await refused(loadMedia('https://IMAGES.Test/cat.png', policy), passes);
    await refused(loadMedia('https://images.test./cat.png', policy), passes);
    await refused(loadMedia('https://caps.test/cat.png', policy), passes);
    await refused(loadMedia('https://sub.images.test/cat.png', policy), blocked);
    await refused(loadMedia('https://images.test.evil/cat.png', policy), blocked);
    await refused(loadMedia('https://evilimages.test/cat.png', policy), blocked);
  });

  it("allows subdomains (not the bare domain) with '*.'", async () => {
    const policy: MediaPolicy = { allowedDomains: ['*.cdn.test'], lookup };
    await refused(loadMedia('https://a.cdn.test/cat.png', policy), passes);
    await refused(loadMedia('https://a.b.cdn.test/cat.png', policy), passes);
    await refused(loadMedia('https://cdn.test/cat.png', policy), blocked);
    await refused(loadMedia('https://evilcdn.test/cat.png', policy), blocked);
    await refused(loadMedia('https://cdn.test.evil/cat.png', policy), blocked);
  });
});

// ---------------------------------------------------------------- fetching from a local server

const IMAGE = bytes(3000);
let server: Server;
let port = 0;
const sockets = new Set<Socket>();

function redirect(res: ServerResponse, location: string, status = 302) {
  res.writeHead(status, { location });
  res.end();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const at = (host: string, path: string) => `http://${host}:${port}${path}`;
    const chain = /^\/chain\/(\d+)$/.exec(url.pathname);
    if (chain) {
      const n = Number(chain[1]);
      if (n === 0) redirect(res, '/img');
      else redirect(res, `/chain/${n - 1}`, [301, 302, 303, 307, 308][n % 5]);
      return;
    }
    switch (url.pathname) {
      case '/img':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': IMAGE.length });
        res.end(IMAGE);
        return;
      case '/host':
        res.end(req.headers.host);
        return;
      case '/redirect':
        return redirect(res, '/img');
      case '/redirect-absolute':
        return redirect(res, at('images.test', '/img'), 307);
      case '/to-cdn':
        return redirect(res, at('a.cdn.test', '/img'), 301);
      case '/to-evil':
        return redirect(res, at('evil.test', '/img'));
      case '/to-loopback':
        return redirect(res, at('loopback.test', '/img'));
      case '/to-localhost':
        return redirect(res, at('localhost', '/img'));
      case '/to-private':
        return redirect(res, at('intranet.test', '/img'));
      case '/to-literal':
        return redirect(res, at('127.0.0.1', '/img'));
      case '/to-file':
        return redirect(res, 'file:///etc/passwd');
      case '/to-data':
        return redirect(res, 'data:image/png;base64,AAAA');
      case '/to-ftp':
        return redirect(res, `ftp://images.test:${port}/img`);
      case '/to-garbage':
        return redirect(res, 'http://[not-an-ip/');
      case '/no-location':
        res.writeHead(302);
        res.end();
        return;
      case '/missing':
        res.writeHead(404);
        res.end('nope');
        return;
      case '/error':
        res.writeHead(503);
        res.end();
        return;
      case '/big':
        res.writeHead(200, { 'content-length': 5000 });
        res.end(Buffer.alloc(5000));
        return;
      case '/big-chunked': {
        res.writeHead(200, { 'content-type': 'image/png' });
        let sent = 0;
        const more = () => {
          if (res.destroyed || sent >= 100) return void res.end();
          sent++;
          res.write(Buffer.alloc(1000), () => setImmediate(more));
        };
        more();
        return;
      }
      case '/hang':
        return; // never answers
      case '/slow-body':
        res.writeHead(200, { 'content-length': 1000 });
        res.write(Buffer.alloc(10)); // ... and never the rest
        return;
      case '/cut':
        res.writeHead(200, { 'content-length': 1000 });
        res.write(Buffer.alloc(10), () => res.socket?.destroy());
        return;
      default:
        res.writeHead(500);
        res.end();
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((done) => server.close(done));
});

const NAMES: Record<string, string[]> = {
  'images.test': ['127.0.0.1'],
  'a.cdn.test': ['127.0.0.1'],
  'evil.test': ['127.0.0.1'],
  'loopback.test': ['127.0.0.1', '::1'],
  localhost: ['127.0.0.2'],
  'intranet.test': ['10.0.0.5'],
};
const lookups: string[] = [];
async function testLookup(host: string) {
  lookups.push(host);
  const addresses = NAMES[host];
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return addresses.map((address) => ({ address, family: isIP(address) }));
}

const served = (over: Partial<MediaPolicy> = {}): MediaPolicy => ({
  allowedDomains: ['images.test', '*.cdn.test', 'loopback.test', 'localhost', 'intranet.test'],
  lookup: testLookup,
  allowPrivateAddressesForTests: true,
  timeoutMs: 1000,
  ...over,
});
const at = (path: string, host = 'images.test') => `http://${host}:${port}${path}`;

describe('fetching over http', () => {
  it('refuses the loopback test server without the test-only escape', async () => {
    await refused(
      loadMedia(at('/img'), served({ allowPrivateAddressesForTests: false })),
      /"images\.test" resolves to a loopback address/,
    );
  });

  it('the test-only escape lets only 127.0.0.1 through', async () => {
    const only = (address: string) => served({ lookup: async () => [{ address, family: isIP(address) }] });
    await refused(loadMedia(at('/img'), only('127.0.0.2')), /loopback/);
    await refused(loadMedia(at('/img'), only('::1')), /loopback/);
    await refused(loadMedia(at('/img'), only('::ffff:127.0.0.1')), /IPv4-mapped loopback/);
    await refused(loadMedia(at('/img'), only('192.168.0.1')), /private/);
  });

  it('fetches an image from an allow-listed host, connecting to the checked address', async () => {
    lookups.length = 0;
    expect(await loadMedia(at('/img'), served())).toEqual(IMAGE);
    // Resolved once, through the policy; 'images.test' does not exist in real DNS, so the connection
    // can only have gone to the pinned address.
    expect(lookups).toEqual(['images.test']);
    const host = new TextDecoder().decode(await loadMedia(at('/host'), served()));
    expect(host).toBe(`images.test:${port}`);
  });

  it('follows redirects, re-checking every hop', async () => {
    lookups.length = 0;
    expect(await loadMedia(at('/redirect'), served())).toEqual(IMAGE);
    expect(lookups).toEqual(['images.test', 'images.test']);
    expect(await loadMedia(at('/redirect-absolute'), served())).toEqual(IMAGE);
    lookups.length = 0;
    expect(await loadMedia(at('/to-cdn'), served())).toEqual(IMAGE);
    expect(lookups).toEqual(['images.test', 'a.cdn.test']);
  });

  it('follows at most 3 redirects', async () => {
    expect(await loadMedia(at('/chain/2'), served())).toEqual(IMAGE); // 3 redirects in all
    await refused(loadMedia(at('/chain/3'), served()), /redirected more than 3 times/);
    await refused(loadMedia(at('/chain/10'), served()), /redirected more than 3 times/);
  });

  it('refuses a redirect to a domain that is not allow-listed', async () => {
    lookups.length = 0;
    await refused(
      loadMedia(at('/to-evil'), served()),
      /"evil\.test" is not in the server's allowed media domains/,
    );
    expect(lookups).toEqual(['images.test']);
  });

  it('refuses a redirect to a loopback name', async () => {
    await refused(loadMedia(at('/to-loopback'), served()), /"loopback\.test" resolves to a loopback address/);
    await refused(loadMedia(at('/to-localhost'), served()), /"localhost" resolves to a loopback address/);
  });

  it('refuses a redirect to a private name, or to a literal IP that is not allow-listed', async () => {
    await refused(loadMedia(at('/to-private'), served()), /"intranet\.test" resolves to a private address/);
    await refused(loadMedia(at('/to-literal'), served()), /"127\.0\.0\.1" is not in the server's allowed/);
  });

  it('refuses redirects to other schemes and to invalid URLs', async () => {
    await refused(
      loadMedia(at('/to-file'), served({ allowedLocalPath: '/' })),
      /must use http or https, not file:/,
    );
    await refused(loadMedia(at('/to-data'), served()), /must use http or https, not data:/);
    await refused(loadMedia(at('/to-ftp'), served()), /must use http or https, not ftp:/);
    await refused(loadMedia(at('/to-garbage'), served()), /redirected to an invalid URL/);
  });

  it('answers non-2xx statuses with a 400 naming the status', async () => {
    await refused(loadMedia(at('/missing'), served()), /answered HTTP 404 Not Found/);
    await refused(loadMedia(at('/error'), served()), /answered HTTP 503/);
    await refused(
      loadMedia(at('/no-location'), served()),
      /answered HTTP 302 Found without a Location header/,
    );
  });

  it('enforces maxBytes from Content-Length and while streaming', async () => {
    expect(await loadMedia(at('/img'), served({ maxBytes: IMAGE.length }))).toEqual(IMAGE);
    await refused(
      loadMedia(at('/img'), served({ maxBytes: IMAGE.length - 1 })),
      /3000 bytes, more than the 2999-byte/,
    );
    await refused(
      loadMedia(at('/big'), served({ maxBytes: 4096 })),
      /5000 bytes, more than the 4096-byte limit/,
    );
    const started = Date.now();
    await refused(
      loadMedia(at('/big-chunked'), served({ maxBytes: 4096 })),
      /over 4096 bytes, more than the 4096-byte/,
    );
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('times out a server that never answers, or stalls mid-body', async () => {
    let started = Date.now();
    await refused(loadMedia(at('/hang'), served({ timeoutMs: 150 })), /took longer than 150 ms/);
    expect(Date.now() - started).toBeLessThan(1000);
    started = Date.now();
    await refused(loadMedia(at('/slow-body'), served({ timeoutMs: 150 })), /took longer than 150 ms/);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('times out a lookup that never answers', async () => {
    const started = Date.now();
    const never = () => new Promise<{ address: string; family: number }[]>(() => {});
    await refused(
      loadMedia(at('/img'), served({ lookup: never, timeoutMs: 100 })),
      /took longer than 100 ms/,
    );
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('refuses a body cut short', async () => {
    await refused(loadMedia(at('/cut'), served()), /closed before|failed/);
  });

  it('reports a connection failure', async () => {
    const closed = await new Promise<number>((done) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const p = (probe.address() as AddressInfo).port;
        probe.close(() => done(p));
      });
    });
    const error = await refused(
      loadMedia(`http://images.test:${closed}/img`, served()),
      /failed: .*ECONNREFUSED/,
    );
    // Node's message names the peer (connect ECONNREFUSED 127.0.0.1:port); the client's does not.
    expect(error.message).not.toContain('127.0.0.1');
  });

  it('stops a fetch when the request is aborted (the client went away)', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = loadMedia(at('/slow-body'), served({ timeoutMs: 10_000 }), 'messages', controller.signal);
    setTimeout(() => controller.abort(new Error('client gone')), 50);
    await expect(pending).rejects.toThrow('client gone');
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

// ---------------------------------------------------------------- local files

describe('local files', () => {
  let base: string;
  let root: string;
  const LOCAL = bytes(500, 3);
  const SECRET = bytes(50, 99);

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'switchyard-media-'));
    root = join(base, 'root');
    await mkdir(join(root, 'sub'), { recursive: true });
    await mkdir(join(base, 'outside'));
    await writeFile(join(root, 'cat.png'), LOCAL);
    await writeFile(join(root, 'sub', 'dog.png'), LOCAL);
    await writeFile(join(root, 'big.png'), Buffer.alloc(2000));
    await writeFile(join(base, 'secret.png'), SECRET);
    await writeFile(join(base, 'outside', 'secret.png'), SECRET);
    await writeFile(join(base, 'root-sibling.png'), SECRET);
    await symlink(join(base, 'secret.png'), join(root, 'link.png'));
    await symlink('../outside', join(root, 'dirlink'));
    await symlink('cat.png', join(root, 'inner-link.png'));
    await symlink(root, join(base, 'root-link'));
  });

  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  const policy = (over: Partial<MediaPolicy> = {}): MediaPolicy => ({
    allowedDomains: [],
    allowedLocalPath: root,
    ...over,
  });

  it('reads absolute paths and file:// URLs under the allowed folder', async () => {
    expect(await loadMedia(join(root, 'cat.png'), policy())).toEqual(LOCAL);
    expect(await loadMedia(join(root, 'sub', 'dog.png'), policy())).toEqual(LOCAL);
    expect(await loadMedia(pathToFileURL(join(root, 'cat.png')).href, policy())).toEqual(LOCAL);
    expect(await loadMedia(`${root}/sub/../cat.png`, policy())).toEqual(LOCAL);
    expect(await loadMedia(join(root, 'inner-link.png'), policy())).toEqual(LOCAL);
  });

  it('works when the allowed folder is itself reached through a symlink', async () => {
    const viaLink = policy({ allowedLocalPath: join(base, 'root-link') });
    expect(await loadMedia(join(base, 'root-link', 'cat.png'), viaLink)).toEqual(LOCAL);
    expect(await loadMedia(join(root, 'cat.png'), viaLink)).toEqual(LOCAL);
    await refused(loadMedia(join(base, 'root-link', 'link.png'), viaLink), /outside/);
  });

  it('is off when no folder is allowed', async () => {
    await refused(
      loadMedia(join(root, 'cat.png'), policy({ allowedLocalPath: undefined })),
      /disabled.*--allowed-local-media-path/,
    );
    await refused(
      loadMedia(pathToFileURL(join(root, 'cat.png')).href, policy({ allowedLocalPath: undefined })),
      /disabled/,
    );
  });

  it('refuses escapes through ..', async () => {
    await refused(
      loadMedia(`${root}/../secret.png`, policy()),
      /outside the server's allowed local media folder/,
    );
    await refused(loadMedia(`${root}/sub/../../secret.png`, policy()), /outside/);
    await refused(loadMedia(`file://${root}/../secret.png`, policy()), /outside/);
    await refused(loadMedia(`file://${root}/%2E%2E/secret.png`, policy()), /outside/);
    await refused(loadMedia(join(base, 'root-sibling.png'), policy()), /outside/);
    await refused(loadMedia('/etc/passwd', policy()), /outside/);
  });

  it('refuses escapes through symlinks', async () => {
    await refused(loadMedia(join(root, 'link.png'), policy()), /outside/);
    await refused(loadMedia(join(root, 'dirlink', 'secret.png'), policy()), /outside/);
    await refused(loadMedia(pathToFileURL(join(root, 'link.png')).href, policy()), /outside/);
  });

  it('does not reveal whether files outside the folder exist', async () => {
    await refused(loadMedia(join(base, 'no-such.png'), policy()), /outside/);
  });

  it('refuses missing files, folders, and oversized files', async () => {
    await refused(loadMedia(join(root, 'missing.png'), policy()), /does not exist/);
    await refused(loadMedia(join(root, 'missing', 'x.png'), policy()), /does not exist/);
    await refused(loadMedia(join(root, 'cat.png', 'x.png'), policy()), /does not exist/);
    await refused(loadMedia(join(root, 'sub'), policy()), /not a regular file/);
    await refused(loadMedia(root, policy()), /not a regular file/);
    await refused(
      loadMedia(join(root, 'big.png'), policy({ maxBytes: 1999 })),
      /2000 bytes, more than the 1999-byte/,
    );
    expect(await loadMedia(join(root, 'big.png'), policy({ maxBytes: 2000 }))).toEqual(new Uint8Array(2000));
  });

  it('refuses a FIFO without opening it, so no libuv thread blocks on it', async () => {
    const fifo = join(root, 'pipe.png');
    execFileSync('mkfifo', [fifo]);
    try {
      // Four of these used to fill libuv's thread pool, each blocked in open() waiting for a writer.
      const started = Date.now();
      await Promise.all(
        Array.from({ length: 6 }, () => refused(loadMedia(fifo, policy()), /not a regular file/)),
      );
      // The pool is free: a regular file still reads at once.
      expect(await loadMedia(join(root, 'cat.png'), policy())).toEqual(LOCAL);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await rm(fifo);
    }
  });

  it('refuses file URLs with a remote host, and an unreadable allowed folder', async () => {
    await refused(loadMedia('file://evil.test/etc/passwd', policy()), /cannot be read as a local path/);
    await refused(
      loadMedia(join(root, 'cat.png'), policy({ allowedLocalPath: join(base, 'no-such-folder') })),
      /allowed local media folder cannot be read/,
    );
  });
});
