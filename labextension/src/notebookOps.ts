/**
 * `INotebookOps` for the notebook the user last focused (JupyterLab's tracker).
 */
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { INotebookOps } from './commands';

/** Python that loads our IPython extension without printing anything. */
const LOAD_EXTENSION =
  'try:\n' +
  "    get_ipython().extension_manager.load_extension('jupyter_sd')\n" +
  'except Exception:\n' +
  '    pass\n';

/** Notebook operations on `tracker.currentWidget`. */
export function trackerOps(tracker: INotebookTracker): INotebookOps {
  return {
    hasNotebook: () => tracker.currentWidget !== null,

    notebookPath: () => tracker.currentWidget?.context.path ?? null,

    insertCellBelow: (source: string, edit = false) => {
      const panel = tracker.currentWidget;
      const notebook = panel?.content;
      if (!notebook?.model) {
        return;
      }
      const index = notebook.activeCellIndex + 1;
      notebook.model.sharedModel.insertCell(index, {
        cell_type: 'code',
        source,
        metadata: {}
      });
      notebook.activeCellIndex = index;
      notebook.deselectAll();
      const cell = notebook.activeCell;
      cell?.node.scrollIntoView({ block: 'nearest' });
      if (edit && cell) {
        void cell.ready.then(() => {
          const editor = cell.editor;
          if (!editor) {
            return;
          }
          notebook.mode = 'edit';
          const line = editor.lineCount - 1;
          editor.setCursorPosition({ line, column: editor.getLine(line)?.length ?? 0 });
          editor.focus();
        });
      }
    },

    runActiveCell: async () => {
      const panel = tracker.currentWidget;
      if (panel) {
        await NotebookActions.run(panel.content, panel.sessionContext);
      }
    },

    loadExtension: async () => {
      const panel = tracker.currentWidget;
      const kernel = panel?.sessionContext.session?.kernel;
      if (!kernel) {
        return;
      }
      try {
        const info = await kernel.info;
        if (info.language_info.name !== 'python') {
          return;
        }
        await kernel.requestExecute({
          code: LOAD_EXTENSION,
          silent: true,
          store_history: false
        }).done;
      } catch (e) {
        console.warn('jupyter-sd: could not load jupyter_sd in the kernel', e);
      }
    }
  };
}
