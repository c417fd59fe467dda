import type { DependencyContainer } from '@switchyard/core';

/**
 * LLaVA 1.5 (LlavaForConditionalGeneration) and LLaVA-NeXT (LlavaNextForConditionalGeneration).
 * The vision tower, projector and image processors are coming (see README); until then nothing is
 * registered, and loading a LLaVA checkpoint fails with the list of known architectures.
 */
export function register(_container: DependencyContainer): void {}
