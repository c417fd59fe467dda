import {
  type KvCacheConfig,
  type KvCacheManager,
  type KvUsage,
  type PrefixCacheStats,
  prefixKeys,
  type Sequence,
  SwitchyardError,
} from '@switchyard/core';
import { type BlockHashFn, hashBlock } from './block-hash.js';
import { Block, FreeBlockQueue } from './free-block-queue.js';

interface SeqState {
  seq: Sequence;
  /** Physical block ids, in token order. */
  table: number[];
  /** Index entry (`reg`) of each committed full block, which may be another block of equal content. */
  chain: number[];
}

/** A planned `allocate`: the sequence's state if known, else the cached blocks it would acquire. */
interface Plan {
  state?: SeqState;
  hitBlocks: Block[];
  numNeeded: number;
}

/**
 * vLLM v1 style KV cache manager: a pool of blocks with refcounts, one block table per sequence,
 * and prefix caching of full blocks. A block's index key hashes its prefix keys chained on its
 * parent's entry; a hit walks the chain from the first block and confirms keys and parent, so
 * equal hashes never share KV. Unreferenced blocks wait in an LRU free queue: empty ones at the
 * head (reused first), cached ones at the tail (evicted head first, when allocation reaches them).
 */
export class PagedKvCacheManager implements KvCacheManager {
  private readonly blocks: Block[];
  private readonly queue = new FreeBlockQueue();
  private readonly index = new Map<number, Block>();
  private readonly seqs = new Map<number, SeqState>();
  /** Parent number of the first block, per cache salt ('' for none). */
  private readonly roots = new Map<string, number>();
  private nextReg = 1;
  /** Blocks in the free queue that still hold a cached prefix. */
  private numCached = 0;
  private readonly stats: PrefixCacheStats = { queries: 0, hits: 0 };

  constructor(
    readonly config: KvCacheConfig,
    private readonly hash: BlockHashFn = hashBlock,
  ) {
    for (const key of ['blockSize', 'numBlocks'] as const) {
      if (!Number.isInteger(config[key]) || config[key] < 1) {
        throw new SwitchyardError(
          `KV cache ${key} must be a positive integer, got ${config[key]}`,
          'invalid_request',
          key,
        );
      }
    }
    this.blocks = Array.from({ length: config.numBlocks }, (_, i) => new Block(i));
    for (const b of this.blocks) this.queue.pushTail(b);
  }

  matchPrefix(seq: Sequence): number {
    if (this.seqs.has(seq.num)) return 0;
    return (
      this.match(seq, Math.floor((seq.length - 1) / this.config.blockSize)).length * this.config.blockSize
    );
  }

  numBlocksNeeded(seq: Sequence, numNewTokens: number, hit = 0): number {
    return this.plan(seq, numNewTokens, hit).numNeeded;
  }

  canAllocate(seq: Sequence, numNewTokens: number, hit = 0): boolean {
    return this.plan(seq, numNewTokens, hit).numNeeded <= this.queue.size;
  }

  /**
   * Grows the sequence's block table to cover `numComputedTokens + numNewTokens` tokens (`hit +
   * numNewTokens` for a new sequence, which first takes a reference on its `hit` cached blocks,
   * reviving them out of the free queue). New blocks come from the queue head, evicting the cached
   * prefix they held. Returns false, changing nothing, when the queue is too short.
   */
  allocate(seq: Sequence, numNewTokens: number, hit = 0): boolean {
    const { state, hitBlocks, numNeeded } = this.plan(seq, numNewTokens, hit);
    if (numNeeded > this.queue.size) return false;
    let st = state;
    if (!st) {
      for (const b of hitBlocks) this.acquire(b);
      st = { seq, table: hitBlocks.map((b) => b.id), chain: hitBlocks.map((b) => b.reg) };
      this.seqs.set(seq.num, st);
      if (this.config.enablePrefixCaching) {
        this.stats.queries += seq.length;
        this.stats.hits += hit;
      }
    }
    const computed = state ? seq.numComputedTokens : hit;
    const numTarget = Math.ceil((computed + numNewTokens) / this.config.blockSize);
    while (st.table.length < numTarget) st.table.push(this.take().id);
    return true;
  }

  /**
   * Enters the sequence's full blocks among its first `numTokens` tokens into the prefix index
   * (blocks being computed this step included: the executor writes them before any attention
   * reads them). A block whose content is already indexed (computed twice concurrently) stays
   * private; the chain follows the indexed one.
   */
  commit(seq: Sequence, numTokens = seq.numComputedTokens): void {
    const st = this.seqs.get(seq.num);
    if (!st || !this.config.enablePrefixCaching) return;
    const bs = this.config.blockSize;
    const numFull = Math.min(Math.floor(Math.min(numTokens, seq.length) / bs), st.table.length);
    if (numFull <= st.chain.length) return;
    const keys = prefixKeys(seq, numFull * bs);
    let parent = st.chain.at(-1) ?? this.root(seq.cacheSalt, true);
    for (let i = st.chain.length; i < numFull; i++) {
      const h = this.hash(parent, keys, i * bs, (i + 1) * bs);
      let entry = this.lookup(h, parent, keys, i * bs);
      if (!entry && !this.index.has(h)) {
        entry = this.blocks[st.table[i]];
        entry.enter(h, this.nextReg++, parent, keys.slice(i * bs, (i + 1) * bs));
        this.index.set(h, entry);
      }
      // On a hash collision the block stays out of the index and its successors become unreachable.
      parent = entry ? entry.reg : this.nextReg++;
      st.chain.push(parent);
    }
  }

  /** Drops the sequence's references, last block first, so its tail is evicted before its head. */
  free(seq: Sequence): void {
    const st = this.seqs.get(seq.num);
    if (!st) return;
    this.seqs.delete(seq.num);
    for (let i = st.table.length - 1; i >= 0; i--) {
      const b = this.blocks[st.table[i]];
      if (--b.ref > 0) continue;
      if (b.hash === -1) {
        this.queue.pushHead(b);
      } else {
        this.queue.pushTail(b);
        this.numCached++;
      }
    }
  }

  blockTable(seq: Sequence): readonly number[] {
    return this.seqs.get(seq.num)?.table ?? [];
  }

  usage(): KvUsage {
    const { numBlocks } = this.config;
    const numQueued = this.queue.size;
    return {
      numBlocks,
      numUsedBlocks: numBlocks - numQueued,
      numCachedBlocks: this.numCached,
      numFreeBlocks: numQueued - this.numCached,
    };
  }

  prefixStats(): PrefixCacheStats {
    return { ...this.stats };
  }

  /** Forgets every cached prefix that no live sequence holds; their blocks become free. */
  reset(): void {
    for (const b of this.queue) if (b.hash !== -1) this.unindex(b);
    this.numCached = 0;
  }

  checkIntegrity(): void {
    const { numBlocks, blockSize } = this.config;
    const refs = new Int32Array(numBlocks);
    for (const { seq, table, chain } of this.seqs.values()) {
      if (table.length * blockSize < seq.numComputedTokens) {
        fail(
          `sequence ${seq.id} has ${seq.numComputedTokens} computed tokens but only ${table.length} blocks`,
        );
      }
      if (new Set(table).size !== table.length) fail(`sequence ${seq.id} holds a block twice: [${table}]`);
      if (chain.length > table.length) fail(`sequence ${seq.id} committed more blocks than it holds`);
      chain.forEach((reg, i) => {
        const b = this.blocks[table[i]];
        if (b.hash !== -1 && b.reg !== reg)
          fail(`sequence ${seq.id} block ${b.id} is indexed under another chain`);
      });
      for (const id of table) refs[id]++;
    }
    const queued = new Set<Block>();
    for (const b of this.queue) {
      if (queued.has(b) || queued.size >= numBlocks) fail('free queue has a cycle');
      if (b.next?.prev !== b) fail(`free queue links of block ${b.id} disagree`);
      queued.add(b);
    }
    if (queued.size !== this.queue.size)
      fail(`free queue holds ${queued.size} blocks but counts ${this.queue.size}`);
    let numFree = 0;
    let numCached = 0;
    let numUsed = 0;
    for (const b of this.blocks) {
      if (b.ref !== refs[b.id])
        fail(`block ${b.id} has refcount ${b.ref} but ${refs[b.id]} block-table references`);
      if ((b.ref === 0) !== queued.has(b))
        fail(`block ${b.id} with refcount ${b.ref} is ${queued.has(b) ? '' : 'not '}queued`);
      if (b.hash !== -1 && this.index.get(b.hash) !== b)
        fail(`block ${b.id} is hashed but missing from the index`);
      if (b.ref > 0) numUsed++;
      else if (b.hash !== -1) numCached++;
      else numFree++;
    }
    for (const [h, b] of this.index)
      if (b.hash !== h) fail(`index entry ${h} points to block ${b.id} hashed ${b.hash}`);
    if (numFree + numCached + numUsed !== numBlocks || numCached !== this.numCached) {
      fail(
        `free ${numFree} + cached ${numCached} (counted ${this.numCached}) + used ${numUsed} != ${numBlocks} blocks`,
      );
    }
  }

  private plan(seq: Sequence, numNewTokens: number, hit: number): Plan {
    const bs = this.config.blockSize;
    const state = this.seqs.get(seq.num);
    if (state) {
      const numTarget = Math.ceil((seq.numComputedTokens + numNewTokens) / bs);
      return { state, hitBlocks: [], numNeeded: Math.max(0, numTarget - state.table.length) };
    }
    const hitBlocks = hit > 0 && hit % bs === 0 && hit < seq.length ? this.match(seq, hit / bs) : [];
    if (hitBlocks.length * bs !== hit) {
      throw new SwitchyardError(
        `KV cache: hit of ${hit} tokens for sequence ${seq.id} is not a cached prefix ` +
          `(matchPrefix gives ${this.matchPrefix(seq)}); pass what matchPrefix returned just before allocate`,
        'internal',
      );
    }
    const numRevived = hitBlocks.filter((b) => b.ref === 0).length;
    return { hitBlocks, numNeeded: Math.ceil((hit + numNewTokens) / bs) - hitBlocks.length + numRevived };
  }

  /** The longest chain of cached blocks (at most `maxBlocks`) holding the sequence's leading keys. */
  private match(seq: Sequence, maxBlocks: number): Block[] {
    const bs = this.config.blockSize;
    let parent = this.root(seq.cacheSalt, false);
    if (!this.config.enablePrefixCaching || parent === undefined || maxBlocks <= 0) return [];
    const keys = prefixKeys(seq, maxBlocks * bs);
    const found: Block[] = [];
    for (let i = 0; i < maxBlocks; i++) {
      const b = this.lookup(this.hash(parent, keys, i * bs, (i + 1) * bs), parent, keys, i * bs);
      if (!b) break;
      found.push(b);
      parent = b.reg;
    }
    return found;
  }

  private lookup(h: number, parent: number, keys: readonly number[], start: number): Block | undefined {
    const b = this.index.get(h);
    if (!b || b.parent !== parent) return undefined;
    for (let j = 0; j < b.keys.length; j++) if (b.keys[j] !== keys[start + j]) return undefined;
    return b;
  }

  private root(salt: string | undefined, create: true): number;
  private root(salt: string | undefined, create: false): number | undefined;
  private root(salt = '', create = false): number | undefined {
    const r = this.roots.get(salt);
    if (r !== undefined || !create) return r;
    this.roots.set(salt, -this.roots.size - 1);
    return -this.roots.size;
  }

  private acquire(b: Block): void {
    if (b.ref++ > 0) return;
    this.queue.remove(b);
    if (b.hash !== -1) this.numCached--;
  }

  private take(): Block {
    const b = this.queue.popHead();
    if (b.hash !== -1) {
      this.numCached--;
      this.unindex(b);
    }
    b.ref = 1;
    return b;
  }

  private unindex(b: Block): void {
    this.index.delete(b.hash);
    b.clear();
  }
}

function fail(message: string): never {
  throw new SwitchyardError(`paged KV cache integrity: ${message}`, 'internal');
}
