import * as fs from 'fs';
import * as path from 'path';
import { inflateSync } from 'zlib';

export const FIXTURES = path.join(__dirname, 'fixtures');

/** The A1111 samples the Python and Jest tests share (blocks between `=====` lines). */
export const SAMPLES_FILE = path.resolve(
  __dirname,
  '../../tests/fixtures/a1111-infotext-samples.txt'
);

/** The sample blocks of the repository's own samples file. */
export function readSamples(file = SAMPLES_FILE): string[] {
  const blocks: string[] = [];
  let current: string[] = [];
  const flush = () => {
    const text = current.join('\n').trim();
    if (text) {
      blocks.push(text);
    }
    current = [];
  };
  for (const line of fs.readFileSync(file, 'utf-8').split('\n')) {
    if (line.startsWith('#')) {
      continue;
    }
    if (line.startsWith('=====')) {
      flush();
    } else {
      current.push(line);
    }
  }
  flush();
  return blocks;
}

export function fixture(name: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(FIXTURES, name)));
}

/** Expected parse results, written by make_fixtures.py with jupyter_sd's Python parser. */
export interface IExpected {
  chunk: string;
  parameters: string | null;
  prompt?: string;
  negativePrompt?: string;
  params?: Record<string, string>;
}

export function expected(): Record<string, IExpected> {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf-8'));
}

/** Node's zlib, to check the reader also works with another inflater. */
export const nodeInflate = async (data: Uint8Array) => new Uint8Array(inflateSync(data));

/** A translation bundle formatting like JupyterLab's gettext: %1… are arguments, %% is %. */
export const trans = {
  __: (s: string, ...args: unknown[]) =>
    s.replace(/%%|%(\d+)/g, (m, i) => (m === '%%' ? '%' : String(args[Number(i) - 1])))
} as any;
