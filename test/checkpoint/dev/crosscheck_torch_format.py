"""Dev-only cross-check (needs Python 3, not torch): the checkpoints written by
crosscheck-write.mjs must (1) be valid zip files whose CRCs check out and whose layout is
torch's, and (2) contain a data.pkl byte-identical to what CPython's C pickler emits for the same
objects through torch.save's persistent_id / __reduce_ex__ logic (reproduced with stand-in
classes, as torch/serialization.py `_save` and torch/_tensor.py do it)."""
import collections, io, pickle, struct, sys, types, zipfile

torch = types.ModuleType('torch'); tu = types.ModuleType('torch._utils')
sys.modules['torch'] = torch; sys.modules['torch._utils'] = tu
def _rebuild_tensor_v2(*a): return ('tensor',) + a
_rebuild_tensor_v2.__module__ = 'torch._utils'; tu._rebuild_tensor_v2 = _rebuild_tensor_v2
for n in ['FloatStorage', 'HalfStorage', 'BFloat16Storage', 'DoubleStorage', 'LongStorage']:
    c = type(n, (), {}); c.__module__ = 'torch'; setattr(torch, n, c)
yc = types.ModuleType('yacs.config'); sys.modules['yacs'] = types.ModuleType('yacs'); sys.modules['yacs.config'] = yc
class CfgNode(dict): pass
CfgNode.__module__ = 'yacs.config'; yc.CfgNode = CfgNode
import argparse

class Storage:
    def __init__(self, cls, n): self.cls, self.n = cls, n
class Tensor:
    def __init__(self, cls, shape, stride=None, offset=0, numel=None):
        self.shape = list(shape)
        if stride is None:
            stride, acc = [], 1
            for d in reversed(shape): stride.insert(0, acc); acc *= d
        self.strides = list(stride); self.offset = offset
        n = 1
        for d in shape: n *= d
        self.storage = Storage(cls, numel if numel is not None else n)
    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(self.strides), False, collections.OrderedDict()))

def dump(obj):
    id_map = {}
    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = id_map.setdefault(id(o), str(len(id_map)))
                return ('storage', o.cls, key, 'cpu', o.n)
            return None
    b = io.BytesIO(); P(b, protocol=2).dump(obj); return b.getvalue()

def sd(d):
    o = collections.OrderedDict(d); o._metadata = collections.OrderedDict([('', {'version': 1})]); return o

def ramp(n, s=1.0): return [(i - n / 2) * s for i in range(n)]

cases = {}
cases['pytorch_model.bin'] = sd([
    ('embeddings.cls_token', Tensor(torch.FloatStorage, [1, 1, 4])),
    ('encoder.layer.0.attention.query.weight', Tensor(torch.HalfStorage, [4, 4])),
    ('encoder.layer.0.attention.query.bias', Tensor(torch.BFloat16Storage, [4])),
    ('pooler.dense.weight', Tensor(torch.DoubleStorage, [2, 3])),
    ('embeddings.position_ids', Tensor(torch.LongStorage, [1, 5])),
])
fresh = lambda k: ''.join(list(k))  # a new str object: JS strings have no identity, so none may be shared
STATE = lambda: {fresh('__immutable__'): False, fresh('__deprecated_keys__'): [], fresh('__renamed_keys__'): {}, fresh('__new_allowed__'): False}
inner = CfgNode(); inner['TYPE'] = 'vit'; inner.__dict__.update(STATE())
cfg = CfgNode(); cfg['MODEL'] = inner; cfg.__dict__.update(STATE())
many = {f'k{i}': i for i in range(1003)}
cases['simmim.pth'] = {
    'model': collections.OrderedDict([('encoder.blocks.0.attn.qkv.weight', Tensor(torch.FloatStorage, [6, 2])), ('encoder.norm.weight', Tensor(torch.FloatStorage, [2]))]),
    'optimizer': {'state': {}, 'param_groups': [{'lr': 1.0, 'betas': (0.9, 0.999), 'params': [0, 1]}]},
    'config': cfg, 'epoch': 799, 'big': 2 ** 70, 'neg': -123456789012, 'many': many, 'single': [7], 'nothing': None, 'flag': True,
}
ns = argparse.Namespace(learning_rate=0.001, name='x')
cases['ijepa.pth.tar'] = {
    'encoder': collections.OrderedDict([('module.blocks.0.attn.qkv.weight', Tensor(torch.FloatStorage, [3, 4], [1, 3], 0, 12)), ('module.pos_embed', Tensor(torch.FloatStorage, [1, 2, 2]))]),
    'predictor': collections.OrderedDict([('module.predictor_embed.weight', Tensor(torch.FloatStorage, [2, 2]))]),
    'opt': {'state': {}, 'param_groups': []},
    'scaler': {'scale': 65536.0, 'growth_factor': 2.0, '_growth_tracker': 0},
    'epoch': 300, 'loss': 0.123, 'batch_size': 2048, 'world_size': 16, 'lr': 0.001, 'args': ns,
}

def _d(b):
    import pickletools
    o = io.StringIO(); pickletools.dis(b, out=o, annotate=0); return o.getvalue()

d = sys.argv[1]; ok = True
for name, obj in cases.items():
    z = zipfile.ZipFile(f'{d}/{name}')
    bad = z.testzip()
    names = z.namelist()
    stem = name.rsplit('.', 1)[0]
    mine = z.read(f'{stem}/data.pkl'); ref = dump(obj)
    same = mine == ref
    ok &= same and bad is None
    print(f'{name}: entries={names} crc_ok={bad is None} pickle_identical={same}')
    if not same:
        import pickletools
        for i, (a, b) in enumerate(zip(mine, ref)):
            if a != b: print('first diff at', i); break
        print('mine:'); import difflib; A=[l for l in io.StringIO(_d(mine)).read().splitlines()]; B=io.StringIO(_d(ref)).read().splitlines(); print("\n".join(list(difflib.unified_diff(A,B,lineterm=""))[:60]))
    for info in z.infolist():
        with open(f'{d}/{name}', 'rb') as f:
            f.seek(info.header_offset); h = f.read(30)
            nl, xl = struct.unpack('<HH', h[26:30])
            start = info.header_offset + 30 + nl + xl
            assert start % 64 == 0, (info.filename, start)
print('ALL OK' if ok else 'MISMATCH'); sys.exit(0 if ok else 1)
