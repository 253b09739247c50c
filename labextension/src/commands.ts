/**
 * The extension's commands. Everything they touch comes in through small
 * interfaces, so tests drive a real `CommandRegistry` with a fake notebook and
 * kernel (no JupyterLab runtime imports here).
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import type { CommandRegistry } from '@lumino/commands';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { GalleryModel } from './galleryModel';
import { img2imgCellSource } from './img2img';
import { PAINT_MAGIC, paintCellSource } from './infotext';
import { IPaintImage } from './paths';
import { CommandIDs, CoreCommandIDs } from './tokens';

/** A command icon (a `LabIcon` in the app). */
type Icon = CommandRegistry.ICommandOptions['icon'];

/** What the commands need from the active notebook and its kernel. */
export interface INotebookOps {
  /** Whether a notebook is open (the one commands act on). */
  hasNotebook(): boolean;
  /**
   * Insert a code cell below the active cell and make it active; with `edit`, put
   * the cursor at its end, ready to type.
   */
  insertCellBelow(source: string, edit?: boolean): void;
  /** Run the active cell. */
  runActiveCell(): Promise<void>;
  /** Load `jupyter_sd` in the kernel, silently; resolves even if that fails. */
  loadExtension(): Promise<void>;
  /** The contents path of the notebook (its folder is the kernel's working directory), if known. */
  notebookPath?(): string | null;
}

/** Options of the notebook commands, from the `commands` settings. */
export interface ICommandOptions {
  /** The source of a new `%%paint` cell. */
  cellTemplate: string;
  /** The source of the cell that opens the panel. */
  panelSource: string;
  /** Whether to load `jupyter_sd` in the kernel before inserting a cell. */
  loadExtension: boolean;
}

/** Register the notebook commands: insert a `%%paint` cell, open the panel. */
export function registerNotebookCommands(
  commands: CommandRegistry,
  ops: INotebookOps,
  options: () => ICommandOptions | null,
  trans: TranslationBundle,
  icons: { paint?: Icon; panel?: Icon } = {}
): void {
  // Without settings (they failed to load) there is no template: stay disabled.
  const ready = () => ops.hasNotebook() && options() !== null;
  const prepare = async (): Promise<ICommandOptions | null> => {
    const opts = options();
    if (opts?.loadExtension) {
      await ops.loadExtension();
    }
    return opts;
  };
  commands.addCommand(CommandIDs.insertPaintCell, {
    label: trans.__('Insert %1 cell', PAINT_MAGIC),
    caption: trans.__('Insert a %1 cell below the active cell', PAINT_MAGIC),
    icon: icons.paint,
    isEnabled: ready,
    execute: async () => {
      const opts = await prepare();
      if (opts) {
        ops.insertCellBelow(opts.cellTemplate, true);
      }
    }
  });
  commands.addCommand(CommandIDs.openPanel, {
    label: trans.__('Open paint panel'),
    caption: trans.__('Insert a cell that opens the paint panel, and run it'),
    icon: icons.panel,
    isEnabled: ready,
    execute: async () => {
      const opts = await prepare();
      if (opts) {
        ops.insertCellBelow(opts.panelSource);
        await ops.runActiveCell();
      }
    }
  });
}

/** What the gallery commands need besides the model and the notebook. */
export interface IGalleryEnv {
  /** Put text on the system clipboard. */
  copy(text: string): void;
  /** Ask the user to confirm; resolves to their answer. */
  confirm(title: string, body: string, action: string): Promise<boolean>;
  /** Show an error to the user. */
  error(title: string, message: string): void;
  /** Show the gallery in the sidebar. */
  showGallery(): void;
  /** Let the user pick a folder; resolves to its contents path or null. */
  pickFolder(): Promise<string | null>;
}

function pathArg(args: ReadonlyPartialJSONObject, model: GalleryModel): IPaintImage | null {
  const path = typeof args.path === 'string' ? args.path : model.selected?.path;
  if (!path) {
    return null;
  }
  const known = model.images.find(i => i.path === path);
  return known ?? { path, name: path.split('/').pop() ?? path, lastModified: '', index: -1 };
}

/** Register the gallery commands (image actions take `{ path }`, default: the selection). */
export function registerGalleryCommands(
  commands: CommandRegistry,
  model: GalleryModel,
  ops: INotebookOps,
  env: IGalleryEnv,
  trans: TranslationBundle,
  icon?: Icon
): void {
  const infotext = async (image: IPaintImage): Promise<string | null> => {
    const details = await model.details(image);
    if (details.infotext === null) {
      env.error(
        trans.__('No generation data'),
        trans.__('%1 has no parameters chunk.', image.name)
      );
    }
    return details.infotext;
  };
  commands.addCommand(CommandIDs.openGallery, {
    label: trans.__('Open paint gallery'),
    caption: trans.__('Show the images painted beside the notebook'),
    icon,
    execute: () => env.showGallery()
  });
  commands.addCommand(CommandIDs.refreshGallery, {
    label: trans.__('Refresh paint gallery'),
    execute: () => model.refresh()
  });
  commands.addCommand(CommandIDs.chooseFolder, {
    label: trans.__('Show another folder in the paint gallery…'),
    execute: async () => {
      const folder = await env.pickFolder();
      if (folder !== null) {
        model.setFolder(folder, 'picked');
      }
    }
  });
  commands.addCommand(CommandIDs.insertImageCell, {
    label: trans.__('Insert as %1 cell', PAINT_MAGIC),
    isEnabled: () => ops.hasNotebook(),
    execute: async args => {
      const image = pathArg(args, model);
      const text = image && (await infotext(image));
      if (text !== null && text !== undefined) {
        ops.insertCellBelow(paintCellSource(text));
      }
    }
  });
  commands.addCommand(CommandIDs.insertImg2imgCell, {
    label: trans.__('Insert as img2img cell'),
    caption: trans.__(
      'Insert a %1 --init cell that starts from this image, with its recipe',
      PAINT_MAGIC
    ),
    isEnabled: () => ops.hasNotebook(),
    execute: async args => {
      const image = pathArg(args, model);
      const text = image && (await infotext(image));
      if (image && text !== null && text !== undefined) {
        ops.insertCellBelow(img2imgCellSource(text, image.path, ops.notebookPath?.() ?? null));
      }
    }
  });
  commands.addCommand(CommandIDs.copyGenerationData, {
    label: trans.__('Copy generation data'),
    execute: async args => {
      const image = pathArg(args, model);
      const text = image && (await infotext(image));
      if (text) {
        env.copy(text);
      }
    }
  });
  commands.addCommand(CommandIDs.openImage, {
    label: trans.__('Open image'),
    execute: args => {
      const image = pathArg(args, model);
      return image && commands.execute(CoreCommandIDs.openDocument, { path: image.path });
    }
  });
  commands.addCommand(CommandIDs.deleteImage, {
    label: trans.__('Delete image'),
    execute: async args => {
      const image = pathArg(args, model);
      if (!image) {
        return;
      }
      const ok = await env.confirm(
        trans.__('Delete image'),
        trans.__('Delete %1? This cannot be undone.', image.path),
        trans.__('Delete')
      );
      if (ok) {
        await model.remove(image);
      }
    }
  });
}
