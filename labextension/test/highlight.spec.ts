/**
 * @jest-environment jsdom
 */
import { EditorState } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import { Signal } from '@lumino/signaling';

import { HighlightSwitch, IPYTHON_MIME, paintHighlight } from '../src/highlight';

/** A code editor model: a mime type that can change. */
class FakeModel {
  constructor(public mimeType: string) {}
  mimeTypeChanged = new Signal<any, any>(this);
  setMime(mime: string) {
    const oldValue = this.mimeType;
    this.mimeType = mime;
    this.mimeTypeChanged.emit({ name: 'mimeType', oldValue, newValue: mime });
  }
}

function editor(doc: string, model: FakeModel, sw = new HighlightSwitch()) {
  const parent = document.createElement('div');
  document.body.appendChild(parent);
  const view = new EditorView({
    state: EditorState.create({ doc, extensions: [paintHighlight(model as any, sw)] }),
    parent
  });
  const marked = () =>
    [...view.contentDOM.querySelectorAll('[class*="jp-sd-"]')].map(e => e.className);
  return { view, marked, sw };
}

const PAINT = '%%paint --seed 1\na (red:1.2) cat\nSteps: 5, Sampler: Euler, Seed: 1';

describe('paint highlighting in CodeMirror', () => {
  it('decorates a %%paint cell of a Python kernel', () => {
    const { marked, view } = editor(PAINT, new FakeModel(IPYTHON_MIME));
    const classes = marked().join(' ');
    for (const cls of [
      'jp-sd-magic',
      'jp-sd-option',
      'jp-sd-prompt',
      'jp-sd-weight',
      'jp-sd-param-key'
    ]) {
      expect(classes).toContain(cls);
    }
    view.destroy();
  });

  it('leaves other cells, Markdown and other kernels alone', () => {
    for (const [doc, mime] of [
      ['x = 1\n(a:1.2)', IPYTHON_MIME],
      [PAINT, 'text/x-ipythongfm'],
      [PAINT, 'text/x-rsrc'],
      [PAINT, 'text/plain']
    ]) {
      const { marked, view } = editor(doc, new FakeModel(mime));
      expect(marked()).toEqual([]);
      view.destroy();
    }
  });

  it('follows edits, kernel changes and the setting', () => {
    const model = new FakeModel(IPYTHON_MIME);
    const { view, marked, sw } = editor('a cat', model);
    expect(marked()).toEqual([]);
    view.dispatch({ changes: { from: 0, insert: '%%paint\n' } });
    expect(marked().length).toBeGreaterThan(0);
    model.setMime('text/x-rsrc');
    expect(marked()).toEqual([]);
    model.setMime(IPYTHON_MIME);
    expect(marked().length).toBeGreaterThan(0);
    sw.enabled = false;
    expect(marked()).toEqual([]);
    sw.enabled = true;
    expect(marked().length).toBeGreaterThan(0);
    view.destroy();
    // Destroyed views no longer listen.
    expect(() => model.setMime('text/plain')).not.toThrow();
  });
});
