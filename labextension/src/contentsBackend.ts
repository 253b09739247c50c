/**
 * `IGalleryBackend` over the Jupyter server's contents API and `/files/` route
 * (no server extension needed).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { Contents, ServerConnection } from '@jupyterlab/services';

import { IGalleryBackend } from './galleryModel';
import { watchMissingFolders } from './listing';
import { IContentsEntry } from './paths';

/** The gallery's backend on a contents manager. */
export function contentsBackend(
  contents: Contents.IManager,
  settings: ServerConnection.ISettings
): IGalleryBackend {
  const fileUrl = (path: string) =>
    URLExt.join(settings.baseUrl, 'files', URLExt.encodeParts(path));
  const entries = async (folder: string): Promise<IContentsEntry[] | null> => {
    try {
      const model = await contents.get(folder, { content: true, type: 'directory' });
      return (model.content as IContentsEntry[]) ?? [];
    } catch (e) {
      if ((e as ServerConnection.ResponseError).response?.status === 404) {
        return null;
      }
      throw e;
    }
  };
  return {
    fileUrl,

    list: watchMissingFolders(entries),

    readBytes: async (path: string) => {
      const response = await ServerConnection.makeRequest(
        fileUrl(path),
        { cache: 'no-store' },
        settings
      );
      if (!response.ok) {
        throw new ServerConnection.ResponseError(response);
      }
      return new Uint8Array(await response.arrayBuffer());
    },

    remove: (path: string) => contents.delete(path)
  };
}
