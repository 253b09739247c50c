import { IGalleryBackend } from '../src/galleryModel';
import { IContentsEntry } from '../src/paths';
import { fixture } from './helpers';

/** An in-memory server: folder → files (name → fixture name, mtime). */
export class FakeBackend implements IGalleryBackend {
  files = new Map<string, { fixture: string; time: string }>();
  lists = 0;
  reads: string[] = [];
  failList: Error | null = null;

  add(path: string, fixtureName: string, time = '2026-01-01T00:00:00Z'): void {
    this.files.set(path, { fixture: fixtureName, time });
  }

  async list(folder: string): Promise<IContentsEntry[] | null> {
    this.lists++;
    if (this.failList) {
      throw this.failList;
    }
    const entries = [...this.files.entries()]
      .filter(([p]) => p.startsWith(folder + '/'))
      .map(([path, f]) => ({
        name: path.slice(folder.length + 1),
        path,
        type: 'file',
        last_modified: f.time
      }));
    return entries.length ? entries : null;
  }

  async readBytes(path: string): Promise<Uint8Array> {
    this.reads.push(path);
    const f = this.files.get(path);
    if (!f) {
      throw new Error(`404: ${path}`);
    }
    return fixture(f.fixture);
  }

  async remove(path: string): Promise<void> {
    this.files.delete(path);
  }

  fileUrl(path: string): string {
    return `/files/${path}`;
  }
}
