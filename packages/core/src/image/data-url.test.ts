import { describe, expect, it } from 'vitest';
import { SwitchyardError } from '../errors.js';
import { decodeDataUrl } from './data-url.js';

describe('decodeDataUrl', () => {
  it('decodes an image data URL', () => {
    expect([...decodeDataUrl('data:image/png;base64,AQID')]).toEqual([1, 2, 3]);
    expect([...decodeDataUrl('DATA:IMAGE/JPEG;BASE64,AQI=')]).toEqual([1, 2]);
  });

  it.each([
    ['data:image/png;base64', /no comma/],
    ['data:text/plain;base64,AQID', /media type "text\/plain" is not an image type/],
    ['data:image/png,AQID', /not base64-encoded/],
    ['data:image/png;base64,', /empty payload/],
    ['data:image/png;base64,AQ-D', /not valid base64: "-" at position 2/],
    ['data:image/png;base64,A=QD', /padding in the wrong place/],
    ['data:image/png;base64,AQI', /not a multiple of 4/],
  ])('refuses %s, naming the parameter', (url, message) => {
    let error: unknown;
    try {
      decodeDataUrl(url, { param: 'messages' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SwitchyardError);
    expect((error as SwitchyardError).message).toMatch(message);
    expect((error as SwitchyardError).param).toBe('messages');
    expect((error as SwitchyardError).kind).toBe('invalid_request');
  });

  it('refuses more than maxBytes before decoding', () => {
    expect(() => decodeDataUrl('data:image/png;base64,AQIDBA==', { maxBytes: 3 })).toThrow(
      'the image is 4 bytes, more than the 3-byte limit',
    );
  });
});
