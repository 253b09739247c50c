import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileDialog } from '@jupyterlab/filebrowser';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { imageIcon } from '@jupyterlab/ui-components';

import { IGalleryEnv, registerGalleryCommands } from '../commands';
import { contentsBackend } from '../contentsBackend';
import { GalleryModel } from '../galleryModel';
import { GalleryWidget } from '../galleryWidget';
import { trackerOps } from '../notebookOps';
import { normalize, paintFolderFor } from '../paths';
import { CommandIDs, PALETTE_CATEGORY, PluginIDs, TRANSLATION_DOMAIN, WidgetIDs } from '../tokens';

/** The paint gallery in the left sidebar. */
export const galleryPlugin: JupyterFrontEndPlugin<void> = {
  id: PluginIDs.gallery,
  description: 'A sidebar gallery of the images painted beside the open notebook.',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager, ISettingRegistry],
  optional: [ILayoutRestorer, ICommandPalette, ITranslator],
  activate: activateGallery
};

async function activateGallery(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  docManager: IDocumentManager,
  settingRegistry: ISettingRegistry,
  restorer: ILayoutRestorer | null,
  palette: ICommandPalette | null,
  translator: ITranslator | null
): Promise<void> {
  translator = translator ?? nullTranslator;
  const trans = translator.load(TRANSLATION_DOMAIN);
  const { contents, serverSettings } = app.serviceManager;
  const model = new GalleryModel(contentsBackend(contents, serverSettings));
  const ops = trackerOps(tracker);
  const run = (id: string) => (image: { path: string }) =>
    void app.commands.execute(id, { path: image.path });

  const widget = new GalleryWidget({
    model,
    trans,
    canInsert: ops.hasNotebook(),
    onInsert: run(CommandIDs.insertImageCell),
    onInsertImg2img: run(CommandIDs.insertImg2imgCell),
    onCopy: run(CommandIDs.copyGenerationData),
    onOpen: run(CommandIDs.openImage),
    onDelete: run(CommandIDs.deleteImage),
    onPickFolder: () => void app.commands.execute(CommandIDs.chooseFolder),
    onFollowNotebook: () => follow(true)
  });
  widget.title.icon = imageIcon;
  widget.title.caption = trans.__('Paint gallery');

  // From the settings (the schema holds the default); null until they load.
  let defaultFolder: string | null = null;
  const follow = (force = false) => {
    const panel = tracker.currentWidget;
    widget.update({ canInsert: panel !== null });
    if (model.source === 'picked' && !force) {
      return;
    }
    if (panel) {
      model.setFolder(paintFolderFor(panel.context.path), 'notebook');
    } else if (defaultFolder !== null) {
      model.setFolder(normalize(defaultFolder), 'default');
    }
  };
  tracker.currentChanged.connect(() => follow());
  tracker.widgetAdded.connect((_, panel) => {
    panel.context.pathChanged.connect(() => {
      if (panel === tracker.currentWidget) {
        follow();
      }
    });
  });

  const env: IGalleryEnv = {
    copy: text => Clipboard.copyToSystem(text),
    confirm: async (title, body, action) =>
      (
        await showDialog({
          title,
          body,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: action })]
        })
      ).button.accept,
    error: (title, message) => void showErrorMessage(title, message),
    showGallery: () => app.shell.activateById(widget.id),
    pickFolder: async () => {
      const result = await FileDialog.getExistingDirectory({
        manager: docManager,
        translator: translator ?? undefined,
        title: trans.__('Show images from folder')
      });
      const picked = result.button.accept ? result.value?.[0] : undefined;
      return picked ? picked.path : null;
    }
  };
  registerGalleryCommands(app.commands, model, ops, env, trans, imageIcon);
  palette?.addItem({
    command: CommandIDs.openGallery,
    category: trans.__(PALETTE_CATEGORY)
  });

  try {
    const settings = await settingRegistry.load(PluginIDs.gallery);
    const apply = () => {
      widget.pollInterval = settings.composite.pollInterval as number;
      defaultFolder = settings.composite.defaultFolder as string;
      follow();
    };
    apply();
    settings.changed.connect(apply);
  } catch (e) {
    console.error('jupyter-sd: could not load the gallery settings', e);
    follow();
  }

  app.shell.add(widget, 'left', { rank: 650 });
  restorer?.add(widget, WidgetIDs.gallery);
}
