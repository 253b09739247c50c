import { GalleryModel } from '../src/galleryModel';
import { FakeBackend } from './fakeBackend';
import { expected } from './helpers';

const EXPECTED = expected();

describe('GalleryModel', () => {
  let backend: FakeBackend;
  let model: GalleryModel;

  beforeEach(() => {
    backend = new FakeBackend();
    backend.add('nb-paint/00001-1.png', 'text-latin1.png');
    backend.add('nb-paint/00002-42.png', 'itxt-unicode.png');
    backend.add('other/00001-5.png', 'ztxt.png');
    model = new GalleryModel(backend);
  });

  afterEach(() => model.dispose());

  it('lists a folder newest first', async () => {
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    expect(model.images.map(i => i.name)).toEqual(['00002-42.png', '00001-1.png']);
    expect(model.folderExists).toBe(true);
  });

  it('shows an empty list for a folder that does not exist yet', async () => {
    model.setFolder('nothing-paint', 'notebook');
    await model.refresh();
    expect(model.images).toEqual([]);
    expect(model.folderExists).toBe(false);
  });

  it('emits changed only when the listing changes', async () => {
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    let changes = 0;
    model.changed.connect(() => changes++);
    await model.refresh();
    expect(changes).toBe(0);
    backend.add('nb-paint/00003-9.png', 'xss.png');
    await model.refresh();
    expect(changes).toBe(1);
    expect(model.images[0].name).toBe('00003-9.png');
  });

  it('reads details once per file version', async () => {
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    const image = model.images[1];
    const details = await model.details(image);
    await model.details(image);
    expect(backend.reads).toEqual(['nb-paint/00001-1.png']);
    expect(details.infotext).toBe(EXPECTED['text-latin1.png'].parameters);
    expect(details.parsed?.prompt).toBe(EXPECTED['text-latin1.png'].prompt);
    expect(details.request).toMatchObject({ request: { steps: 20 } });
  });

  it('reports no data for a PNG without chunks', async () => {
    backend.add('nb-paint/00004-1.png', 'no-metadata.png');
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    const details = await model.details(model.images[0]);
    expect(details).toEqual({ infotext: null, parsed: null, request: null });
  });

  it('keeps the selection while the image exists', async () => {
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    model.select('nb-paint/00001-1.png');
    expect(model.selected?.name).toBe('00001-1.png');
    await model.remove(model.selected!);
    expect(model.selected).toBeNull();
    expect(model.images.map(i => i.name)).toEqual(['00002-42.png']);
  });

  it('switches folders and drops the old selection', async () => {
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    model.select(model.images[0].path);
    model.setFolder('other', 'picked');
    await model.refresh();
    expect(model.source).toBe('picked');
    expect(model.selected).toBeNull();
    expect(model.images.map(i => i.path)).toEqual(['other/00001-5.png']);
  });

  it('shows listing errors and recovers', async () => {
    model.setFolder('nb-paint', 'notebook');
    backend.failList = new Error('server gone');
    await model.refresh();
    expect(model.error).toBe('server gone');
    backend.failList = null;
    await model.refresh();
    expect(model.error).toBe('');
    expect(model.images.length).toBe(2);
  });

  it('gives image URLs that change with the file', async () => {
    model.setFolder('nb-paint', 'notebook');
    await model.refresh();
    expect(model.imageUrl(model.images[0])).toBe(
      '/files/nb-paint/00002-42.png?v=2026-01-01T00%3A00%3A00Z'
    );
  });

  it('polls until stopped', async () => {
    jest.useFakeTimers();
    try {
      model.setFolder('nb-paint', 'notebook');
      const before = backend.lists;
      model.startPolling(1000);
      expect(model.isPolling).toBe(true);
      await jest.advanceTimersByTimeAsync(3500);
      expect(backend.lists - before).toBeGreaterThanOrEqual(3);
      model.stopPolling();
      const stopped = backend.lists;
      await jest.advanceTimersByTimeAsync(5000);
      expect(backend.lists).toBe(stopped);
      expect(model.isPolling).toBe(false);
    } finally {
      jest.useRealTimers();
    }
  });
});
