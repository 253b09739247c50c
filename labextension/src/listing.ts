/**
 * Listing a folder that may not exist yet, without asking the server for it again
 * and again: once a folder is missing, it is watched through its parent's listing
 * until it appears (so polling does not fill the server log with 404s).
 */
import { dirname, IContentsEntry } from './paths';

/** Lists a folder: its entries, or `null` when it does not exist. */
export type ListFolder = (folder: string) => Promise<IContentsEntry[] | null>;

/** Wrap `list` so a missing folder is checked through its parent. */
export function watchMissingFolders(list: ListFolder): ListFolder {
  const missing = new Set<string>();
  return async (folder: string) => {
    if (missing.has(folder)) {
      const name = folder.split('/').pop();
      const parent = await list(dirname(folder));
      if (!parent?.some(e => e.name === name && e.type === 'directory')) {
        return null;
      }
      missing.delete(folder);
    }
    const found = await list(folder);
    if (found === null) {
      missing.add(folder);
    }
    return found;
  };
}
