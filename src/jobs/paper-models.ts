/**
 * The models of "Dissecting Query-Key Interaction in Vision Transformers" (Pan et al., NeurIPS
 * 2024, arXiv 2405.14880, the models the paper analysed): where each checkpoint comes from and
 * how it was trained. `qkscope paper` downloads them (Hugging Face ids into the HF cache; release
 * files by URL into $HF_HOME/qkscope/releases/) and runs `svd` on each.
 *
 * Groups follow the paper's figure: supervised classification (ViT, DeiT), CLIP-like
 * (contrastive image–text) and self-supervised (DINO, SimMIM, I-JEPA).
 */

import { UserError } from '../errors.js';

export type PaperGroup = 'supervised' | 'clip' | 'self-supervised';

export const PAPER_GROUPS: { id: PaperGroup; label: string }[] = [
  { id: 'supervised', label: 'supervised' },
  { id: 'clip', label: 'CLIP-like' },
  { id: 'self-supervised', label: 'self-supervised' },
];

export interface PaperModel {
  /** The name used by --models: the HF id, or a release name. */
  id: string;
  group: PaperGroup;
  /** Training objective, as the paper describes it. */
  objective: string;
  /** Where the weights are. */
  source: { kind: 'hub'; repo: string } | { kind: 'url'; url: string; file: string };
  /** Page describing the checkpoint. */
  page: string;
  /** `--part` for multi-model checkpoints (I-JEPA release). */
  part?: string;
}

const hf = (repo: string) => ({ kind: 'hub' as const, repo });
const hfPage = (repo: string) => `https://huggingface.co/${repo}`;
/** Google Drive's direct-download form of a shared file (the SimMIM README links these files). */
const drive = (id: string, file: string) => ({ kind: 'url' as const, url: `https://drive.usercontent.google.com/download?id=${id}&export=download&confirm=t`, file });

const SUPERVISED_VIT = 'supervised image classification (ImageNet-21k pre-training, ImageNet-1k fine-tuning)';
const DEIT = 'supervised classification on ImageNet-1k with distillation from a CNN teacher (distillation token)';
const CLIP = 'contrastive image–text pre-training (CLIP, 400M pairs); vision tower';
const DINO = 'self-supervised self-distillation (DINO, ImageNet-1k)';

export const PAPER_MODELS: PaperModel[] = [
  { id: 'google/vit-base-patch16-224', group: 'supervised', objective: SUPERVISED_VIT, source: hf('google/vit-base-patch16-224'), page: hfPage('google/vit-base-patch16-224') },
  { id: 'google/vit-base-patch32-384', group: 'supervised', objective: SUPERVISED_VIT, source: hf('google/vit-base-patch32-384'), page: hfPage('google/vit-base-patch32-384') },
  { id: 'google/vit-large-patch16-224', group: 'supervised', objective: SUPERVISED_VIT, source: hf('google/vit-large-patch16-224'), page: hfPage('google/vit-large-patch16-224') },
  { id: 'google/vit-large-patch32-384', group: 'supervised', objective: SUPERVISED_VIT, source: hf('google/vit-large-patch32-384'), page: hfPage('google/vit-large-patch32-384') },
  {
    id: 'google/vit-huge-patch14-224-in21k',
    group: 'supervised',
    objective: 'supervised image classification (ImageNet-21k only)',
    source: hf('google/vit-huge-patch14-224-in21k'),
    page: hfPage('google/vit-huge-patch14-224-in21k'),
  },
  { id: 'facebook/deit-tiny-distilled-patch16-224', group: 'supervised', objective: DEIT, source: hf('facebook/deit-tiny-distilled-patch16-224'), page: hfPage('facebook/deit-tiny-distilled-patch16-224') },
  { id: 'facebook/deit-small-distilled-patch16-224', group: 'supervised', objective: DEIT, source: hf('facebook/deit-small-distilled-patch16-224'), page: hfPage('facebook/deit-small-distilled-patch16-224') },
  { id: 'facebook/deit-base-distilled-patch16-224', group: 'supervised', objective: DEIT, source: hf('facebook/deit-base-distilled-patch16-224'), page: hfPage('facebook/deit-base-distilled-patch16-224') },
  { id: 'openai/clip-vit-base-patch16', group: 'clip', objective: CLIP, source: hf('openai/clip-vit-base-patch16'), page: hfPage('openai/clip-vit-base-patch16') },
  { id: 'openai/clip-vit-base-patch32', group: 'clip', objective: CLIP, source: hf('openai/clip-vit-base-patch32'), page: hfPage('openai/clip-vit-base-patch32') },
  { id: 'openai/clip-vit-large-patch14', group: 'clip', objective: CLIP, source: hf('openai/clip-vit-large-patch14'), page: hfPage('openai/clip-vit-large-patch14') },
  { id: 'facebook/dino-vits16', group: 'self-supervised', objective: DINO, source: hf('facebook/dino-vits16'), page: hfPage('facebook/dino-vits16') },
  { id: 'facebook/dino-vitb16', group: 'self-supervised', objective: DINO, source: hf('facebook/dino-vitb16'), page: hfPage('facebook/dino-vitb16') },
  {
    id: 'simmim-vit-base-pretrain',
    group: 'self-supervised',
    objective: 'self-supervised masked image modelling (SimMIM: regress the raw pixels of masked patches; ImageNet-1k, 800 epochs)',
    source: drive('1dJn6GYkwMIcoP3zqOEyW1_iQfpBi8UOw', 'simmim_pretrain__vit_base__img224__800ep.pth'),
    page: 'https://github.com/microsoft/SimMIM#vision-transformer',
  },
  {
    id: 'simmim-vit-base-finetune',
    // Drawn beside its pre-trained twin, as the paper contrasts the two.
    group: 'self-supervised',
    objective: 'SimMIM pre-training, then supervised fine-tuning for ImageNet-1k classification',
    source: drive('1fKgDYd0tRgyHyTnyB1CleYxjo0Gn5tEB', 'simmim_finetune__vit_base__img224__800ep.pth'),
    page: 'https://github.com/microsoft/SimMIM#vision-transformer',
  },
  {
    id: 'facebook/ijepa_vith14_1k',
    group: 'self-supervised',
    objective: 'self-supervised joint-embedding predictive architecture (I-JEPA: predict target-encoder features of masked blocks; ImageNet-1k, 300 epochs); the context encoder',
    source: hf('facebook/ijepa_vith14_1k'),
    page: hfPage('facebook/ijepa_vith14_1k'),
  },
  {
    id: 'ijepa-vith14-1k-predictor',
    group: 'self-supervised',
    objective: 'I-JEPA (as above): the predictor, which maps context features and mask tokens to the target features',
    source: { kind: 'url', url: 'https://dl.fbaipublicfiles.com/ijepa/IN1K-vit.h.14-300e.pth.tar', file: 'IN1K-vit.h.14-300e.pth.tar' },
    page: 'https://github.com/facebookresearch/ijepa#pretrained-models',
    part: 'predictor',
  },
];

/** The entries named by `--models` (ids), in the list's order; all by default. */
export function selectPaperModels(names: string[] | undefined, list: PaperModel[] = PAPER_MODELS): PaperModel[] {
  if (!names || names.length === 0) return list;
  const known = new Set(list.map((m) => m.id.toLowerCase()));
  const unknown = names.filter((n) => !known.has(n.toLowerCase()));
  if (unknown.length) throw new UserError(`--models ${unknown.join(',')}: not in the paper's list; \`qkscope paper --list\` shows the ids`);
  const want = new Set(names.map((n) => n.toLowerCase()));
  return list.filter((m) => want.has(m.id.toLowerCase()));
}
