import { kvCacheRegistry, type RegisterFn } from '@switchyard/core';
import { PagedKvCacheManager } from './paged-kv-cache-manager.js';

export { type BlockHashFn, hashBlock } from './block-hash.js';
export { PagedKvCacheManager } from './paged-kv-cache-manager.js';

/** Registers the paged KV cache manager under the name 'paged'. */
export const register: RegisterFn = (container) => {
  kvCacheRegistry(container).register('paged', (cfg) => new PagedKvCacheManager(cfg));
};
