/**
 * jupyter_sd's JupyterLab extension: only wiring (STYLE T2). Each feature is one
 * plugin in `plugins/`.
 */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { commandsPlugin } from './plugins/commands';
import { galleryPlugin } from './plugins/gallery';
import { highlightPlugin } from './plugins/highlight';

export * from './tokens';

const plugins: JupyterFrontEndPlugin<void>[] = [galleryPlugin, highlightPlugin, commandsPlugin];

export default plugins;
