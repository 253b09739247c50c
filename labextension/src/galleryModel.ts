/**
 * The gallery's state: which folder it shows, the images in it (newest first), the
 * selected image and its generation data. It polls the folder through a small
 * backend interface (the Jupyter contents API in the app, a fake in tests).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { IInfotext, parseInfotext } from './infotext';
import { IContentsEntry, IPaintImage, paintImages, sameListing } from './paths';
import { readPngText } from './png';

/** What the gallery needs from the server. */
export interface IGalleryBackend {
  /** The entries of a folder, or `null` when it does not exist (yet). */
  list(folder: string): Promise<IContentsEntry[] | null>;
  /** A file's bytes. */
  readBytes(path: string): Promise<Uint8Array>;
  /** Delete a file. */
  remove(path: string): Promise<void>;
  /** A URL the browser can load the file from. */
  fileUrl(path: string): string;
}

/** An image's metadata, read from its PNG text chunks. */
export interface IImageDetails {
  /** The `parameters` chunk (A1111 infotext), or `null` when there is none. */
  infotext: string | null;
  /** The parsed infotext, or `null`. */
  parsed: IInfotext | null;
  /** The `jupyter_sd` chunk (our JSON dump of the request), decoded, or `null`. */
  request: Record<string, unknown> | null;
}

/** Where the gallery's folder came from. */
export type FolderSource = 'notebook' | 'picked' | 'default';

/** A floor under the poll interval, whatever the settings say. */
const MIN_POLL_MS = 250;

/** Keyword of the PNG chunk holding A1111 infotext. */
export const PARAMETERS_CHUNK = 'parameters';
/** Keyword of the PNG chunk holding our request as JSON. */
export const REQUEST_CHUNK = 'jupyter_sd';

/** Read an image's details from its bytes. */
export async function imageDetails(bytes: Uint8Array): Promise<IImageDetails> {
  const text = await readPngText(bytes);
  const infotext = text.get(PARAMETERS_CHUNK) ?? null;
  let request: Record<string, unknown> | null = null;
  try {
    const raw = text.get(REQUEST_CHUNK);
    request = raw ? JSON.parse(raw) : null;
  } catch {
    request = null;
  }
  return {
    infotext,
    parsed: infotext === null ? null : parseInfotext(infotext),
    request
  };
}

/** The gallery's state. */
export class GalleryModel {
  constructor(backend: IGalleryBackend) {
    this._backend = backend;
  }

  /** Emitted whenever anything the view shows changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The backend (for file URLs). */
  get backend(): IGalleryBackend {
    return this._backend;
  }

  /** The folder shown (a contents path), or `null` before one is set. */
  get folder(): string | null {
    return this._folder;
  }

  /** Where the folder came from. */
  get source(): FolderSource {
    return this._source;
  }

  /** Whether the folder exists (`false` before the first paint saves into it). */
  get folderExists(): boolean {
    return this._exists;
  }

  /** The images, newest first. */
  get images(): readonly IPaintImage[] {
    return this._images;
  }

  /** The selected image, or `null`. */
  get selected(): IPaintImage | null {
    return this._images.find(i => i.path === this._selected) ?? null;
  }

  /** The last error listing the folder, or `''`. */
  get error(): string {
    return this._error;
  }

  /** Show a folder (no-op when it is already shown from the same source). */
  setFolder(folder: string, source: FolderSource): void {
    if (folder === this._folder && source === this._source) {
      return;
    }
    this._folder = folder;
    this._source = source;
    this._images = [];
    this._selected = null;
    this._exists = true;
    this._error = '';
    this._changed.emit();
    void this.refresh();
  }

  /** Select an image by path (or clear the selection with `null`). */
  select(path: string | null): void {
    if (path !== this._selected) {
      this._selected = path;
      this._changed.emit();
    }
  }

  /** The details of an image, read once per version of the file. */
  details(image: IPaintImage): Promise<IImageDetails> {
    const key = `${image.path}@${image.lastModified}`;
    let found = this._details.get(key);
    if (!found) {
      found = this._backend.readBytes(image.path).then(imageDetails);
      found.catch(() => this._details.delete(key));
      this._details.set(key, found);
    }
    return found;
  }

  /** A URL that changes when the file does, so the browser reloads it. */
  imageUrl(image: IPaintImage): string {
    const url = this._backend.fileUrl(image.path);
    const sep = url.includes('?') ? '&' : '?';
    return `${url}${sep}v=${encodeURIComponent(image.lastModified)}`;
  }

  /** List the folder now. */
  async refresh(): Promise<void> {
    const folder = this._folder;
    if (folder === null) {
      return;
    }
    let entries: IContentsEntry[] | null;
    try {
      entries = await this._backend.list(folder);
    } catch (e) {
      if (folder === this._folder) {
        this._setError(String((e as Error).message ?? e));
      }
      return;
    }
    if (folder !== this._folder) {
      return; // the folder changed while we listed the old one
    }
    const images = paintImages(entries ?? []);
    const exists = entries !== null;
    if (sameListing(images, this._images) && exists === this._exists && !this._error) {
      return;
    }
    this._images = images;
    this._exists = exists;
    this._error = '';
    if (this._selected && !images.some(i => i.path === this._selected)) {
      this._selected = null;
    }
    this._changed.emit();
  }

  /** Delete an image's file and drop it from the list. */
  async remove(image: IPaintImage): Promise<void> {
    await this._backend.remove(image.path);
    await this.refresh();
  }

  /** Poll the folder every `intervalMs` until `stopPolling()`. */
  startPolling(intervalMs: number): void {
    this.stopPolling();
    const interval = Math.max(MIN_POLL_MS, intervalMs);
    const tick = async () => {
      // A browser tab in the background does not poll.
      if (!globalThis.document?.hidden) {
        await this.refresh();
      }
      if (this._timer !== null) {
        this._timer = setTimeout(tick, interval);
      }
    };
    this._timer = setTimeout(tick, 0);
  }

  /** Stop polling. */
  stopPolling(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /** Whether the model is polling. */
  get isPolling(): boolean {
    return this._timer !== null;
  }

  /** Stop polling and drop cached data. */
  dispose(): void {
    this.stopPolling();
    this._details.clear();
    Signal.clearData(this);
  }

  private _setError(message: string): void {
    if (message !== this._error) {
      this._error = message;
      this._changed.emit();
    }
  }

  private _backend: IGalleryBackend;
  private _folder: string | null = null;
  private _source: FolderSource = 'default';
  private _exists = true;
  private _images: IPaintImage[] = [];
  private _selected: string | null = null;
  private _error = '';
  private _details = new Map<string, Promise<IImageDetails>>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _changed = new Signal<this, void>(this);
}
