import {
  type KvCacheConfig,
  type KvCacheManager,
  type KvUsage,
  type PrefixCacheStats,
  prefixKeys,
  type Sequence,
  SwitchyardError,
} from '@switchyard/core';
import { MinHeap } from './min-heap.js';

/** A radix-tree node: a run of full pages (their prefix keys) and the blocks holding them. */
class Node {
  readonly children = new Map<string, Node>();
  /** Live sequences whose locked path runs through this node. */
  lockRef = 0;
  lastAccess = 0;

  constructor(
    /** Key in the parent's `children`: the first page's keys; the cache salt for a root. */
    public key: string,
    public keys: number[],
    public blocks: number[],
    public parent: Node | null,
  ) {}
}

interface SeqState {
  seq: Sequence;
  /** Physical block ids, in token order: the locked path's blocks, then private ones. */
  table: number[];
  /** The deepest node the sequence locks (null: none). */
  node: Node | null;
  /** Leading pages of `table` owned by the tree (the path to `node`). */
  numTreePages: number;
}

/** The cached prefix of a sequence: `numInNode` leading pages of `node`, and every page above it. */
interface Match {
  node: Node | null;
  numInNode: number;
  blocks: number[];
}

interface Plan {
  state?: SeqState;
  match: Match;
  numNeeded: number;
}

const NO_MATCH: Match = { node: null, numInNode: 0, blocks: [] };

/**
 * SGLang style KV cache manager: a radix tree per cache salt whose edges are runs of full pages
 * of prefix keys, each node holding the pool blocks of its pages. A running sequence locks its
 * path (lock refs count sequences below a node); unlocked leaves are evicted least recently
 * used first, tail pages first. Blocks are free (in the free list), cached (in an unlocked node),
 * or used (in a locked node, or private to one sequence's uncommitted tail).
 */
export class RadixKvCacheManager implements KvCacheManager {
  private readonly roots = new Map<string, Node>();
  private readonly seqs = new Map<number, SeqState>();
  private readonly freeBlocks: number[];
  private numTreeBlocks = 0;
  private numLockedBlocks = 0;
  private clock = 0;
  private readonly stats: PrefixCacheStats = { queries: 0, hits: 0 };

  constructor(readonly config: KvCacheConfig) {
    for (const key of ['blockSize', 'numBlocks'] as const) {
      if (!Number.isInteger(config[key]) || config[key] < 1) {
        throw new SwitchyardError(
          `KV cache ${key} must be a positive integer, got ${config[key]}`,
          'invalid_request',
          key,
        );
      }
    }
    this.freeBlocks = Array.from({ length: config.numBlocks }, (_, i) => config.numBlocks - 1 - i);
  }

  matchPrefix(seq: Sequence): number {
    if (this.seqs.has(seq.num)) return 0;
    return (
      this.match(seq, Math.floor((seq.length - 1) / this.config.blockSize)).blocks.length *
      this.config.blockSize
    );
  }

  numBlocksNeeded(seq: Sequence, numNewTokens: number, hit = 0): number {
    return this.plan(seq, numNewTokens, hit).numNeeded;
  }

  canAllocate(seq: Sequence, numNewTokens: number, hit = 0): boolean {
    return this.plan(seq, numNewTokens, hit).numNeeded <= this.numAvailable();
  }

  /**
   * Grows the sequence's block table to cover `numComputedTokens + numNewTokens` tokens (`hit +
   * numNewTokens` for a new sequence, which first locks the path of its `hit` cached pages,
   * splitting a node matched part-way). New blocks come from the free list, then from evicting
   * unlocked leaves. Returns false, changing nothing, when free plus evictable blocks are too few.
   */
  allocate(seq: Sequence, numNewTokens: number, hit = 0): boolean {
    const { state, match, numNeeded } = this.plan(seq, numNewTokens, hit);
    if (numNeeded > this.numAvailable()) return false;
    let st = state;
    if (!st) {
      let node = match.node;
      if (node && match.numInNode < node.blocks.length) node = this.split(node, match.numInNode);
      this.lock(node, 1);
      st = { seq, table: [...match.blocks], node, numTreePages: match.blocks.length };
      this.seqs.set(seq.num, st);
      if (this.config.enablePrefixCaching) {
        this.stats.queries += seq.length;
        this.stats.hits += hit;
      }
    }
    const computed = state ? seq.numComputedTokens : hit;
    const numNew = Math.ceil((computed + numNewTokens) / this.config.blockSize) - st.table.length;
    if (numNew > 0) st.table.push(...this.take(numNew));
    return true;
  }

  /**
   * Inserts the sequence's full pages among its first `numTokens` tokens into the tree (pages
   * being computed this step included: the executor writes them before any attention reads them)
   * and moves its lock down to the new end of its path. A computed page the tree already held
   * (computed concurrently by another sequence) is deduplicated: the sequence's table takes the
   * tree's block and its own copy is freed. A page not yet computed is never swapped (this step
   * writes it into the sequence's own block): the path stops before it, and the pages from there
   * stay private until they are computed and committed again.
   */
  commit(seq: Sequence, numTokens = seq.numComputedTokens): void {
    const st = this.seqs.get(seq.num);
    if (!st || !this.config.enablePrefixCaching) return;
    const bs = this.config.blockSize;
    let numFull = Math.min(Math.floor(Math.min(numTokens, seq.length) / bs), st.table.length);
    if (numFull <= st.numTreePages) return;
    const numComputedPages = Math.floor(seq.numComputedTokens / bs);
    const keys = prefixKeys(seq, numFull * bs);
    let node = this.root(seq.cacheSalt);
    for (let page = 0; page < numFull; ) {
      const key = pageKey(keys, page, bs);
      let child = node.children.get(key);
      if (!child) {
        child = new Node(key, keys.slice(page * bs), st.table.slice(page, numFull), node);
        node.children.set(key, child);
        this.numTreeBlocks += numFull - page;
        node = child;
        break;
      }
      const m = this.numCommonPages(child, keys, page, numFull);
      let take = m;
      for (let j = 0; j < m; j++) {
        if (st.table[page + j] !== child.blocks[j] && page + j >= numComputedPages) {
          take = j;
          break;
        }
      }
      if (take === 0) {
        numFull = page;
        break;
      }
      if (take < child.blocks.length) child = this.split(child, take);
      for (let j = 0; j < take; j++, page++) {
        if (st.table[page] === child.blocks[j]) continue;
        this.freeBlocks.push(st.table[page]);
        st.table[page] = child.blocks[j];
      }
      node = child;
      if (take < m) {
        numFull = page;
        break;
      }
    }
    if (numFull <= st.numTreePages) return;
    this.lock(node, 1);
    this.lock(st.node, -1);
    st.node = node;
    st.numTreePages = numFull;
  }

  /** Unlocks the sequence's path (touching it for LRU) and frees its private blocks, tail first. */
  free(seq: Sequence): void {
    const st = this.seqs.get(seq.num);
    if (!st) return;
    this.seqs.delete(seq.num);
    this.lock(st.node, -1);
    for (let i = st.table.length - 1; i >= st.numTreePages; i--) this.freeBlocks.push(st.table[i]);
  }

  blockTable(seq: Sequence): readonly number[] {
    return this.seqs.get(seq.num)?.table ?? [];
  }

  usage(): KvUsage {
    const { numBlocks } = this.config;
    const numCachedBlocks = this.numTreeBlocks - this.numLockedBlocks;
    const numFreeBlocks = this.freeBlocks.length;
    return {
      numBlocks,
      numUsedBlocks: numBlocks - numFreeBlocks - numCachedBlocks,
      numCachedBlocks,
      numFreeBlocks,
    };
  }

  prefixStats(): PrefixCacheStats {
    return { ...this.stats };
  }

  /** Evicts every unlocked node; locked paths stay. */
  reset(): void {
    this.evict(Number.POSITIVE_INFINITY);
  }

  checkIntegrity(): void {
    const { numBlocks, blockSize: bs } = this.config;
    const owners = new Array<string | undefined>(numBlocks).fill(undefined);
    const own = (b: number, who: string) => {
      if (!(Number.isInteger(b) && b >= 0 && b < numBlocks)) fail(`${who} holds invalid block ${b}`);
      if (owners[b]) fail(`block ${b} is held by both ${owners[b]} and ${who}`);
      owners[b] = who;
    };
    for (const b of this.freeBlocks) own(b, 'the free list');
    const numLocks = new Map<Node, number>();
    let numPrivate = 0;
    for (const { seq, table, node, numTreePages } of this.seqs.values()) {
      if (table.length * bs < seq.numComputedTokens) {
        fail(
          `sequence ${seq.id} has ${seq.numComputedTokens} computed tokens but only ${table.length} blocks`,
        );
      }
      const path = this.pathBlocks(node);
      if (path.length !== numTreePages || path.some((b, i) => b !== table[i])) {
        fail(`sequence ${seq.id}'s table [${table}] does not start with its locked path [${path}]`);
      }
      if (node) numLocks.set(node, (numLocks.get(node) ?? 0) + 1);
      for (const b of table.slice(numTreePages)) own(b, `sequence ${seq.id}`);
      numPrivate += table.length - numTreePages;
    }
    let numTree = 0;
    let numLocked = 0;
    const visit = (node: Node): number => {
      let locks = numLocks.get(node) ?? 0;
      numLocks.delete(node);
      for (const [key, c] of node.children) {
        if (c.parent !== node || c.key !== key || key !== pageKey(c.keys, 0, bs))
          fail(`node '${key}' is misfiled`);
        if (c.blocks.length === 0 || c.keys.length !== c.blocks.length * bs)
          fail(`node '${key}' has a bad size`);
        for (const b of c.blocks) own(b, 'the tree');
        numTree += c.blocks.length;
        locks += visit(c);
      }
      if (node.parent && node.lockRef !== locks) {
        fail(`node '${node.key}' has lockRef ${node.lockRef} but ${locks} sequences lock through it`);
      }
      if (node.parent && node.lockRef > 0) numLocked += node.blocks.length;
      return locks;
    };
    for (const [salt, root] of this.roots) {
      if (root.key !== salt || root.parent || root.blocks.length > 0) fail(`root '${salt}' is malformed`);
      visit(root);
    }
    if (numLocks.size > 0) fail(`${numLocks.size} sequences lock nodes that are not in the tree`);
    const lost = owners.indexOf(undefined);
    if (lost >= 0) fail(`block ${lost} is neither free, cached nor used`);
    if (numTree !== this.numTreeBlocks || numLocked !== this.numLockedBlocks) {
      fail(
        `tree holds ${numTree} blocks (${numLocked} locked), counted ${this.numTreeBlocks} (${this.numLockedBlocks})`,
      );
    }
    const numCached = numTree - numLocked;
    if (this.freeBlocks.length + numCached + numPrivate + numLocked !== numBlocks) {
      fail(
        `free ${this.freeBlocks.length} + cached ${numCached} + used ${numPrivate + numLocked} != ${numBlocks}`,
      );
    }
  }

  private plan(seq: Sequence, numNewTokens: number, hit: number): Plan {
    const bs = this.config.blockSize;
    const state = this.seqs.get(seq.num);
    if (state) {
      const numTarget = Math.ceil((seq.numComputedTokens + numNewTokens) / bs);
      return { state, match: NO_MATCH, numNeeded: Math.max(0, numTarget - state.table.length) };
    }
    const match = hit > 0 && hit % bs === 0 && hit < seq.length ? this.match(seq, hit / bs) : NO_MATCH;
    if (match.blocks.length * bs !== hit) {
      throw new SwitchyardError(
        `KV cache: hit of ${hit} tokens for sequence ${seq.id} is not a cached prefix ` +
          `(matchPrefix gives ${this.matchPrefix(seq)}); pass what matchPrefix returned just before allocate`,
        'internal',
      );
    }
    let numRevived = match.node && match.node.lockRef === 0 ? match.numInNode : 0;
    for (let n = match.node?.parent; n?.parent; n = n.parent)
      if (n.lockRef === 0) numRevived += n.blocks.length;
    return { match, numNeeded: Math.ceil((hit + numNewTokens) / bs) - match.blocks.length + numRevived };
  }

  /** Walks the tree along the sequence's leading keys, at most `maxPages` pages. Pure. */
  private match(seq: Sequence, maxPages: number): Match {
    const bs = this.config.blockSize;
    const root = this.roots.get(seq.cacheSalt ?? '');
    if (!this.config.enablePrefixCaching || !root || maxPages <= 0) return NO_MATCH;
    const keys = prefixKeys(seq, maxPages * bs);
    const blocks: number[] = [];
    let node = root;
    let numInNode = 0;
    while (blocks.length < maxPages) {
      const child = node.children.get(pageKey(keys, blocks.length, bs));
      if (!child) break;
      numInNode = this.numCommonPages(child, keys, blocks.length, maxPages);
      for (let j = 0; j < numInNode; j++) blocks.push(child.blocks[j]);
      node = child;
      if (numInNode < child.blocks.length) break;
    }
    return node === root ? NO_MATCH : { node, numInNode, blocks };
  }

  /** Leading pages of `node` equal to pages `page, page + 1, …` of `keys` (the first one is, by its key). */
  private numCommonPages(node: Node, keys: readonly number[], page: number, maxPages: number): number {
    const bs = this.config.blockSize;
    let m = 1;
    for (; m < node.blocks.length && page + m < maxPages; m++) {
      for (let j = 0; j < bs; j++) if (node.keys[m * bs + j] !== keys[(page + m) * bs + j]) return m;
    }
    return m;
  }

  /** Cuts `node` after its first `m` pages; returns the new upper node (same locks and access time). */
  private split(node: Node, m: number): Node {
    const bs = this.config.blockSize;
    const top = new Node(node.key, node.keys.slice(0, m * bs), node.blocks.slice(0, m), node.parent);
    top.lockRef = node.lockRef;
    top.lastAccess = node.lastAccess;
    node.parent!.children.set(top.key, top);
    node.keys = node.keys.slice(m * bs);
    node.blocks = node.blocks.slice(m);
    node.key = pageKey(node.keys, 0, bs);
    node.parent = top;
    top.children.set(node.key, node);
    return top;
  }

  /** Adds `delta` to the lock refs from `node` up to its root, touching each node for LRU. */
  private lock(node: Node | null, delta: 1 | -1): void {
    const now = ++this.clock;
    for (let n = node; n?.parent; n = n.parent) {
      if (n.lockRef === 0) this.numLockedBlocks += n.blocks.length;
      n.lockRef += delta;
      if (n.lockRef === 0) this.numLockedBlocks -= n.blocks.length;
      n.lastAccess = now;
    }
  }

  private take(n: number): number[] {
    if (this.freeBlocks.length < n) this.evict(n - this.freeBlocks.length);
    return this.freeBlocks.splice(this.freeBlocks.length - n, n);
  }

  /** Moves up to `numBlocks` cached blocks to the free list: tail pages of the LRU unlocked leaf first. */
  private evict(numBlocks: number): void {
    const bs = this.config.blockSize;
    const heap = new MinHeap<Node>((a, b) => a.lastAccess < b.lastAccess);
    const stack = [...this.roots.values()];
    for (let n = stack.pop(); n; n = stack.pop()) {
      for (const c of n.children.values()) {
        if (c.children.size > 0) stack.push(c);
        else if (c.lockRef === 0) heap.push(c);
      }
    }
    for (let left = numBlocks, leaf = heap.pop(); leaf && left > 0; leaf = heap.pop()) {
      const k = Math.min(left, leaf.blocks.length);
      this.freeBlocks.push(...leaf.blocks.splice(leaf.blocks.length - k));
      leaf.keys.length -= k * bs;
      this.numTreeBlocks -= k;
      left -= k;
      if (leaf.blocks.length > 0) break;
      const parent = leaf.parent!;
      parent.children.delete(leaf.key);
      if (parent.children.size > 0) continue;
      if (!parent.parent) this.roots.delete(parent.key);
      else if (parent.lockRef === 0) heap.push(parent);
    }
  }

  private numAvailable(): number {
    return this.freeBlocks.length + this.numTreeBlocks - this.numLockedBlocks;
  }

  private root(salt = ''): Node {
    const r = this.roots.get(salt) ?? new Node(salt, [], [], null);
    this.roots.set(salt, r);
    return r;
  }

  private pathBlocks(node: Node | null): number[] {
    const runs: number[][] = [];
    for (let n = node; n?.parent; n = n.parent) runs.unshift(n.blocks);
    return runs.flat();
  }
}

/** The map key of page `page` of `keys`. */
function pageKey(keys: readonly number[], page: number, bs: number): string {
  return keys.slice(page * bs, (page + 1) * bs).join(',');
}

function fail(message: string): never {
  throw new SwitchyardError(`radix KV cache integrity: ${message}`, 'internal');
}
