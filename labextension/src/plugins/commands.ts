import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { paletteIcon } from '@jupyterlab/ui-components';

import { ICommandOptions, registerNotebookCommands } from '../commands';
import { paintIcon } from '../icons';
import { trackerOps } from '../notebookOps';
import { CommandIDs, PALETTE_CATEGORY, PluginIDs, TRANSLATION_DOMAIN } from '../tokens';

/** Commands that add paint cells to the notebook (palette and notebook toolbar). */
export const commandsPlugin: JupyterFrontEndPlugin<void> = {
  id: PluginIDs.commands,
  description: 'Commands to insert a %%paint cell and to open the paint panel.',
  autoStart: true,
  requires: [INotebookTracker, ISettingRegistry],
  optional: [ICommandPalette, ITranslator],
  activate: activateCommands
};

async function activateCommands(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  settingRegistry: ISettingRegistry,
  palette: ICommandPalette | null,
  translator: ITranslator | null
): Promise<void> {
  const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
  // The schema holds the defaults; the commands stay disabled if it fails to load.
  let options: ICommandOptions | null = null;
  try {
    const settings = await settingRegistry.load(PluginIDs.commands);
    const apply = () => {
      options = settings.composite as unknown as ICommandOptions;
    };
    apply();
    settings.changed.connect(apply);
  } catch (e) {
    console.error('jupyter-sd: could not load the command settings', e);
  }
  registerNotebookCommands(app.commands, trackerOps(tracker), () => options, trans, {
    paint: paintIcon,
    panel: paletteIcon
  });
  tracker.currentChanged.connect(() => app.commands.notifyCommandChanged());
  for (const command of [CommandIDs.insertPaintCell, CommandIDs.openPanel]) {
    palette?.addItem({ command, category: trans.__(PALETTE_CATEGORY) });
  }
}
