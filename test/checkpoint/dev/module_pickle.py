"""Dev-only (Python 3, no torch needed): prints, base64, the data.pkl that torch.save(obj) writes
for a whole pickled nn.Module, using stand-in classes that pickle exactly as torch's do:
nn.Module has no __reduce__ of its own, so CPython saves it with copyreg.__newobj__ (NEWOBJ) and
BUILD of its __dict__ (the torch 2.x attribute set below); Parameter reduces to
_rebuild_parameter(tensor, requires_grad, OrderedDict()); tensors to _rebuild_tensor_v2 with a
persistent storage id. Its output is test/checkpoint/py-modules.ts (storage i holds
ramp(numel_i) + 100 * i)."""
import argparse, base64, collections, functools, io, json, pickle, sys, types

torch = types.ModuleType('torch'); tu = types.ModuleType('torch._utils')
sys.modules['torch'] = torch; sys.modules['torch._utils'] = tu
def _rebuild_tensor_v2(*a): pass
def _rebuild_parameter(*a): pass
_rebuild_tensor_v2.__module__ = _rebuild_parameter.__module__ = 'torch._utils'
tu._rebuild_tensor_v2 = _rebuild_tensor_v2; tu._rebuild_parameter = _rebuild_parameter
class FloatStorage: pass
FloatStorage.__module__ = 'torch'; torch.FloatStorage = FloatStorage

class Storage:
    def __init__(self, n): self.n = n
class Tensor:
    def __init__(self, *shape):
        self.shape = list(shape); n = 1
        for d in shape: n *= d
        self.stride, acc = [], 1
        for d in reversed(shape): self.stride.insert(0, acc); acc *= d
        self.storage = Storage(n)
    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(self.stride), False, collections.OrderedDict()))
class Parameter:
    def __init__(self, t): self.data = t
    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.data, True, collections.OrderedDict()))

def mk(modname, clsname):
    parts = modname.split('.')
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault('.'.join(parts[:i]), types.ModuleType('.'.join(parts[:i])))
    m = sys.modules[modname]
    c = type(clsname, (Module,), {}); c.__module__ = modname; setattr(m, clsname, c); return c

class Module:
    def __init__(self):
        d = self.__dict__
        d['training'] = False
        d['_parameters'] = {}; d['_buffers'] = {}; d['_non_persistent_buffers_set'] = set()
        for h in ['_backward_pre_hooks', '_backward_hooks', '_forward_hooks', '_forward_hooks_with_kwargs', '_forward_hooks_always_called',
                  '_forward_pre_hooks', '_forward_pre_hooks_with_kwargs', '_state_dict_hooks', '_state_dict_pre_hooks',
                  '_load_state_dict_pre_hooks', '_load_state_dict_post_hooks']:
            d[h] = collections.OrderedDict()
        d['_is_full_backward_hook'] = None
        d['_modules'] = {}

Linear = mk('torch.nn.modules.linear', 'Linear'); Identity = mk('torch.nn.modules.linear', 'Identity')
LayerNorm = mk('torch.nn.modules.normalization', 'LayerNorm'); GELU = mk('torch.nn.modules.activation', 'GELU')
Sequential = mk('torch.nn.modules.container', 'Sequential'); DataParallel = mk('torch.nn.parallel.data_parallel', 'DataParallel')
Attention = mk('timm.layers.attention', 'Attention'); Block = mk('timm.models.vision_transformer', 'Block')
VisionTransformer = mk('timm.models.vision_transformer', 'VisionTransformer')

def linear(i, o, bias=True):
    m = Linear(); m._parameters['weight'] = Parameter(Tensor(o, i)); m._parameters['bias'] = Parameter(Tensor(o)) if bias else None
    m.in_features, m.out_features = i, o; return m
def norm(d):
    m = LayerNorm(); m._parameters['weight'] = Parameter(Tensor(d)); m._parameters['bias'] = Parameter(Tensor(d))
    m.normalized_shape, m.eps, m.elementwise_affine = (d,), 1e-6, True; return m

vit = VisionTransformer()
vit._parameters['cls_token'] = Parameter(Tensor(1, 1, 4)); vit._parameters['pos_embed'] = Parameter(Tensor(1, 5, 4))
vit._buffers['attn_cache'] = Tensor(2); vit._non_persistent_buffers_set.add('attn_cache')
vit._buffers['relative_index'] = Tensor(3)
blocks = Sequential()
for i in range(2):
    b = Block(); a = Attention()
    a._modules['qkv'] = linear(4, 12); a._modules['q_norm'] = Identity(); a._modules['proj'] = linear(4, 4, bias=False)
    a.num_heads, a.head_dim, a.scale, a.fused_attn = 2, 2, 2 ** -0.5, True
    b._modules['norm1'] = norm(4); b._modules['attn'] = a; b._modules['ls1'] = None
    b._modules['mlp'] = Sequential(); b._modules['mlp']._modules['fc1'] = linear(4, 8); b._modules['mlp']._modules['act'] = GELU()
    b._modules['mlp']._modules['act'].approximate = 'none'
    blocks._modules[str(i)] = b
vit._modules['blocks'] = blocks; vit._modules['norm'] = norm(4); vit._modules['head'] = linear(4, 3)
vit.num_classes, vit.global_pool, vit.embed_dim = 3, 'token', 4
vit.norm_layer = functools.partial(LayerNorm, eps=1e-6)
dp = DataParallel(); dp._modules['module'] = vit; dp.device_ids = [0]

def dump(obj):
    keys = {}
    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = keys.setdefault(id(o), (str(len(keys)), o.n))[0]
                return ('storage', FloatStorage, key, 'cpu', o.n)
    b = io.BytesIO(); P(b, protocol=2).dump(obj)
    return b.getvalue(), {k: n for k, n in keys.values()}

pkl, numel = dump({'model': dp, 'args': argparse.Namespace(model='vit_tiny', lr=5e-4), 'epoch': 3})
print(json.dumps({'pkl': base64.b64encode(pkl).decode(), 'numel': numel}))
