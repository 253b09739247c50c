/**
 * CodeMirror 6 highlighting of `%%paint` cells.
 *
 * Adds mark decorations on top of the editor's own highlighting (it never swaps the
 * language), and only in editors whose model is IPython code (`text/x-ipython`, the
 * mime type of code cells of Python kernels). Markdown cells, raw cells and other
 * kernels' cells get no decorations, so their highlighting is untouched.
 */
import { Extension, RangeSetBuilder, StateEffect } from '@codemirror/state';
import { Decoration, DecorationSet, EditorView, ViewPlugin, ViewUpdate } from '@codemirror/view';
import type { CodeEditor } from '@jupyterlab/codeeditor';
import { ISignal, Signal } from '@lumino/signaling';

import { paintTokens } from './paintSyntax';

/** The mime type JupyterLab gives code cells of Python kernels. */
export const IPYTHON_MIME = 'text/x-ipython';

/** Switches highlighting on or off in every editor at once. */
export class HighlightSwitch {
  /** Whether `%%paint` cells are highlighted. */
  get enabled(): boolean {
    return this._enabled;
  }
  set enabled(value: boolean) {
    if (value !== this._enabled) {
      this._enabled = value;
      this._changed.emit();
    }
  }

  /** Emitted when `enabled` changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  private _enabled = true;
  private _changed = new Signal<this, void>(this);
}

const refresh = StateEffect.define<null>();

function decorations(view: EditorView, model: IHighlightModel, sw: HighlightSwitch): DecorationSet {
  const builder = new RangeSetBuilder<Decoration>();
  if (!sw.enabled || model.mimeType !== IPYTHON_MIME) {
    return builder.finish();
  }
  for (const t of paintTokens(view.state.doc.toString())) {
    if (t.to > t.from) {
      builder.add(t.from, t.to, Decoration.mark({ class: t.cls }));
    }
  }
  return builder.finish();
}

/** The part of the editor's model the highlighting reads. */
export type IHighlightModel = Pick<CodeEditor.IModel, 'mimeType' | 'mimeTypeChanged'>;

/** The CodeMirror extension for one editor: decorations while it holds a `%%paint` cell. */
export function paintHighlight(model: IHighlightModel, sw: HighlightSwitch): Extension {
  return ViewPlugin.fromClass(
    class {
      decorations: DecorationSet;

      constructor(readonly view: EditorView) {
        this.decorations = decorations(view, model, sw);
        model.mimeTypeChanged.connect(this._poke, this);
        sw.changed.connect(this._poke, this);
      }

      update(update: ViewUpdate): void {
        const poked = update.transactions.some(tr => tr.effects.some(e => e.is(refresh)));
        if (update.docChanged || poked) {
          this.decorations = decorations(update.view, model, sw);
        }
      }

      destroy(): void {
        model.mimeTypeChanged.disconnect(this._poke, this);
        sw.changed.disconnect(this._poke, this);
      }

      private _poke(): void {
        // Signals fire outside CodeMirror's update cycle, so a dispatch is safe.
        this.view.dispatch({ effects: refresh.of(null) });
      }
    },
    { decorations: v => v.decorations }
  );
}
