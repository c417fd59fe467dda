import { kvCacheRegistry, type RegisterFn } from '@switchyard/core';
import { RadixKvCacheManager } from './radix-kv-cache-manager.js';

export { RadixKvCacheManager } from './radix-kv-cache-manager.js';

/** Registers the radix-tree KV cache manager under the name 'radix'. */
export const register: RegisterFn = (container) => {
  kvCacheRegistry(container).register('radix', (cfg) => new RadixKvCacheManager(cfg));
};
