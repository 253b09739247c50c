import { isPng, readPngText } from '../src/png';
import { expected, fixture, nodeInflate } from './helpers';

const EXPECTED = expected();

describe('readPngText', () => {
  it.each(Object.keys(EXPECTED))('reads the parameters chunk of %s', async name => {
    const bytes = fixture(name);
    const text = await readPngText(bytes);
    expect(text.get('parameters') ?? null).toBe(EXPECTED[name].parameters);
  });

  it.each(Object.keys(EXPECTED))('reads %s with node zlib too', async name => {
    const text = await readPngText(fixture(name), nodeInflate);
    expect(text.get('parameters') ?? null).toBe(EXPECTED[name].parameters);
  });

  it('covers every chunk kind the contract names', () => {
    const kinds = (name: string) => {
      const s = Buffer.from(fixture(name)).toString('latin1');
      return ['tEXt', 'zTXt', 'iTXt'].filter(k => s.includes(k));
    };
    expect(kinds('text-latin1.png')).toEqual(['tEXt']);
    expect(kinds('itxt-unicode.png')).toContain('iTXt');
    expect(kinds('itxt-compressed.png')).toEqual(['iTXt']);
    expect(kinds('ztxt.png')).toEqual(['zTXt']);
  });

  it("reads the kernel's jupyter_sd JSON chunk", async () => {
    const text = await readPngText(fixture('text-latin1.png'));
    const payload = JSON.parse(text.get('jupyter_sd')!);
    expect(payload.request.prompt).toBe(EXPECTED['text-latin1.png'].prompt);
  });

  it('rejects bytes that are not a PNG', async () => {
    expect(isPng(new Uint8Array([1, 2, 3]))).toBe(false);
    await expect(readPngText(new TextEncoder().encode('GIF89a...'))).rejects.toThrow(/not a PNG/);
  });

  it('stops cleanly at a truncated file', async () => {
    const bytes = fixture('text-latin1.png');
    const cut = bytes.subarray(0, 60);
    const text = await readPngText(cut);
    expect(text.get('parameters')).toBeUndefined();
  });

  it('skips a chunk that fails to inflate and keeps the others', async () => {
    const failing = async () => {
      throw new Error('bad data');
    };
    const text = await readPngText(fixture('itxt-compressed.png'), failing);
    expect(text.size).toBe(0);
    const plain = await readPngText(fixture('text-latin1.png'), failing);
    expect(plain.get('parameters')).toBe(EXPECTED['text-latin1.png'].parameters);
  });
});
