/** One physical block of the pool and its prefix-cache entry. */
export class Block {
  /** Live sequences whose block table holds this block. */
  ref = 0;
  /** Key in the prefix index; -1 when the block holds no reusable prefix. */
  hash = -1;
  /** Unique number of this index entry; the next block of the chain names it as its `parent`. */
  reg = -1;
  parent = 0;
  /** The prefix keys the block holds, confirmed on every hit. */
  keys: number[] = [];
  prev: Block | null = null;
  next: Block | null = null;

  constructor(readonly id: number) {}

  /** Makes the block findable under `hash` as the child of entry `parent`. */
  enter(hash: number, reg: number, parent: number, keys: number[]): void {
    this.hash = hash;
    this.reg = reg;
    this.parent = parent;
    this.keys = keys;
  }

  /** Forgets the cached prefix; the caller removes the index entry. */
  clear(): void {
    this.enter(-1, -1, 0, []);
  }
}

/**
 * The unreferenced blocks, as a doubly linked list: allocation takes the head, a freed cached
 * block goes to the tail, so cached blocks are evicted least recently used first. O(1) removal
 * from the middle when a prefix hit revives a cached block.
 */
export class FreeBlockQueue {
  private readonly end = new Block(-1);
  size = 0;

  constructor() {
    this.end.next = this.end.prev = this.end;
  }

  pushHead(b: Block): void {
    this.link(b, this.end, this.end.next!);
  }

  pushTail(b: Block): void {
    this.link(b, this.end.prev!, this.end);
  }

  popHead(): Block {
    const b = this.end.next!;
    if (b === this.end) throw new Error('free block queue is empty');
    this.remove(b);
    return b;
  }

  remove(b: Block): void {
    b.prev!.next = b.next;
    b.next!.prev = b.prev;
    b.prev = b.next = null;
    this.size--;
  }

  *[Symbol.iterator](): Generator<Block> {
    for (let b = this.end.next!; b !== this.end && b !== null; b = b.next!) yield b;
  }

  private link(b: Block, prev: Block, next: Block): void {
    b.prev = prev;
    b.next = next;
    prev.next = b;
    next.prev = b;
    this.size++;
  }
}
