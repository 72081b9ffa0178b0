/**
 * A minimal Parquet writer for tests (no Python, no extra dependency): uncompressed PLAIN data
 * pages v1, RLE definition levels, optional columns, one data page per column chunk, several
 * row groups. Enough to write what Hugging Face `datasets` writes for an image dataset:
 *
 *   image: struct<bytes: binary, path: string> (optional), label: int64 (optional)
 */
import { writeFileSync } from 'node:fs';

class Thrift {
  readonly out: number[] = [];
  private last: number[] = [0];
  byte(b: number) {
    this.out.push(b & 0xff);
  }
  varint(v: bigint) {
    let x = v;
    while (x >= 0x80n) {
      this.byte(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.byte(Number(x));
  }
  private zz(v: number | bigint): bigint {
    const b = BigInt(v);
    return b >= 0n ? b << 1n : ((-b) << 1n) - 1n;
  }
  private field(id: number, type: number) {
    const top = this.last.length - 1;
    const delta = id - this.last[top];
    if (delta > 0 && delta <= 15) this.byte((delta << 4) | type);
    else {
      this.byte(type);
      this.varint(this.zz(id));
    }
    this.last[top] = id;
  }
  i32(id: number, v: number) {
    this.field(id, 5);
    this.varint(this.zz(v));
  }
  i64(id: number, v: number | bigint) {
    this.field(id, 6);
    this.varint(this.zz(v));
  }
  binary(id: number, b: Uint8Array | string) {
    const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    this.field(id, 8);
    this.varint(BigInt(bytes.length));
    for (const x of bytes) this.byte(x);
  }
  struct(id: number, body: () => void) {
    this.field(id, 12);
    this.inStruct(body);
  }
  inStruct(body: () => void) {
    this.last.push(0);
    body();
    this.byte(0);
    this.last.pop();
  }
  list(id: number, elemType: number, n: number) {
    this.field(id, 9);
    if (n < 15) this.byte((n << 4) | elemType);
    else {
      this.byte(0xf0 | elemType);
      this.varint(BigInt(n));
    }
  }
  listI32(id: number, vs: number[]) {
    this.list(id, 5, vs.length);
    for (const v of vs) this.varint(this.zz(v));
  }
  listString(id: number, vs: string[]) {
    this.list(id, 8, vs.length);
    for (const v of vs) {
      const b = Buffer.from(v, 'utf8');
      this.varint(BigInt(b.length));
      for (const x of b) this.byte(x);
    }
  }
  bytes(): Buffer {
    return Buffer.from(this.out);
  }
}

const TYPE = { INT64: 2, BYTE_ARRAY: 6 } as const;

export type Cell = Uint8Array | string | bigint | number | null;

export interface LeafColumn {
  /** Path in the schema, e.g. ['image', 'bytes']. */
  path: string[];
  type: keyof typeof TYPE;
  utf8?: boolean;
  /** One value per row; null = absent. `parentNull[row]` marks a null parent struct. */
  values: Cell[];
}

export interface ParquetSpec {
  /** Top-level fields: a leaf, or a struct of leaves (all OPTIONAL). */
  fields: ({ name: string; leaf: LeafColumn } | { name: string; struct: LeafColumn[]; nullRows?: Set<number> })[];
  rows: number;
  rowGroupSize?: number;
}

function rleLevels(levels: number[], bitWidth: number): Buffer {
  const parts: number[] = [];
  const varint = (v: number) => {
    while (v >= 0x80) {
      parts.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    parts.push(v);
  };
  const width = Math.ceil(bitWidth / 8);
  let i = 0;
  while (i < levels.length) {
    let j = i;
    while (j < levels.length && levels[j] === levels[i]) j++;
    varint((j - i) << 1);
    for (let b = 0; b < width; b++) parts.push((levels[i] >> (8 * b)) & 0xff);
    i = j;
  }
  const body = Buffer.from(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([len, body]);
}

function plain(type: keyof typeof TYPE, vs: Cell[]): Buffer {
  const parts: Buffer[] = [];
  for (const v of vs) {
    if (type === 'INT64') {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(v as bigint | number));
      parts.push(b);
    } else {
      const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v as Uint8Array);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(bytes.length);
      parts.push(len, bytes);
    }
  }
  return Buffer.concat(parts);
}

export function writeParquet(path: string, spec: ParquetSpec): void {
  interface Leaf {
    col: LeafColumn;
    maxDef: number;
    parentNull?: Set<number>;
  }
  const leaves: Leaf[] = [];
  for (const f of spec.fields) {
    if ('leaf' in f) leaves.push({ col: f.leaf, maxDef: 1 });
    else for (const c of f.struct) leaves.push({ col: c, maxDef: 2, parentNull: f.nullRows });
  }
  const chunks: Buffer[] = [Buffer.from('PAR1')];
  let offset = 4;
  const groupSize = spec.rowGroupSize ?? spec.rows;
  const groups: { rows: number; cols: { leaf: Leaf; offset: number; size: number; numValues: number }[] }[] = [];
  for (let start = 0; start < spec.rows; start += groupSize) {
    const end = Math.min(spec.rows, start + groupSize);
    const cols: (typeof groups)[number]['cols'] = [];
    for (const leaf of leaves) {
      const defs: number[] = [];
      const present: Cell[] = [];
      for (let r = start; r < end; r++) {
        if (leaf.parentNull?.has(r)) defs.push(0);
        else if (leaf.col.values[r] === null) defs.push(leaf.maxDef - 1);
        else {
          defs.push(leaf.maxDef);
          present.push(leaf.col.values[r]);
        }
      }
      const data = Buffer.concat([rleLevels(defs, Math.ceil(Math.log2(leaf.maxDef + 1))), plain(leaf.col.type, present)]);
      const ph = new Thrift();
      ph.i32(1, 0); // DATA_PAGE
      ph.i32(2, data.length);
      ph.i32(3, data.length);
      ph.struct(5, () => {
        ph.i32(1, end - start);
        ph.i32(2, 0); // PLAIN
        ph.i32(3, 3); // RLE
        ph.i32(4, 3);
      });
      ph.byte(0);
      const page = Buffer.concat([ph.bytes(), data]);
      cols.push({ leaf, offset, size: page.length, numValues: end - start });
      chunks.push(page);
      offset += page.length;
    }
    groups.push({ rows: end - start, cols });
  }
  const t = new Thrift();
  t.i32(1, 1);
  const schema: (() => void)[] = [];
  schema.push(() => {
    t.binary(4, 'schema');
    t.i32(5, spec.fields.length);
  });
  const leafElement = (c: LeafColumn, name: string) => () => {
    t.i32(1, TYPE[c.type]);
    t.i32(3, 1); // OPTIONAL
    t.binary(4, name);
    if (c.utf8) t.i32(6, 0); // UTF8
  };
  for (const f of spec.fields) {
    if ('leaf' in f) schema.push(leafElement(f.leaf, f.name));
    else {
      schema.push(() => {
        t.i32(3, 1);
        t.binary(4, f.name);
        t.i32(5, f.struct.length);
      });
      for (const c of f.struct) schema.push(leafElement(c, c.path[c.path.length - 1]));
    }
  }
  t.list(2, 12, schema.length);
  for (const s of schema) t.inStruct(s);
  t.i64(3, spec.rows);
  t.list(4, 12, groups.length);
  for (const g of groups) {
    t.inStruct(() => {
      t.list(1, 12, g.cols.length);
      for (const c of g.cols) {
        t.inStruct(() => {
          t.i64(2, c.offset);
          t.struct(3, () => {
            t.i32(1, TYPE[c.leaf.col.type]);
            t.listI32(2, [0, 3]);
            t.listString(3, c.leaf.col.path);
            t.i32(4, 0); // UNCOMPRESSED
            t.i64(5, c.numValues);
            t.i64(6, c.size);
            t.i64(7, c.size);
            t.i64(9, c.offset);
          });
        });
      }
      t.i64(2, g.cols.reduce((s, c) => s + c.size, 0));
      t.i64(3, g.rows);
    });
  }
  t.binary(6, 'qkscope test writer');
  t.byte(0);
  const meta = t.bytes();
  const len = Buffer.alloc(4);
  len.writeUInt32LE(meta.length);
  chunks.push(meta, len, Buffer.from('PAR1'));
  writeFileSync(path, Buffer.concat(chunks));
}

/** An image dataset the way Hugging Face datasets stores it (image struct + label). */
export function writeImageParquet(path: string, images: { bytes: Uint8Array | null; name: string }[], opts: { rowGroupSize?: number; nullRows?: number[] } = {}): void {
  writeParquet(path, {
    rows: images.length,
    rowGroupSize: opts.rowGroupSize,
    fields: [
      {
        name: 'image',
        nullRows: new Set(opts.nullRows ?? []),
        struct: [
          { path: ['image', 'bytes'], type: 'BYTE_ARRAY', values: images.map((i) => i.bytes) },
          { path: ['image', 'path'], type: 'BYTE_ARRAY', utf8: true, values: images.map((i) => i.name) },
        ],
      },
      { name: 'label', leaf: { path: ['label'], type: 'INT64', values: images.map((_, i) => BigInt(i % 7)) } },
    ],
  });
}
