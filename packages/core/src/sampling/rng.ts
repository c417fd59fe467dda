function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Seedable PRNG: xoshiro128** with its state filled by splitmix32 from the seed. Any integer seed
 * works (negative or beyond 32 bits); without one a random seed is drawn and kept in `seed`.
 * `next()` advances the state.
 */
export class Rng {
  readonly seed: number;
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed?: number) {
    this.seed = seed ?? Math.floor(Math.random() * 2 ** 53);
    const hi = mix32(Math.floor(this.seed / 2 ** 32) >>> 0);
    let s = this.seed >>> 0;
    const word = () => {
      s = (s + 0x9e3779b9) | 0;
      return mix32(s ^ hi);
    };
    this.a = word();
    this.b = word();
    this.c = word();
    this.d = word();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  private u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** A float in [0, 1) with 53 random bits. */
  next(): number {
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
