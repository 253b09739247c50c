/**
 * Where paint images live and how they sort. Mirrors the Python side's contract:
 * a notebook at `DIR/NAME.ipynb` saves into `DIR/NAME-paint/`, files are named
 * `NNNNN-SEED.png`, and the newest has the highest number.
 *
 * Paths are Jupyter contents paths: relative to the server root, `/`-separated.
 */

/** A paint image as listed by the contents API. */
export interface IPaintImage {
  /** File name, e.g. `00012-42.png`. */
  name: string;
  /** Contents path, e.g. `work/demo-paint/00012-42.png`. */
  path: string;
  /** ISO time of the last modification (from the contents API). */
  lastModified: string;
  /** The counter of `NNNNN-SEED.png`, or -1 when the name does not follow it. */
  index: number;
  /** The seed of `NNNNN-SEED.png`, when the name follows it. */
  seed?: string;
}

/** A contents-API directory entry (the fields we read). */
export interface IContentsEntry {
  name: string;
  path: string;
  type: string;
  last_modified: string;
}

const NAME = /^(\d+)-(\d+)\.png$/i;
/**
 * An input saved beside the pictures, not a painting of its own: a picture's mask or init
 * (`NNNNN-SEED-mask.png`), or an in-memory init or mask kept once by its hash (`mask-HASH.png`).
 */
const COMPANION = /^(\d+-\d+-(mask|init)|(init|mask)-[0-9a-f]{12})\.png$/i;

/** Strip leading/trailing slashes and collapse repeats. */
export function normalize(path: string): string {
  return path.split('/').filter(Boolean).join('/');
}

/** Join contents paths. */
export function join(...parts: string[]): string {
  return normalize(parts.filter(Boolean).join('/'));
}

/** The folder of a contents path (`''` for the root). */
export function dirname(path: string): string {
  const parts = normalize(path).split('/');
  parts.pop();
  return parts.join('/');
}

/**
 * The folder where images painted from a notebook are saved.
 *
 * @param notebookPath - contents path of the `.ipynb` file.
 * @returns `DIR/NAME-paint` for `DIR/NAME.ipynb`.
 */
export function paintFolderFor(notebookPath: string): string {
  const path = normalize(notebookPath);
  const base = path.split('/').pop() ?? '';
  const stem = base.replace(/\.ipynb$/i, '');
  return join(dirname(path), `${stem}-paint`);
}

/** A listing entry as a paint image, or null when it is not a PNG file. */
export function toPaintImage(entry: IContentsEntry): IPaintImage | null {
  // Hidden names are the writer's temporary files (`.tmp-….png`), never finished images.
  if (
    entry.type !== 'file' ||
    entry.name.startsWith('.') ||
    !/\.png$/i.test(entry.name) ||
    COMPANION.test(entry.name)
  ) {
    return null;
  }
  const m = NAME.exec(entry.name);
  return {
    name: entry.name,
    path: entry.path,
    lastModified: entry.last_modified,
    index: m ? Number(m[1]) : -1,
    seed: m ? m[2] : undefined
  };
}

/** Newest first: highest counter, then latest modification, then name. */
export function compareNewestFirst(a: IPaintImage, b: IPaintImage): number {
  return (
    b.index - a.index ||
    Date.parse(b.lastModified) - Date.parse(a.lastModified) ||
    (a.name < b.name ? 1 : a.name > b.name ? -1 : 0)
  );
}

/** The PNG images of a directory listing, newest first. */
export function paintImages(entries: IContentsEntry[]): IPaintImage[] {
  return entries
    .map(toPaintImage)
    .filter((x): x is IPaintImage => x !== null)
    .sort(compareNewestFirst);
}

/** Whether two listings show the same files at the same times. */
export function sameListing(a: IPaintImage[], b: IPaintImage[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => x.path === b[i].path && x.lastModified === b[i].lastModified)
  );
}
