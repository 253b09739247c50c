/**
 * The source of an img2img cell: `%%paint --init <file>` plus an image's
 * generation data, so the recipe re-runs starting from that picture.
 *
 * The file is named relative to the notebook's folder, which is where Jupyter
 * starts the notebook's kernel (contents paths are relative to the server root).
 */
import { PAINT_MAGIC } from './infotext';
import { dirname, normalize } from './paths';

/** The contents path `path` as seen from the folder `from` (`../` where needed). */
export function relativePath(path: string, from: string): string {
  const target = normalize(path).split('/').filter(Boolean);
  const base = normalize(from).split('/').filter(Boolean);
  let common = 0;
  while (common < base.length && common < target.length - 1 && base[common] === target[common]) {
    common++;
  }
  const up: string[] = base.slice(common).map(() => '..');
  return [...up, ...target.slice(common)].join('/');
}

/** Quote a magic-line value the way `shlex` reads it back (only when it needs quotes). */
export function shellQuote(value: string): string {
  if (/^[\w@%+=:,./-]+$/.test(value)) {
    return value;
  }
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

/**
 * The `%%paint --init <file>` cell for an image.
 *
 * @param infotext - the image's generation data (prompt, negative prompt, parameters line).
 * @param imagePath - contents path of the image.
 * @param notebookPath - contents path of the notebook the cell goes into (`null`: the server root).
 */
export function img2imgCellSource(
  infotext: string,
  imagePath: string,
  notebookPath: string | null
): string {
  const init = relativePath(imagePath, notebookPath ? dirname(notebookPath) : '');
  return `${PAINT_MAGIC} --init ${shellQuote(init)}\n${infotext.replace(/\r\n?/g, '\n').trim()}`;
}
