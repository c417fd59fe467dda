import type { DependencyContainer } from '@switchyard/core';

/**
 * InternVL (InternVLForConditionalGeneration). The vision tower, pixel shuffle and dynamic tiling
 * are coming (see README); until then nothing is registered, and loading an InternVL checkpoint
 * fails with the list of known architectures.
 */
export function register(_container: DependencyContainer): void {}
