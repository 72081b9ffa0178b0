import type { Adapter, BuildInput } from '../adapter.js';
import { activation, agree, checkConfig, HEADS_DIVIDE, configFile, findPrefix, num, resolveHeads, RULES, str, Weights } from '../adapter.js';
import type { BlockSpec, NormSpec, VitSpec } from '../spec.js';
import { textSpec } from './text-common.js';

/** A LayerNorm saved as weight/bias, or gamma/beta (checkpoints converted from TensorFlow). */
function bertNorm(w: Weights, base: string, d: number, eps: number): NormSpec {
  if (w.has(`${base}.weight`) || !w.has(`${base}.gamma`)) return w.norm(base, d, eps);
  return { kind: 'layernorm', weight: w.ref(`${base}.gamma`, [d]), bias: w.ref(`${base}.beta`, [d]), eps };
}

/**
 * BERT-style post-norm encoders (HF `bert`, `roberta`): `encoder.layer.{i}.attention.self.
 * query/key/value`, `attention.output.dense`, `attention.output.LayerNorm`, `intermediate.dense`,
 * `output.dense`, `output.LayerNorm`; bare or under `bert.` / `roberta.`. Each block's norm1 is
 * the LayerNorm that produced its input (see VitSpec.postNorm).
 */
export function buildBert(input: BuildInput, family: string, defaultEps: number): VitSpec {
  const cfg = input.config ?? {};
  checkConfig(
    cfg,
    configFile(input),
    { hidden_size: RULES.width, num_attention_heads: RULES.heads, num_hidden_layers: RULES.layers, intermediate_size: RULES.hidden, layer_norm_eps: RULES.eps },
    [HEADS_DIVIDE('hidden_size', 'num_attention_heads')],
  );
  const notes: string[] = ['text model: weight analysis only', 'post-norm: norm1 is the LayerNorm that produced the block input'];
  const anchor = 'encoder.layer.0.attention.self.query.weight';
  const prefix = findPrefix(input.source, anchor, ['', 'bert.', 'roberta.', 'electra.']);
  const root = new Weights(input.source);
  if (prefix === undefined) throw root.missing(anchor);
  const w = root.withPrefix(prefix);
  const d = w.info(anchor).shape[1];
  agree(w, 'hidden_size', num(cfg, 'hidden_size'), d, anchor);
  const heads = resolveHeads(input, num(cfg, 'num_attention_heads'), d, notes, w.file);
  const layers = w.countLayers('encoder.layer.');
  agree(w, 'num_hidden_layers', num(cfg, 'num_hidden_layers'), layers, `encoder.layer.${layers - 1}.*`);
  const eps = num(cfg, 'layer_norm_eps') ?? defaultEps;
  const blocks: BlockSpec[] = [];
  for (let i = 0; i < layers; i++) {
    const b = w.sub(`encoder.layer.${i}.`);
    const fc1 = b.linearAny('intermediate.dense', d);
    blocks.push({
      norm1: i === 0 ? bertNorm(w, 'embeddings.LayerNorm', d, eps) : bertNorm(w, `encoder.layer.${i - 1}.output.LayerNorm`, d, eps),
      q: b.linear('attention.self.query', d, d),
      k: b.linear('attention.self.key', d, d),
      v: b.linear('attention.self.value', d, d),
      o: b.linear('attention.output.dense', d, d),
      norm2: bertNorm(b, 'attention.output.LayerNorm', d, eps),
      mlp: { kind: 'mlp', fc1, fc2: b.linear('output.dense', d, fc1.weight.shape[0]) },
    });
  }
  return textSpec(input, {
    family,
    width: d,
    heads,
    blocks,
    finalNorm: bertNorm(w, `encoder.layer.${layers - 1}.output.LayerNorm`, d, eps),
    activation: activation(str(cfg, 'hidden_act'), 'gelu', w.file),
    postNorm: true,
    notes,
  });
}

export const textBert: Adapter = {
  family: 'text-bert',
  label: 'bert (BertModel, BertForMaskedLM; text, weight analysis only)',
  modelTypes: ['bert'],
  build: (input) => buildBert(input, 'text-bert', 1e-12),
};

export const textRoberta: Adapter = {
  family: 'text-roberta',
  label: 'roberta (RobertaModel, RobertaForMaskedLM; text, weight analysis only)',
  modelTypes: ['roberta'],
  build: (input) => buildBert(input, 'text-roberta', 1e-5),
};
