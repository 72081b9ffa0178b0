import type { Adapter } from '../adapter.js';
import { buildDinov2 } from './hf-dinov2.js';

/** DINOv2 with registers (HF `dinov2_with_registers`): `embeddings.register_tokens` after CLS. */
export const hfDinov2Registers: Adapter = {
  family: 'hf-dinov2-registers',
  label: 'dinov2_with_registers (Dinov2WithRegistersModel, Dinov2WithRegistersForImageClassification; facebook/dinov2-with-registers-*)',
  modelTypes: ['dinov2_with_registers'],
  build: (input) => buildDinov2(input, 'hf-dinov2-registers', ['', 'dinov2_with_registers.']),
};
