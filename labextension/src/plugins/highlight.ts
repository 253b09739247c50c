import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  EditorExtensionRegistry,
  IEditorExtensionFactory,
  IEditorExtensionRegistry
} from '@jupyterlab/codemirror';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { HighlightSwitch, paintHighlight } from '../highlight';
import { PluginIDs, WidgetIDs } from '../tokens';

/** `%%paint` highlighting in the code cells of Python kernels. */
export const highlightPlugin: JupyterFrontEndPlugin<void> = {
  id: PluginIDs.highlight,
  description: 'Highlights the prompt, options and parameters of %%paint cells.',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  optional: [ISettingRegistry],
  activate: activateHighlight
};

async function activateHighlight(
  app: JupyterFrontEnd,
  registry: IEditorExtensionRegistry,
  settingRegistry: ISettingRegistry | null
): Promise<void> {
  const sw = new HighlightSwitch();
  // Every editor gets the extension; it decorates only while the editor holds
  // IPython code whose first line is %%paint (the mime type can change later).
  registry.addExtension({
    name: WidgetIDs.highlightExtension,
    factory: (options: IEditorExtensionFactory.IOptions) =>
      EditorExtensionRegistry.createImmutableExtension(paintHighlight(options.model, sw))
  });
  if (!settingRegistry) {
    return;
  }
  try {
    const settings = await settingRegistry.load(PluginIDs.highlight);
    const apply = () => {
      sw.enabled = settings.composite.enabled as boolean;
    };
    apply();
    settings.changed.connect(apply);
  } catch (e) {
    console.error('jupyter-sd: could not load the highlight settings', e);
  }
}
