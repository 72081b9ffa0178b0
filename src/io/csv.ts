/**
 * A tiny RFC 4180 CSV writer. Fields are quoted only when needed (they contain a comma, a
 * double quote, CR or LF, or start/end with a space); a double quote inside a quoted field is
 * doubled. Records end with CRLF as the RFC says (`eol: '\n'` for Unix style).
 *
 * Values: strings as is; numbers with JavaScript's shortest round-trip form (NaN → `NaN`,
 * ±Infinity → `inf` / `-inf`, which numpy, pandas and R all read); bigint as digits;
 * booleans as `true` / `false`; null and undefined as an empty field.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export type CsvValue = string | number | bigint | boolean | null | undefined;

export interface CsvOptions {
  /** Column names, written as the first record. */
  header?: readonly string[];
  /** Record separator, CRLF by default (RFC 4180). */
  eol?: '\r\n' | '\n';
}

export function csvField(v: CsvValue): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (v === Infinity) return 'inf';
    if (v === -Infinity) return '-inf';
    return String(v);
  }
  if (typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return /[",\r\n]/.test(v) || /^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function csvRecord(fields: readonly CsvValue[]): string {
  return fields.map(csvField).join(',');
}

/** The whole CSV text, every record (the last one too) terminated by `eol`. */
export function toCsv(rows: Iterable<readonly CsvValue[]>, options: CsvOptions = {}): string {
  const eol = options.eol ?? '\r\n';
  const out: string[] = [];
  if (options.header) out.push(csvRecord(options.header) + eol);
  for (const r of rows) out.push(csvRecord(r) + eol);
  return out.join('');
}

/**
 * Writes records to a file as they come (for tables too large to build as one string).
 * Checks that every record has the same number of fields as the first (or the header).
 */
export class CsvWriter {
  private fd: number | null;
  private width: number | null = null;
  private buffer: string[] = [];
  private buffered = 0;
  private readonly eol: string;

  constructor(readonly path: string, options: CsvOptions = {}) {
    this.eol = options.eol ?? '\r\n';
    this.fd = openSync(path, 'w');
    if (options.header) this.row(options.header);
  }

  row(fields: readonly CsvValue[]): void {
    if (this.fd === null) throw new Error(`${this.path}: CSV writer already closed`);
    if (this.width === null) this.width = fields.length;
    else if (fields.length !== this.width) throw new Error(`${this.path}: record has ${fields.length} fields, expected ${this.width}`);
    const line = csvRecord(fields) + this.eol;
    this.buffer.push(line);
    this.buffered += line.length;
    if (this.buffered > 1 << 20) this.flush();
  }

  private flush(): void {
    if (this.fd === null || this.buffer.length === 0) return;
    const b = Buffer.from(this.buffer.join(''), 'utf8');
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    this.buffer = [];
    this.buffered = 0;
  }

  close(): void {
    if (this.fd === null) return;
    this.flush();
    closeSync(this.fd);
    this.fd = null;
  }
}
