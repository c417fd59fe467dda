import { SwitchyardError } from '../errors.js';

const BASE64_BODY = /^[A-Za-z0-9+/]*$/;

/** A data URL as shown in an error message: quoted, and cut short when long. */
function show(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);
}

/**
 * The bytes of an image `data:` URL (`data:image/<type>;base64,<payload>`): an image media type,
 * base64 only, standard alphabet, '=' padding only at the end, length a multiple of 4, at most
 * `maxBytes` decoded. The one data-URL decoder: the engine and the server both use it. Errors are
 * `invalid_request` SwitchyardErrors naming `param` and what to send instead.
 */
export function decodeDataUrl(
  url: string,
  { maxBytes = Number.POSITIVE_INFINITY, param = 'image' }: { maxBytes?: number; param?: string } = {},
): Uint8Array {
  const bad = (message: string) => new SwitchyardError(message, 'invalid_request', param);
  const comma = url.indexOf(',');
  if (comma < 0) {
    throw bad('the image data URL has no comma; use data:image/<type>;base64,<payload>');
  }
  const header = url.slice(5, comma).split(';');
  const mediaType = header[0].trim().toLowerCase();
  if (!/^image\/[a-z0-9][a-z0-9.+-]*$/.test(mediaType)) {
    throw bad(
      `the data URL's media type ${show(header[0])} is not an image type; use data:image/<type>;base64,<payload>`,
    );
  }
  if (header[header.length - 1].trim().toLowerCase() !== 'base64' || header.length < 2) {
    throw bad('the image data URL is not base64-encoded; use data:image/<type>;base64,<payload>');
  }
  const payload = url.slice(comma + 1);
  if (payload === '') throw bad('the image data URL has an empty payload; include the base64 image bytes');
  const padStart = payload.indexOf('=');
  const body = padStart < 0 ? payload : payload.slice(0, padStart);
  const padding = payload.length - body.length;
  if (!BASE64_BODY.test(body)) {
    const at = body.search(/[^A-Za-z0-9+/]/);
    throw bad(
      `the image data URL's payload is not valid base64: ${JSON.stringify(body[at])} at position ${at}; ` +
        'use standard base64 (A-Z, a-z, 0-9, +, /) with no spaces, line breaks or URL-safe characters',
    );
  }
  if (padding > 2 || !/^=*$/.test(payload.slice(padStart < 0 ? payload.length : padStart))) {
    throw bad("the image data URL's base64 payload has '=' padding in the wrong place; '=' may only end it");
  }
  if (payload.length % 4 !== 0) {
    throw bad(
      `the image data URL's base64 payload is ${payload.length} characters long, not a multiple of 4; ` +
        "pad it with '=' to a multiple of 4",
    );
  }
  const size = (payload.length / 4) * 3 - padding;
  if (size > maxBytes)
    throw bad(`the image is ${size} bytes, more than the ${maxBytes}-byte limit; send a smaller image`);
  const bytes = Buffer.from(body, 'base64');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
