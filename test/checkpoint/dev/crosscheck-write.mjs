// Dev-only (not run by npm test): writes checkpoints with writeTorchCheckpoint for
// crosscheck_torch_format.py, which rebuilds the same objects with CPython's own pickler and
// fake torch classes and compares data.pkl byte for byte. Usage: node crosscheck-write.mjs DIR
import { writeTorchCheckpoint, torchTensor, orderedDict, stateDict, pyObject, pyFloat, PyTuple } from '../../../dist/test/checkpoint/torch-write.js';
const dir = process.argv[2];
const ramp = (n, s = 1) => Array.from({ length: n }, (_, i) => (i - n / 2) * s);

// 1. An HF pytorch_model.bin: a flat state dict with _metadata.
writeTorchCheckpoint(`${dir}/pytorch_model.bin`, stateDict({
  'embeddings.cls_token': torchTensor('F32', [1, 1, 4], ramp(4)),
  'encoder.layer.0.attention.query.weight': torchTensor('F16', [4, 4], ramp(16, 0.25)),
  'encoder.layer.0.attention.query.bias': torchTensor('BF16', [4], ramp(4)),
  'pooler.dense.weight': torchTensor('F64', [2, 3], ramp(6)),
  'embeddings.position_ids': torchTensor('I64', [1, 5], [0, 1, 2, 3, 4]),
}));

// 2. SimMIM-like .pth: model + optimizer + CfgNode config + scalars.
const many = {};
for (let i = 0; i < 1003; i++) many[`k${i}`] = i;
writeTorchCheckpoint(`${dir}/simmim.pth`, {
  model: orderedDict({ 'encoder.blocks.0.attn.qkv.weight': torchTensor('F32', [6, 2], ramp(12)), 'encoder.norm.weight': torchTensor('F32', [2], [1, 1]) }),
  optimizer: { state: {}, param_groups: [{ lr: pyFloat(1), betas: new PyTuple(pyFloat(0.9), 0.999), params: [0, 1] }] },
  config: pyObject('yacs.config', 'CfgNode', { items: { MODEL: pyObject('yacs.config', 'CfgNode', { items: { TYPE: 'vit' }, state: { __immutable__: false, __deprecated_keys__: [], __renamed_keys__: {}, __new_allowed__: false } }) }, state: { __immutable__: false, __deprecated_keys__: [], __renamed_keys__: {}, __new_allowed__: false } }),
  epoch: 799,
  big: 2n ** 70n,
  neg: -123456789012,
  many,
  single: [7],
  nothing: null,
  flag: true,
});

// 3. I-JEPA-like .pth.tar with a non-contiguous view and DDP prefixes.
const storage = ramp(12);
writeTorchCheckpoint(`${dir}/ijepa.pth.tar`, {
  encoder: orderedDict({ 'module.blocks.0.attn.qkv.weight': torchTensor('F32', [3, 4], storage, { stride: [1, 3] }), 'module.pos_embed': torchTensor('F32', [1, 2, 2], ramp(4)) }),
  predictor: orderedDict({ 'module.predictor_embed.weight': torchTensor('F32', [2, 2], ramp(4)) }),
  opt: { state: {}, param_groups: [] },
  scaler: { scale: pyFloat(65536), growth_factor: pyFloat(2), _growth_tracker: 0 },
  epoch: 300, loss: 0.123, batch_size: 2048, world_size: 16, lr: 0.001,
  args: pyObject('argparse', 'Namespace', { state: { learning_rate: 0.001, name: 'x' } }),
}, { forceZip64: true });
console.log('written');
