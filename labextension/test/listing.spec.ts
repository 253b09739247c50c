import { watchMissingFolders } from '../src/listing';
import { IContentsEntry } from '../src/paths';

describe('watchMissingFolders', () => {
  it('asks for a missing folder again only once its parent lists it', async () => {
    const tree = new Map<string, IContentsEntry[]>([['work', []]]);
    const asked: string[] = [];
    const list = watchMissingFolders(async folder => {
      asked.push(folder);
      return tree.get(folder) ?? null;
    });
    expect(await list('work/nb-paint')).toBeNull();
    expect(await list('work/nb-paint')).toBeNull();
    expect(await list('work/nb-paint')).toBeNull();
    expect(asked).toEqual(['work/nb-paint', 'work', 'work']);

    // The kernel saves its first picture: the folder appears.
    const png = {
      name: '00001-1.png',
      path: 'work/nb-paint/00001-1.png',
      type: 'file',
      last_modified: ''
    };
    tree.set('work', [
      { name: 'nb-paint', path: 'work/nb-paint', type: 'directory', last_modified: '' }
    ]);
    tree.set('work/nb-paint', [png]);
    expect(await list('work/nb-paint')).toEqual([png]);
    expect(await list('work/nb-paint')).toEqual([png]);
    expect(asked.slice(3)).toEqual(['work', 'work/nb-paint', 'work/nb-paint']);
  });
});
