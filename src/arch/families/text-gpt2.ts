import { UserError } from '../../errors.js';
import type { Adapter } from '../adapter.js';
import { activation, agree, checkConfig, HEADS_DIVIDE, configFile, findPrefix, num, resolveHeads, RULES, str, Weights } from '../adapter.js';
import type { BlockSpec } from '../spec.js';
import { textSpec } from './text-common.js';

/**
 * GPT-2 (HF `gpt2`): GPT2Model (bare) or GPT2LMHeadModel (`transformer.`). Its Conv1D weights
 * are stored [in, out]: `h.{i}.attn.c_attn.weight` [d, 3d] becomes q, k, v refs with
 * `transposed: true` and canonical row ranges; `ln_1`/`ln_2` pre-norms, `ln_f` final norm.
 */
export const textGpt2: Adapter = {
  family: 'text-gpt2',
  label: 'gpt2 (GPT2Model, GPT2LMHeadModel; text, weight analysis only)',
  modelTypes: ['gpt2'],
  build: (input) => {
    const cfg = input.config ?? {};
    checkConfig(cfg, configFile(input), { n_embd: RULES.width, n_head: RULES.heads, n_layer: RULES.layers, n_inner: RULES.hidden, layer_norm_epsilon: RULES.eps }, [HEADS_DIVIDE('n_embd', 'n_head')]);
    const notes: string[] = ['text model: weight analysis only'];
    const anchor = 'h.0.attn.c_attn.weight';
    const prefix = findPrefix(input.source, anchor, ['', 'transformer.']);
    const root = new Weights(input.source);
    if (prefix === undefined) throw root.missing(anchor);
    const w = root.withPrefix(prefix);
    const ca = w.info(anchor);
    if (ca.shape.length !== 2 || ca.shape[1] !== 3 * ca.shape[0])
      throw new UserError(`${w.file}: tensor ${prefix}${anchor} has shape [${ca.shape.join(', ')}], not GPT-2's fused [d, 3d]`);
    const d = ca.shape[0];
    agree(w, 'n_embd', num(cfg, 'n_embd'), d, anchor);
    const heads = resolveHeads(input, num(cfg, 'n_head'), d, notes, w.file);
    const layers = w.countLayers('h.');
    agree(w, 'n_layer', num(cfg, 'n_layer'), layers, `h.${layers - 1}.*`);
    const eps = num(cfg, 'layer_norm_epsilon') ?? 1e-5;
    const inner = num(cfg, 'n_inner') ?? w.info('h.0.mlp.c_fc.weight').shape[1];
    const blocks: BlockSpec[] = [];
    for (let i = 0; i < layers; i++) {
      const b = w.sub(`h.${i}.`);
      const part = (k: number) => ({
        weight: b.transposed('attn.c_attn.weight', 3 * d, d, [k * d, (k + 1) * d]),
        ...(b.has('attn.c_attn.bias') ? { bias: b.rows('attn.c_attn.bias', k * d, (k + 1) * d, []) } : {}),
      });
      const lin = (base: string, out: number, inn: number) => ({
        weight: b.transposed(`${base}.weight`, out, inn),
        ...(b.has(`${base}.bias`) ? { bias: b.ref(`${base}.bias`, [out]) } : {}),
      });
      blocks.push({
        norm1: b.norm('ln_1', d, eps),
        q: part(0),
        k: part(1),
        v: part(2),
        o: lin('attn.c_proj', d, d),
        norm2: b.norm('ln_2', d, eps),
        mlp: { kind: 'mlp', fc1: lin('mlp.c_fc', inner, d), fc2: lin('mlp.c_proj', d, inner) },
      });
    }
    return textSpec(input, {
      family: 'text-gpt2',
      width: d,
      heads,
      blocks,
      finalNorm: w.norm('ln_f', d, eps),
      activation: activation(str(cfg, 'activation_function'), 'gelu_tanh', w.file),
      notes,
    });
  },
};
