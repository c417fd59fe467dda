import { describe, expect, it } from 'vitest';
import { cdfData } from '../src/charts';
import { requestBody } from '../src/compare';
import { GREEDY, samplingBody } from '../src/stream-chat';

describe('the page logic without a browser', () => {
  it('cdfData puts CDFs of different samples on one x axis, as step functions of their quantiles', () => {
    const a = Array.from({ length: 101 }, (_, i) => i); // 0..100
    const b = Array.from({ length: 101 }, () => 50); // all 50
    const { x, ys } = cdfData([a, b]);
    expect(x).toHaveLength(101);
    expect(ys[0][x.indexOf(0)]).toBe(0);
    expect(ys[0][x.indexOf(25)]).toBe(0.25);
    expect(ys[0][x.indexOf(100)]).toBe(1);
    expect(ys[1][x.indexOf(49)]).toBe(0);
    expect(ys[1][x.indexOf(50)]).toBe(1);
    expect(cdfData([[], a]).ys[0].every((y) => y === 0)).toBe(true);
  });

  it('samplingBody sends only what the form sets, numbers as numbers and anything else as typed', () => {
    expect(samplingBody(GREEDY)).toEqual({ temperature: 0, top_p: 1, max_tokens: 128 });
    expect(
      samplingBody({
        ...GREEDY,
        top_k: '20',
        seed: '7',
        stop: 'a\n\nb',
        ignore_eos: true,
        temperature: 'hot',
      }),
    ).toEqual({
      temperature: 'hot',
      top_p: 1,
      top_k: 20,
      max_tokens: 128,
      seed: 7,
      stop: ['a', 'b'],
      ignore_eos: true,
    });
  });

  it('requestBody sends the workload fields of the chosen kind only, and blank config fields not at all', () => {
    const config = {
      name: 'x',
      scheduler: 'fcfs',
      attention: 'paged',
      policy: 'fcfs',
      max_num_batched_tokens: '',
      block_size: '8',
      max_num_seqs: 'many',
      kv_cache_tokens: '',
      enable_prefix_caching: false,
      enable_chunked_prefill: true,
    };
    const workload = {
      workload: 'multi-turn',
      num_requests: '4',
      input_len: '8',
      output_len: '2',
      range_ratio: '0',
      shared_prefix_len: '64',
      num_prefixes: '2',
      num_turns: '3',
      num_images: '4',
      request_rate: 'inf',
      seed: '1',
    };
    expect(requestBody([config], workload)).toEqual({
      configs: [
        {
          name: 'x',
          scheduler: 'fcfs',
          attention: 'paged',
          policy: 'fcfs',
          block_size: 8,
          max_num_seqs: 'many',
          enable_prefix_caching: false,
          enable_chunked_prefill: true,
        },
      ],
      workload: {
        workload: 'multi-turn',
        num_requests: 4,
        input_len: 8,
        output_len: 2,
        range_ratio: 0,
        request_rate: 'inf',
        seed: 1,
        num_turns: 3,
      },
    });
  });
});
