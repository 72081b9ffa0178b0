import { UserError } from '../../errors.js';
import type { Adapter } from '../adapter.js';
import { activation, agree, checkConfig, configFile, findPrefix, num, RULES, str, Weights } from '../adapter.js';
import type { BlockSpec } from '../spec.js';
import { textSpec } from './text-common.js';

/**
 * LLaMA-style decoders (HF `llama`, `mistral`, `qwen2`): `model.layers.{i}.self_attn.
 * q_proj/k_proj/v_proj/o_proj` (k, v with `num_key_value_heads` heads: grouped-query
 * attention; qwen2 adds q/k/v biases), RMSNorm `input_layernorm` / `post_attention_layernorm`,
 * gated MLP `gate_proj`/`up_proj`/`down_proj`, final `model.norm`. Rotary position embeddings
 * act between the projections and the dot product; W_q^T W_k describes the content part.
 */
export const textLlama: Adapter = {
  family: 'text-llama',
  label: 'llama, mistral, qwen2 (LlamaForCausalLM etc.; text, weight analysis only)',
  modelTypes: ['llama', 'mistral', 'qwen2'],
  build: (input) => {
    const cfg = input.config ?? {};
    checkConfig(
      cfg,
      configFile(input),
      {
        hidden_size: RULES.width,
        num_attention_heads: RULES.heads,
        num_key_value_heads: RULES.heads,
        head_dim: RULES.headDim,
        num_hidden_layers: RULES.layers,
        intermediate_size: RULES.hidden,
        rms_norm_eps: RULES.eps,
      },
      [['num_attention_heads', 'num_key_value_heads', '{a} heads are not divisible into groups of {b} key/value heads']],
    );
    const notes: string[] = ['text model: weight analysis only', 'rotary position embeddings are not part of W_q^T W_k'];
    const anchor = 'layers.0.self_attn.q_proj.weight';
    const prefix = findPrefix(input.source, anchor, ['model.', '']);
    const root = new Weights(input.source);
    if (prefix === undefined) throw root.missing(`model.${anchor}`);
    const w = root.withPrefix(prefix);
    const qi = w.info(anchor);
    const d = qi.shape[1];
    agree(w, 'hidden_size', num(cfg, 'hidden_size'), d, anchor);
    let heads = input.numHeads ?? num(cfg, 'num_attention_heads');
    if (heads === undefined) throw new UserError(`${w.file}: the number of attention heads is unknown (no num_attention_heads in config.json); pass --num-heads`);
    if (input.numHeads !== undefined && num(cfg, 'num_attention_heads') !== undefined && input.numHeads !== num(cfg, 'num_attention_heads'))
      notes.push(`heads = ${heads} from --num-heads (the config says ${num(cfg, 'num_attention_heads')})`);
    const headDim = num(cfg, 'head_dim') ?? d / heads;
    if (!Number.isInteger(headDim) || qi.shape[0] !== heads * headDim)
      throw w.shapeError(anchor, qi.shape, [heads * headDim, d], `${heads} heads of width ${headDim}`);
    const kvHeads = num(cfg, 'num_key_value_heads') ?? heads;
    if (heads % kvHeads !== 0) throw new UserError(`${w.file}: ${heads} query heads are not a multiple of ${kvHeads} key/value heads; check config.json`);
    const layers = w.countLayers('layers.');
    agree(w, 'num_hidden_layers', num(cfg, 'num_hidden_layers'), layers, `layers.${layers - 1}.*`);
    const eps = num(cfg, 'rms_norm_eps') ?? 1e-6;
    const qd = heads * headDim;
    const kd = kvHeads * headDim;
    const blocks: BlockSpec[] = [];
    for (let i = 0; i < layers; i++) {
      const b = w.sub(`layers.${i}.`);
      const gate = b.linearAny('mlp.gate_proj', d);
      const inter = gate.weight.shape[0];
      blocks.push({
        norm1: b.norm('input_layernorm', d, eps, 'rmsnorm'),
        q: b.linear('self_attn.q_proj', qd, d),
        k: b.linear('self_attn.k_proj', kd, d),
        v: b.linear('self_attn.v_proj', kd, d),
        o: b.linear('self_attn.o_proj', d, qd),
        norm2: b.norm('post_attention_layernorm', d, eps, 'rmsnorm'),
        mlp: { kind: 'swiglu', w12: gate, up: b.linear('mlp.up_proj', inter, d), w3: b.linear('mlp.down_proj', d, inter) },
      });
    }
    return textSpec(input, {
      family: 'text-llama',
      width: d,
      heads,
      kvHeads,
      headDim,
      blocks,
      finalNorm: w.norm('norm', d, eps, 'rmsnorm'),
      activation: activation(str(cfg, 'hidden_act'), 'silu', w.file),
      notes,
    });
  },
};
