/**
 * Every id of the extension: commands, plugins, widgets. No id is spelled out
 * anywhere else (STYLE T1).
 */

/** The prefix of every id. */
export const PREFIX = 'jupyter-sd';

/** Command ids. */
export enum CommandIDs {
  /** Insert a `%%paint` cell below the active cell. */
  insertPaintCell = 'jupyter-sd:insert-paint-cell',
  /** Show the paint gallery in the left sidebar. */
  openGallery = 'jupyter-sd:open-gallery',
  /** Insert a `%paint panel` cell below the active cell and run it. */
  openPanel = 'jupyter-sd:open-panel',
  /** Insert an image's generation data as a `%%paint` cell (args: `path`). */
  insertImageCell = 'jupyter-sd:insert-image-cell',
  /** Insert an image as a `%%paint --init <file>` img2img cell with its recipe (args: `path`). */
  insertImg2imgCell = 'jupyter-sd:insert-img2img-cell',
  /** Copy an image's generation data to the clipboard (args: `path`). */
  copyGenerationData = 'jupyter-sd:copy-generation-data',
  /** Open an image in the image viewer (args: `path`). */
  openImage = 'jupyter-sd:open-image',
  /** Delete an image, after asking (args: `path`). */
  deleteImage = 'jupyter-sd:delete-image',
  /** Refresh the gallery now. */
  refreshGallery = 'jupyter-sd:refresh-gallery',
  /** Pick the folder the gallery shows. */
  chooseFolder = 'jupyter-sd:choose-gallery-folder'
}

/** Plugin ids; each ends in the stem of its schema file (STYLE T3). */
export enum PluginIDs {
  gallery = 'jupyter-sd:gallery',
  highlight = 'jupyter-sd:highlight',
  commands = 'jupyter-sd:commands'
}

/** Ids of widgets and of things JupyterLab stores by name. */
export enum WidgetIDs {
  /** The gallery's sidebar widget (also its layout-restorer key). */
  gallery = 'jupyter-sd-gallery',
  /** The CodeMirror extension's name in the editor extension registry. */
  highlightExtension = 'jupyter-sd:paint-highlight'
}

/** Commands JupyterLab itself provides that we call. */
export enum CoreCommandIDs {
  openDocument = 'docmanager:open',
  runCell = 'notebook:run-cell'
}

/** The category of our commands in the palette. */
export const PALETTE_CATEGORY = 'Stable Diffusion';

/** The translation domain of our strings (the Python package's name). */
export const TRANSLATION_DOMAIN = 'jupyter_sd';
