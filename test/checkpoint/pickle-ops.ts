/**
 * Hand-assembled pickles for hostile fixtures: the opcodes a malicious file would use, which
 * the CPython-faithful Pickler (pickle-write.ts) never emits (self references, dangling memo
 * indices, 100k-deep nesting, calls of os.system ...). `pk(...)` concatenates parts: a number is
 * one byte, a string is latin-1 bytes, a Uint8Array is copied as is.
 */
export type Part = number | string | Uint8Array | Part[];

export function pk(...parts: Part[]): Buffer {
  const out: Buffer[] = [];
  const walk = (p: Part) => {
    if (typeof p === 'number') out.push(Buffer.from([p]));
    else if (typeof p === 'string') out.push(Buffer.from(p, 'latin1'));
    else if (Array.isArray(p)) p.forEach(walk);
    else out.push(Buffer.from(p));
  };
  parts.forEach(walk);
  return Buffer.concat(out);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

export const OP = {
  PROTO2: pk(0x80, 2),
  PROTO4: pk(0x80, 4),
  STOP: '.',
  MARK: '(',
  NONE: 'N',
  EMPTY_DICT: '}',
  EMPTY_LIST: ']',
  EMPTY_TUPLE: ')',
  SETITEM: 's',
  SETITEMS: 'u',
  APPEND: 'a',
  APPENDS: 'e',
  TUPLE: 't',
  TUPLE1: pk(0x85),
  TUPLE2: pk(0x86),
  TUPLE3: pk(0x87),
  REDUCE: 'R',
  BUILD: 'b',
  NEWOBJ: pk(0x81),
  STACK_GLOBAL: pk(0x93),
  MEMOIZE: pk(0x94),
  BINPERSID: 'Q',
  POP: '0',
  DUP: '2',
} as const;

/** A str (BINUNICODE). */
export function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return pk('X', u32(b.length), b);
}

/** A small non-negative int (BININT1/BININT2/BININT). */
export function int(n: number): Buffer {
  if (n >= 0 && n < 256) return pk('K', n);
  if (n >= 0 && n < 65536) {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return pk('M', b);
  }
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return pk('J', b);
}

/** GLOBAL 'module\nname\n'. */
export function glob(module: string, name: string): Buffer {
  return pk('c', module, '\n', name, '\n');
}

export const put = (i: number) => (i < 256 ? pk('q', i) : pk('r', u32(i)));
export const get = (i: number) => (i < 256 ? pk('h', i) : pk('j', u32(i)));

/** A tuple of the given encoded items (MARK ... TUPLE). */
export function tuple(...items: Part[]): Buffer {
  return pk('(', ...items, 't');
}

/**
 * A torch tensor on storage `key` ([numel] float32 storage, as torch.save's persistent id):
 * `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
 */
export function tensor(key: string, numel: number, shape: number[], stride: number[], offset = 0): Buffer {
  const pid = tuple(str('storage'), glob('torch', 'FloatStorage'), str(key), str('cpu'), int(numel));
  const ints = (xs: number[]) => tuple(...xs.map((x) => (x < 0 ? pk('J', (() => { const b = Buffer.alloc(4); b.writeInt32LE(x); return b; })()) : int(x))));
  return pk(
    glob('torch._utils', '_rebuild_tensor_v2'),
    tuple(pid, 'Q', int(offset), ints(shape), ints(stride), 0x89, glob('collections', 'OrderedDict'), ')', 'R'),
    'R',
  );
}
