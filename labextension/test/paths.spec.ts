import {
  compareNewestFirst,
  dirname,
  join,
  paintFolderFor,
  paintImages,
  sameListing
} from '../src/paths';

const entry = (name: string, time = '2026-01-01T00:00:00Z', type = 'file') => ({
  name,
  path: `nb-paint/${name}`,
  type,
  last_modified: time
});

describe('paintFolderFor', () => {
  it('is NAME-paint beside the notebook', () => {
    expect(paintFolderFor('work/demo.ipynb')).toBe('work/demo-paint');
    expect(paintFolderFor('demo.ipynb')).toBe('demo-paint');
    expect(paintFolderFor('/a/b/My Notebook.ipynb')).toBe('a/b/My Notebook-paint');
    expect(paintFolderFor('x.v2.ipynb')).toBe('x.v2-paint');
  });

  it('joins and splits contents paths', () => {
    expect(join('', 'a/', '/b')).toBe('a/b');
    expect(dirname('a/b/c.png')).toBe('a/b');
    expect(dirname('c.png')).toBe('');
  });
});

describe('paintImages', () => {
  it('keeps PNG files, newest (highest number) first', () => {
    const images = paintImages([
      entry('00002-7.png'),
      entry('00010-3.png'),
      entry('notes.txt'),
      entry('sub', undefined, 'directory'),
      entry('00001-42.png'),
      entry('.tmp-abc.png.partial'),
      entry('.tmp-k2j3.png'),
      entry('00010-3-mask.png'),
      entry('00002-7-init.png'),
      entry('mask-0123456789ab.png')
    ]);
    expect(images.map(i => i.name)).toEqual(['00010-3.png', '00002-7.png', '00001-42.png']);
    expect(images[0]).toMatchObject({ index: 10, seed: '3', path: 'nb-paint/00010-3.png' });
  });

  it('sorts other PNGs after numbered ones, newest first', () => {
    const images = paintImages([
      entry('b.png', '2026-01-01T00:00:00Z'),
      entry('a.png', '2026-01-02T00:00:00Z'),
      entry('00001-1.png', '2025-01-01T00:00:00Z')
    ]);
    expect(images.map(i => i.name)).toEqual(['00001-1.png', 'a.png', 'b.png']);
    expect(compareNewestFirst(images[1], images[2])).toBeLessThan(0);
  });

  it('notices changed files', () => {
    const a = paintImages([entry('00001-1.png')]);
    const b = paintImages([entry('00001-1.png', '2026-02-01T00:00:00Z')]);
    expect(sameListing(a, paintImages([entry('00001-1.png')]))).toBe(true);
    expect(sameListing(a, b)).toBe(false);
    expect(sameListing(a, [])).toBe(false);
  });
});
