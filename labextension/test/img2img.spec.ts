import { img2imgCellSource, relativePath, shellQuote } from '../src/img2img';

describe('relativePath', () => {
  it('names a file from a folder, going up where needed', () => {
    expect(relativePath('work/demo-paint/00001-1.png', 'work')).toBe('demo-paint/00001-1.png');
    expect(relativePath('demo-paint/00001-1.png', '')).toBe('demo-paint/00001-1.png');
    expect(relativePath('a/x.png', 'b/c')).toBe('../../a/x.png');
    expect(relativePath('a/b/x.png', 'a/c')).toBe('../b/x.png');
    expect(relativePath('a/x.png', 'a/x.png/')).toBe('../x.png'); // a folder named like the file
  });
});

describe('shellQuote', () => {
  it('leaves plain paths alone and quotes the rest as shlex reads them', () => {
    expect(shellQuote('demo-paint/00001-1.png')).toBe('demo-paint/00001-1.png');
    expect(shellQuote('My Notebook-paint/00001-1.png')).toBe("'My Notebook-paint/00001-1.png'");
    expect(shellQuote("it's.png")).toBe(`'it'"'"'s.png'`);
  });
});

describe('img2imgCellSource', () => {
  it('is the magic with --init, then the generation data', () => {
    const text = 'a fox\r\nNegative prompt: blurry\r\nSteps: 20, Seed: 1\n';
    expect(img2imgCellSource(text, 'nb/My NB-paint/00003-1.png', 'nb/My NB.ipynb')).toBe(
      "%%paint --init 'My NB-paint/00003-1.png'\na fox\nNegative prompt: blurry\nSteps: 20, Seed: 1"
    );
    expect(img2imgCellSource('a fox', 'p/00001-1.png', null)).toBe(
      '%%paint --init p/00001-1.png\na fox'
    );
  });
});
