import { isPaintCell, PaintClass, paintTokens } from '../src/paintSyntax';
import { readSamples } from './helpers';

/** The text of each token, by class. */
function parts(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const t of paintTokens(text)) {
    (out[t.cls] ??= []).push(text.slice(t.from, t.to));
  }
  return out;
}

describe('isPaintCell', () => {
  it('needs %%paint as the first line', () => {
    expect(isPaintCell('%%paint\na cat')).toBe(true);
    expect(isPaintCell('%%paint --steps 4\na cat')).toBe(true);
    expect(isPaintCell('%%painter\na cat')).toBe(false);
    expect(isPaintCell('# %%paint\na cat')).toBe(false);
    expect(isPaintCell('x = 1\n%%paint')).toBe(false);
    expect(isPaintCell('%paint panel')).toBe(false);
  });

  it('gives no tokens to other cells', () => {
    expect(paintTokens('print("(word:1.2) <lora:x:1>")')).toEqual([]);
    expect(paintTokens('# Title\nNegative prompt: x')).toEqual([]);
  });
});

describe('paintTokens', () => {
  const cell = [
    '%%paint --steps 20 --seed 1 --sampler "Euler a"',
    'a (red:1.2) circle, [blurry], <lora:add_detail:0.8> BREAK blue',
    'Negative prompt: ugly, (bad hands:1.4)',
    'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 64x64, Model: "my model, v2"'
  ].join('\n');
  const p = parts(cell);

  it('marks the magic and its options', () => {
    expect(p[PaintClass.magic]).toEqual(['%%paint']);
    expect(p[PaintClass.option]).toEqual(['--steps', '--seed', '--sampler']);
    expect(p[PaintClass.optionValue]).toEqual(['20', '1', '"Euler a"']);
  });

  it('marks the prompt and what is inside it', () => {
    expect(p[PaintClass.prompt]).toEqual([
      'a (red:1.2) circle, [blurry], <lora:add_detail:0.8> BREAK blue'
    ]);
    expect(p[PaintClass.emphasis]).toEqual(['(red:1.2)', '[blurry]', '(bad hands:1.4)']);
    expect(p[PaintClass.weight]).toEqual(['1.2', '1.4']);
    expect(p[PaintClass.tag]).toEqual(['<lora:add_detail:0.8>']);
    expect(p[PaintClass.keyword]).toEqual(['BREAK']);
  });

  it('marks the negative prompt', () => {
    expect(p[PaintClass.negativeLabel]).toEqual(['Negative prompt:']);
    expect(p[PaintClass.negative]).toEqual([' ugly, (bad hands:1.4)']);
  });

  it('marks the parameters line', () => {
    expect(p[PaintClass.paramKey]).toEqual([
      'Steps',
      'Sampler',
      'CFG scale',
      'Seed',
      'Size',
      'Model'
    ]);
    expect(p[PaintClass.paramValue]).toEqual([
      '20',
      'DPM++ 2M',
      '7',
      '1',
      '64x64',
      '"my model, v2"'
    ]);
  });

  it('treats a short last line as prompt', () => {
    const q = parts('%%paint\na cat\nStyle: noir');
    expect(q[PaintClass.prompt]).toEqual(['a cat', 'Style: noir']);
    expect(q[PaintClass.paramKey]).toBeUndefined();
  });

  it('keeps tokens sorted and inside the text', () => {
    const tokens = paintTokens(cell);
    for (let i = 1; i < tokens.length; i++) {
      expect(tokens[i].from).toBeGreaterThanOrEqual(tokens[i - 1].from);
    }
    expect(tokens.every(t => t.from < t.to && t.to <= cell.length)).toBe(true);
  });

  it.each(readSamples().map((s, i) => [i + 1, s]))(
    'finds the parameters line of sample %i pasted into a cell',
    (_, sample) => {
      const q = parts(`%%paint\n${sample}`);
      expect(q[PaintClass.paramKey]).toContain('Seed');
      expect(q[PaintClass.prompt]?.length).toBeGreaterThan(0);
    }
  );

  describe('prompt editing and alternation', () => {
    /** Each token as [text, class], in order, inside the prompt line only. */
    const marks = (prompt: string) =>
      paintTokens(`%%paint\n${prompt}`)
        .filter(t => t.cls !== PaintClass.prompt && t.cls !== PaintClass.magic)
        .map(t => [`%%paint\n${prompt}`.slice(t.from, t.to), t.cls]);

    it('marks the brackets, colons and when of [from:to:when]', () => {
      expect(marks('a [cat:dog:0.5] b')).toEqual([
        ['[', PaintClass.edit],
        [':', PaintClass.edit],
        [':', PaintClass.edit],
        ['0.5', PaintClass.editWhen],
        [']', PaintClass.edit]
      ]);
    });

    it('marks [to:when] and [from::when] with integer steps', () => {
      expect(marks('[b: 12 ]').map(m => m[0])).toEqual(['[', ':', '12', ']']);
      expect(marks('[b::3]').map(m => m[0])).toEqual(['[', ':', ':', '3', ']']);
    });

    it('keeps the weights inside an editing bracket', () => {
      expect(marks('[(a:2):3]')).toEqual([
        ['[', PaintClass.edit],
        ['(a:2)', PaintClass.emphasis],
        ['2', PaintClass.weight],
        [':', PaintClass.edit],
        ['3', PaintClass.editWhen],
        [']', PaintClass.edit]
      ]);
    });

    it('marks the bars of alternation, empty options too', () => {
      expect(marks('[cow|horse|(pig:1.1)] in a field')).toEqual([
        ['[', PaintClass.alternation],
        ['|', PaintClass.alternation],
        ['|', PaintClass.alternation],
        ['(pig:1.1)', PaintClass.emphasis],
        ['1.1', PaintClass.weight],
        [']', PaintClass.alternation]
      ]);
      expect(marks('[fe|]male').map(m => m[0])).toEqual(['[', '|', ']']);
    });

    it('nests: the inner bracket is marked inside the outer emphasis', () => {
      const m = marks('((a [b:c:2]))');
      expect(m.filter(x => x[1] === PaintClass.edit).map(x => x[0])).toEqual(['[', ':', ':', ']']);
      expect(m).toContainEqual(['2', PaintClass.editWhen]);
    });

    it('leaves plain emphasis and malformed brackets alone', () => {
      expect(marks('[blurry]')).toEqual([['[blurry]', PaintClass.emphasis]]);
      expect(marks('[a:b:c:1]').some(m => m[1] === PaintClass.edit)).toBe(false);
      expect(marks('[a:b]').some(m => m[1] === PaintClass.edit)).toBe(false);
      expect(marks('a | b').some(m => m[1] === PaintClass.alternation)).toBe(false);
    });

    it('marks BREAK and AND, also next to editing brackets', () => {
      expect(
        marks('a [b:c:0.3] BREAK d AND e :0.5').filter(m => m[1] === PaintClass.keyword)
      ).toEqual([
        ['BREAK', PaintClass.keyword],
        ['AND', PaintClass.keyword]
      ]);
      expect(marks('ANDROID BREAKfast').some(m => m[1] === PaintClass.keyword)).toBe(false);
    });

    it('does not look inside a tag', () => {
      expect(marks('<lora:x:0.5> [a|b]')).toEqual([
        ['<lora:x:0.5>', PaintClass.tag],
        ['[', PaintClass.alternation],
        ['|', PaintClass.alternation],
        [']', PaintClass.alternation]
      ]);
    });
  });
});
