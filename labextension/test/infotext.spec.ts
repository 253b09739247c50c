import {
  findParams,
  formatInfotext,
  paintCellSource,
  paramsObject,
  paramValue,
  parseInfotext,
  quote,
  unquote
} from '../src/infotext';
import { readPngText } from '../src/png';
import * as fs from 'fs';
import * as path from 'path';

import { expected, fixture, FIXTURES, readSamples } from './helpers';

const SAMPLES = readSamples();
const EXPECTED = expected();

describe('A1111 samples', () => {
  it('has samples to test', () => {
    expect(SAMPLES.length).toBeGreaterThanOrEqual(5);
  });

  it.each(SAMPLES.map((s, i) => [i + 1, s]))('sample %i parses and formats back', (_, text) => {
    const sample = text as string;
    const info = parseInfotext(sample);
    const lines = sample.split('\n');
    // The last line is a parameters line in every sample.
    expect(findParams(lines[lines.length - 1]).length).toBeGreaterThanOrEqual(3);
    expect(info.params.length).toBeGreaterThanOrEqual(3);
    expect(paramValue(info, 'Seed')).toMatch(/^\d+$/);
    expect(info.width).toBeGreaterThan(0);
    expect(info.prompt.length).toBeGreaterThan(0);
    expect(info.prompt).not.toContain('Negative prompt:');
    // Writing it back gives the text A1111 wrote.
    expect(formatInfotext(info)).toBe(sample);
  });

  it('reads the first sample field by field', () => {
    const info = parseInfotext(SAMPLES[0]);
    expect(info.prompt).toBe(
      'masterpiece, best quality, a watercolor fox in a snowy forest, soft light'
    );
    expect(info.negativePrompt).toBe('lowres, blurry, bad anatomy');
    expect(paramsObject(info)).toMatchObject({
      Steps: '20',
      Sampler: 'DPM++ 2M',
      'Schedule type': 'Karras',
      'CFG scale': '7',
      Seed: '1234567',
      Size: '512x768',
      'Model hash': '6ce0161689'
    });
    expect([info.width, info.height]).toEqual([512, 768]);
  });

  it('decodes JSON-quoted values', () => {
    const lora = parseInfotext(SAMPLES[1]);
    expect(paramValue(lora, 'Lora hashes')).toBe('add_detail: 7c6bad76eb54');
    expect(lora.prompt).toContain('<lora:add_detail:0.8>');
    const fruit = parseInfotext(SAMPLES[4]);
    expect(paramValue(fruit, 'Model')).toBe('my model, v2');
  });

  it('keeps a multi-line prompt', () => {
    const info = parseInfotext(SAMPLES[2]);
    expect(info.prompt).toBe('cinematic photo of a lighthouse at dusk,\ndramatic clouds, 35mm');
    expect(info.negativePrompt).toBe('');
  });
});

describe('parseInfotext edge cases', () => {
  it('treats a last line with fewer than 3 pairs as prompt', () => {
    const info = parseInfotext('a cat\nStyle: noir, Mood: calm');
    expect(info.prompt).toBe('a cat\nStyle: noir, Mood: calm');
    expect(info.params).toEqual([]);
  });

  it('reads a negative prompt over several lines', () => {
    const info = parseInfotext(
      'a dog\nNegative prompt: ugly\nblurry\nSteps: 5, Sampler: Euler, Seed: 3'
    );
    expect(info.prompt).toBe('a dog');
    expect(info.negativePrompt).toBe('ugly\nblurry');
  });

  it('reads a prompt alone', () => {
    expect(parseInfotext('  just a prompt \n')).toEqual({
      prompt: 'just a prompt',
      negativePrompt: '',
      params: []
    });
  });

  it('handles CRLF text', () => {
    const info = parseInfotext('a cat\r\nSteps: 5, Sampler: Euler, Seed: 3\r\n');
    expect(info.prompt).toBe('a cat');
    expect(paramValue(info, 'Seed')).toBe('3');
  });

  it('quotes like A1111', () => {
    expect(quote('Euler a')).toBe('Euler a');
    expect(quote('a, b')).toBe('"a, b"');
    expect(quote('a: b')).toBe('"a: b"');
    expect(quote('a\nb')).toBe('"a\\nb"');
    expect(quote('say "hi", ok')).toBe('"say \\"hi\\", ok"');
    expect(unquote('"a, \\"b\\""')).toBe('a, "b"');
    expect(unquote('"broken')).toBe('"broken');
    expect(unquote('"\\x"')).toBe('"\\x"');
  });

  it('round-trips awkward values', () => {
    const info = {
      prompt: 'p',
      negativePrompt: 'n',
      params: [
        { key: 'Steps', value: '2' },
        { key: 'Note', value: 'a, "b": c\nd' },
        { key: 'Seed', value: '1' }
      ]
    };
    const back = parseInfotext(formatInfotext(info));
    expect(back.params).toEqual(info.params);
  });
});

describe('the same file parses the same in both languages', () => {
  it.each(Object.keys(EXPECTED).filter(n => EXPECTED[n].parameters !== null))('%s', async name => {
    const text = (await readPngText(fixture(name))).get('parameters')!;
    const info = parseInfotext(text);
    const want = EXPECTED[name];
    expect(info.prompt).toBe(want.prompt);
    expect(info.negativePrompt).toBe(want.negativePrompt);
    expect(paramsObject(info)).toEqual(want.params);
  });
});

describe('every A1111 sample parses as in Python', () => {
  const recorded: Array<{ text: string; prompt: string; negativePrompt: string; params: object }> =
    JSON.parse(fs.readFileSync(path.join(FIXTURES, 'samples-python.json'), 'utf-8'));

  it('covers the samples file in tests/fixtures', () => {
    expect(recorded.map(r => r.text)).toEqual(SAMPLES);
  });

  it.each(recorded.map((r, i) => [i + 1, r]))('sample %i', (_, r) => {
    const want = r as (typeof recorded)[number];
    const info = parseInfotext(want.text);
    expect([info.prompt, info.negativePrompt, paramsObject(info)]).toEqual([
      want.prompt,
      want.negativePrompt,
      want.params
    ]);
  });
});

describe('paintCellSource', () => {
  it('puts the magic line above the generation data', () => {
    expect(paintCellSource('a cat\nSteps: 5, Sampler: Euler, Seed: 3\n')).toBe(
      '%%paint\na cat\nSteps: 5, Sampler: Euler, Seed: 3'
    );
  });
});
