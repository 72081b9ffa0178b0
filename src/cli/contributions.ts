import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { parseDevice } from '../runtime/device.js';
import { headModes } from '../analysis/modes.js';
import { modeContributions, type ContributionResult } from '../analysis/contributions.js';
import { writeNpy } from '../io/npy.js';
import { toCsv } from '../io/csv.js';
import { writeFigure } from '../report/svd-figures.js';
import { contributionsFigure } from '../report/figures/contributions.js';
import { VERSION } from '../version.js';
import type { VitSpec } from '../arch/spec.js';
import { ensureDir } from '../io/fs.js';
import { loadSpec } from '../arch/load.js';
import { loadPixels } from '../images/preprocess.js';
import { checkLayerHead, headWeights } from '../arch/head-weights.js';
import { relPosBiasHead, scoresTap } from '../runtime/taps.js';
import { patchToken } from '../arch/tokens.js';
import { expandImagePaths } from '../images/sources.js';

interface ContributionsFlags extends ModelFlags {
  out: string;
  layer: number;
  head: number;
  queryPatch?: [number, number];
  top: number;
  device: string;
  figures: boolean;
}

export const CONTRIBUTION_DEFINITION =
  'C_n = Σ_{i∈R} Σ_j A_ij σ_n (x_i·u_n)(v_n·x_j)/sqrt(d_h): x = LayerNorm output feeding the block, A = the model’s attention of this head, ' +
  'j over all tokens, R = all tokens (or the --query-patch token); σ_n of W_qᵀW_k (unscaled). Bias terms get the same weighting: ' +
  'key_bias = Σ A_ij b_q·W_k x_j/√d_h, query_bias = Σ A_ij W_q x_i·b_k/√d_h, constant = Σ A_ij b_q·b_k/√d_h, relative_position = Σ A_ij r_ij. ' +
  'Σ_n C_n + bias terms = Σ_{i∈R} Σ_j A_ij a_ij. Modes ranked by C_n, largest first.';

function nonNegInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a 0-based index (0, 1, 2, ...)`);
    return n;
  };
}

function parsePatch(v: string): [number, number] {
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(v);
  if (!m) throw new UserError(`--query-patch ${v}: expected row,col of a patch (0-based), e.g. 7,7`);
  return [Number(m[1]), Number(m[2])];
}

export interface ContributionsRun {
  result: ContributionResult;
  summary: Record<string, unknown>;
}

/** The library entry point behind the command. */
export async function runContributions(
  spec: VitSpec,
  image: string,
  opts: { layer: number; head: number; queryPatch?: [number, number]; top?: number; outDir: string; device?: 'cpu' | 'cuda'; figures?: boolean; input?: string },
): Promise<ContributionsRun> {
  const { layer: l, head: h } = opts;
  checkLayerHead(spec, l, h);
  const { pixels, imageSize } = await loadPixels(spec, [image]);
  const tap = scoresTap([l]);
  const rt = await VitRuntime.create(spec, { outputs: { ln: [l], attention: [l] }, imageSize, device: opts.device, extend: tap.extend });
  let run;
  try {
    run = await rt.run(pixels, 1);
  } finally {
    await rt.close();
  }
  const layout = rt.layout;
  const T = layout.tokens, d = spec.width, H = spec.heads, dh = spec.headDim;
  const [R, C] = layout.grid;
  let rows: number[];
  if (opts.queryPatch) {
    const [r, c] = opts.queryPatch;
    if (r >= R || c >= C) throw new UserError(`--query-patch ${r},${c}: the patch grid is ${R}x${C} (rows 0..${R - 1}, columns 0..${C - 1})`);
    rows = [patchToken(layout, r, c)];
  } else rows = Array.from({ length: T }, (_, i) => i);
  const w = await headWeights(spec, l, h);
  const modes = headModes(w.wq, w.wk, w.bq, d, dh, l, h);
  const attention = run.attention!.subarray(h * T * T, (h + 1) * T * T);
  const scores = tap.found() ? run.extra[`scores.${l}`].data.subarray(h * T * T, (h + 1) * T * T) : null;
  const result = modeContributions({
    x: run.ln!,
    T,
    d,
    dh,
    wq: w.wq,
    wk: w.wk,
    bq: w.bq,
    bk: w.bk,
    modes,
    attention,
    relPos: await relPosBiasHead(spec, l, h, layout),
    rows,
    modelScores: scores,
  });
  ensureDir(opts.outDir);
  const nm = modes.sigma.length;
  const P = layout.patches, ps = layout.patchStart;
  const patchMaps = (M: Float64Array) => {
    const o = new Float32Array(nm * P);
    for (let n = 0; n < nm; n++) for (let p = 0; p < P; p++) o[n * P + p] = M[n * T + ps + p];
    return o;
  };
  writeNpy(join(opts.outDir, 'query_maps.npy'), '<f4', [nm, R, C], patchMaps(result.Q));
  writeNpy(join(opts.outDir, 'key_maps.npy'), '<f4', [nm, R, C], patchMaps(result.K));
  writeNpy(join(opts.outDir, 'logits.npy'), '<f8', [rows.length, T], result.logits);
  writeFileSync(
    join(opts.outDir, 'contributions.csv'),
    toCsv([['rank', 'mode', 'sigma', 'cosine', 'contribution', 'share'], ...result.modes.map((m) => [m.rank, m.mode, m.sigma, m.cosine, m.contribution, m.share])]),
  );
  const summary = {
    tool: 'qkscope',
    version: VERSION,
    command: 'contributions',
    created: new Date().toISOString(),
    model: { id: spec.modelId, family: spec.family, layers: spec.layers, heads: H, width: d, head_dim: dh },
    input: opts.input ?? null,
    image,
    index_base: 0,
    layer: l,
    head: h,
    query: opts.queryPatch ? { patch: opts.queryPatch, token: rows[0] } : 'all tokens',
    embedding: 'ln',
    definition: CONTRIBUTION_DEFINITION,
    sigma_scale: 'σ_n of W_qᵀW_k, not divided by sqrt(d_h) (the 1/sqrt(d_h) is in the contribution)',
    modes: result.modes,
    terms: result.terms,
    total: result.total,
    sum_check: { modes_plus_terms: result.modes.reduce((a, m) => a + m.contribution, 0) + Object.values(result.terms).reduce((a, b) => a + b, 0), total: result.total },
    residual: {
      relative_to_model_scores: result.check.model_relative,
      relative_to_float64_logits: result.check.direct_relative,
      softmax_vs_model_attention_max_abs: result.check.softmax_max_abs,
      note: 'max |Σ_n parts + bias terms − logits| / max |logits| over the rows; model scores are the graph’s own pre-softmax tensor (float32)',
    },
    files: ['contributions.json', 'contributions.csv', 'query_maps.npy', 'key_maps.npy', 'logits.npy', ...(opts.figures === false ? [] : ['contributions.svg', 'contributions.png'])],
    shapes: { query_maps: [nm, R, C], key_maps: [nm, R, C], logits: [rows.length, T] },
    maps_order: 'mode index (not rank); patch tokens only, raster order',
  };
  writeFileSync(join(opts.outDir, 'contributions.json'), JSON.stringify(summary, null, 2) + '\n');
  if (opts.figures !== false) {
    const top = Math.min(opts.top ?? 8, nm);
    const ranked = result.modes.slice(0, top);
    const bars = [
      ...ranked.map((m) => ({ label: `M${m.mode} c=${m.cosine.toFixed(2)}`, value: m.contribution, kind: 'mode' as const })),
      { label: 'key bias', value: result.terms.key_bias, kind: 'bias' as const },
      ...(result.terms.relative_position !== 0 ? [{ label: 'rel. position', value: result.terms.relative_position, kind: 'bias' as const }] : []),
    ];
    const qm = patchMaps(result.Q), km = patchMaps(result.K);
    const maps = ranked.slice(0, Math.min(8, top)).map((m) => ({
      label: `L${l} H${h} M${m.mode}`,
      query: qm.subarray(m.mode * P, (m.mode + 1) * P),
      key: km.subarray(m.mode * P, (m.mode + 1) * P),
    }));
    await writeFigure(
      join(opts.outDir, 'contributions'),
      contributionsFigure({
        title: `${spec.modelId}: mode contributions, layer ${l} head ${h}`,
        subtitle: `${image}${opts.queryPatch ? `, query patch ${opts.queryPatch.join(',')}` : ', all queries'}; 0-based; maps: query red, key cyan, white both`,
        bars,
        maps,
        grid: [R, C],
        queryPatch: opts.queryPatch,
      }),
    );
  }
  return { result, summary };
}

export function contributionsCommand(): Command {
  const cmd = new Command('contributions')
    .description("rank one head's singular modes by their contribution to the attention scores on one image (paper figure 5)")
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<image>', 'image file (JPEG, PNG, WebP)')
    .requiredOption('-o, --out <dir>', 'output directory')
    .addOption(new Option('--layer <l>', 'block index (0-based)').argParser(nonNegInt('--layer')).makeOptionMandatory())
    .addOption(new Option('--head <h>', 'head index (0-based)').argParser(nonNegInt('--head')).makeOptionMandatory())
    .addOption(new Option('--query-patch <r,c>', 'only this query patch (row,col of the patch grid, 0-based); default: every query token').argParser(parsePatch))
    .addOption(new Option('--top <n>', 'modes drawn in the figure').default(8).argParser(positiveInt('--top')))
    .addOption(new Option('--device <device>', 'cpu, or cuda').default('cpu'))
    .option('--no-figures', 'skip contributions.svg/png')
    .addHelpText(
      'after',
      '\nDefinition: C_n = Σ_i Σ_j A_ij σ_n (x_i·u_n)(v_n·x_j)/√d_h (x = LayerNorm output, A = attention),\n' +
        'plus bias terms; together they reproduce the model’s logits (the residual is reported).\n' +
        'Writes contributions.json/.csv, query_maps.npy, key_maps.npy, logits.npy, contributions.svg/.png.\n' +
        '\nExample:\n  qkscope contributions google/vit-base-patch16-224 cat.jpg --layer 5 --head 3 --out runs/contrib\n' +
        '  qkscope contributions ./my-vit dog.png --layer 0 --head 0 --query-patch 7,7 --out runs/c77\n',
    );
  addModelOptions(cmd);
  cmd.action(async (model: string, image: string, flags: ContributionsFlags) => {
    const device = parseDevice(flags.device);
    const paths = expandImagePaths([image]);
    if (paths.length !== 1 || paths[0] !== image) throw new UserError(`${image}: give one image file, not a folder`);
    const path = paths[0];
    const { spec, close } = await loadSpec(model, flags);
    try {
      if (process.stderr.isTTY) process.stderr.write(`contributions: running ${spec.modelId} on ${path}\n`);
      const { result } = await runContributions(spec, path, {
        layer: flags.layer,
        head: flags.head,
        queryPatch: flags.queryPatch,
        top: flags.top,
        outDir: flags.out,
        device,
        figures: flags.figures,
        input: model,
      });
      const top = result.modes.slice(0, 3).map((m) => `M${m.mode} ${m.contribution.toFixed(3)}`).join(', ');
      const res = result.check.model_relative ?? result.check.direct_relative;
      process.stdout.write(`${spec.modelId} L${flags.layer} H${flags.head}: top modes ${top}; residual vs model logits ${res.toExponential(2)} (relative); wrote ${flags.out}\n`);
    } finally {
      await close();
    }
  });
  return cmd;
}
