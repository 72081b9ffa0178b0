import type { Adapter } from '../adapter.js';
import { buildBeit } from './hf-beit.js';

/** HF `data2vec-vision`: BEiT's architecture under the `data2vec_vision.` prefix. */
export const hfData2vecVision: Adapter = {
  family: 'hf-data2vec-vision',
  label: 'data2vec-vision (Data2VecVisionModel, Data2VecVisionForImageClassification; facebook/data2vec-vision-*)',
  modelTypes: ['data2vec-vision'],
  build: (input) => buildBeit(input, 'hf-data2vec-vision', ['data2vec_vision.', '']),
};
