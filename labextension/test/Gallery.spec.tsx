/**
 * @jest-environment jsdom
 */
import React, { act } from 'react';
import { createRoot, Root } from 'react-dom/client';

import { Gallery, IGalleryProps } from '../src/components/Gallery';
import { GalleryModel } from '../src/galleryModel';
import { FakeBackend } from './fakeBackend';
import { expected, trans } from './helpers';

(globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;

const EXPECTED = expected();

describe('Gallery', () => {
  let backend: FakeBackend;
  let model: GalleryModel;
  let host: HTMLElement;
  let root: Root;
  let calls: string[];
  let alerts: number;

  const render = async (extra: Partial<IGalleryProps> = {}) => {
    const props: IGalleryProps = {
      model,
      trans,
      canInsert: true,
      onInsert: i => calls.push(`insert ${i.path}`),
      onInsertImg2img: i => calls.push(`img2img ${i.path}`),
      onCopy: i => calls.push(`copy ${i.path}`),
      onOpen: i => calls.push(`open ${i.path}`),
      onDelete: i => calls.push(`delete ${i.path}`),
      onPickFolder: () => calls.push('pick'),
      onFollowNotebook: () => calls.push('follow'),
      ...extra
    };
    await act(async () => root.render(<Gallery {...props} />));
  };

  /** Let promises (PNG reads) settle inside act. */
  const settle = () => act(async () => new Promise(r => setTimeout(r, 20)));

  beforeEach(async () => {
    backend = new FakeBackend();
    backend.add('demo-paint/00001-1.png', 'text-latin1.png');
    backend.add('demo-paint/00002-7.png', 'xss.png');
    model = new GalleryModel(backend);
    calls = [];
    alerts = 0;
    (window as any).alert = () => alerts++;
    host = document.createElement('div');
    document.body.appendChild(host);
    root = createRoot(host);
    await act(async () => {
      model.setFolder('demo-paint', 'notebook');
      await model.refresh();
    });
  });

  afterEach(async () => {
    await act(async () => root.unmount());
    host.remove();
    model.dispose();
  });

  it('shows thumbnails newest first', async () => {
    await render();
    const thumbs = [...host.querySelectorAll('.jp-sd-thumb')];
    expect(thumbs.map(t => t.getAttribute('data-path'))).toEqual([
      'demo-paint/00002-7.png',
      'demo-paint/00001-1.png'
    ]);
    expect(host.querySelector('.jp-sd-thumb img')!.getAttribute('src')).toMatch(
      /^\/files\/demo-paint\/00002-7\.png\?v=/
    );
    expect(host.querySelector('.jp-sd-gallery-folder')!.textContent).toBe('/demo-paint');
  });

  it('shows the selected image with its parameters', async () => {
    await render();
    const thumb = host.querySelector('[data-path="demo-paint/00001-1.png"]') as HTMLElement;
    await act(async () => thumb.click());
    await settle();
    const details = host.querySelector('.jp-sd-details')!;
    expect(details.querySelector('.jp-sd-param-prompt')!.textContent).toBe(
      EXPECTED['text-latin1.png'].prompt
    );
    expect(details.querySelector('.jp-sd-param-negative')!.textContent).toBe(
      EXPECTED['text-latin1.png'].negativePrompt
    );
    expect(details.querySelector('dd[data-key="Model"]')!.textContent).toBe('my model, v2');
    const buttons = [...details.querySelectorAll('.jp-sd-actions button')] as HTMLButtonElement[];
    expect(buttons.map(b => b.textContent)).toEqual([
      'Insert as %%paint cell',
      'Insert as img2img cell',
      'Copy generation data',
      'Open image',
      'Delete'
    ]);
    for (const b of buttons) {
      await act(async () => b.click());
    }
    expect(calls).toEqual([
      'insert demo-paint/00001-1.png',
      'img2img demo-paint/00001-1.png',
      'copy demo-paint/00001-1.png',
      'open demo-paint/00001-1.png',
      'delete demo-paint/00001-1.png'
    ]);
  });

  it('selects the image a context menu opens on (the menu acts on the selection)', async () => {
    await render();
    const thumb = host.querySelector('[data-path="demo-paint/00001-1.png"]') as HTMLElement;
    await act(async () => {
      thumb.dispatchEvent(new MouseEvent('contextmenu', { bubbles: true }));
    });
    expect(model.selected?.path).toBe('demo-paint/00001-1.png');
  });

  it('renders a hostile prompt as text, never as markup', async () => {
    await render();
    await act(async () => model.select('demo-paint/00002-7.png'));
    await settle();
    const prompt = host.querySelector('.jp-sd-param-prompt')!;
    expect(prompt.textContent).toBe('<img src=x onerror=alert(1)>');
    expect(prompt.children.length).toBe(0);
    expect(host.querySelector('.jp-sd-param-negative')!.textContent).toBe(
      '<script>alert("x")</script>'
    );
    // The only images are ours (thumbnails and the large view); no <script> at all.
    const sources = [...host.querySelectorAll('img')].map(i => i.getAttribute('src'));
    expect(sources.every(s => s!.startsWith('/files/demo-paint/'))).toBe(true);
    expect(host.querySelector('script')).toBeNull();
    expect(alerts).toBe(0);
  });

  it('disables insert without a notebook', async () => {
    await render({ canInsert: false });
    await act(async () => model.select('demo-paint/00001-1.png'));
    await settle();
    const insert = host.querySelector('.jp-sd-actions button') as HTMLButtonElement;
    expect(insert.disabled).toBe(true);
  });

  it('says so when the folder is empty', async () => {
    await render();
    await act(async () => {
      model.setFolder('empty-paint', 'picked');
      await model.refresh();
    });
    expect(host.querySelector('.jp-sd-empty')!.textContent).toMatch(/No images yet/);
    const follow = [...host.querySelectorAll('button')].find(
      b => b.textContent === 'Follow notebook'
    )!;
    await act(async () => follow.click());
    expect(calls).toEqual(['follow']);
  });
});
