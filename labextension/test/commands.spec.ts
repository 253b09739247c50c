/**
 * @jest-environment jsdom
 */
import { CommandRegistry } from '@lumino/commands';

import {
  ICommandOptions,
  IGalleryEnv,
  INotebookOps,
  registerGalleryCommands,
  registerNotebookCommands
} from '../src/commands';
import { GalleryModel } from '../src/galleryModel';
import { CommandIDs, CoreCommandIDs } from '../src/tokens';
import { FakeBackend } from './fakeBackend';
import { expected, trans } from './helpers';

const EXPECTED = expected();

/** A notebook whose kernel is mocked: it records cells and runs. */
class FakeNotebook implements INotebookOps {
  open = true;
  cells: string[] = [];
  runs: string[] = [];
  loads = 0;
  hasNotebook = () => this.open;
  insertCellBelow = (source: string) => {
    this.cells.push(source);
  };
  runActiveCell = async () => {
    this.runs.push(this.cells[this.cells.length - 1]);
  };
  loadExtension = async () => {
    this.loads++;
  };
  path: string | null = 'demo.ipynb';
  notebookPath = () => this.path;
}

const OPTIONS: ICommandOptions = {
  cellTemplate: '%%paint\n',
  panelSource: '%paint panel',
  loadExtension: true
};

describe('notebook commands', () => {
  let commands: CommandRegistry;
  let nb: FakeNotebook;
  let options: ICommandOptions | null;

  beforeEach(() => {
    commands = new CommandRegistry();
    nb = new FakeNotebook();
    options = { ...OPTIONS };
    registerNotebookCommands(commands, nb, () => options, trans);
  });

  it('inserts a %%paint cell after loading the extension', async () => {
    await commands.execute(CommandIDs.insertPaintCell);
    expect(nb.cells).toEqual(['%%paint\n']);
    expect(nb.loads).toBe(1);
    expect(nb.runs).toEqual([]);
    expect(commands.label(CommandIDs.insertPaintCell)).toBe('Insert %%paint cell');
  });

  it('opens the panel by inserting and running %paint panel', async () => {
    await commands.execute(CommandIDs.openPanel);
    expect(nb.cells).toEqual(['%paint panel']);
    expect(nb.runs).toEqual(['%paint panel']);
  });

  it('does not load the extension when the setting is off', async () => {
    options = { ...OPTIONS, loadExtension: false };
    await commands.execute(CommandIDs.insertPaintCell);
    expect(nb.loads).toBe(0);
  });

  it('is disabled without a notebook or without settings', () => {
    expect(commands.isEnabled(CommandIDs.insertPaintCell)).toBe(true);
    nb.open = false;
    expect(commands.isEnabled(CommandIDs.insertPaintCell)).toBe(false);
    expect(commands.isEnabled(CommandIDs.openPanel)).toBe(false);
    nb.open = true;
    options = null;
    expect(commands.isEnabled(CommandIDs.insertPaintCell)).toBe(false);
  });
});

describe('gallery commands', () => {
  let commands: CommandRegistry;
  let nb: FakeNotebook;
  let backend: FakeBackend;
  let model: GalleryModel;
  let env: IGalleryEnv & { copied: string[]; errors: string[]; answer: boolean; shown: number };
  const opened: unknown[] = [];

  beforeEach(async () => {
    commands = new CommandRegistry();
    commands.addCommand(CoreCommandIDs.openDocument, { execute: args => void opened.push(args) });
    nb = new FakeNotebook();
    backend = new FakeBackend();
    backend.add('demo-paint/00001-1.png', 'text-latin1.png');
    backend.add('demo-paint/00002-2.png', 'no-metadata.png');
    model = new GalleryModel(backend);
    model.setFolder('demo-paint', 'notebook');
    await model.refresh();
    env = {
      copied: [],
      errors: [],
      answer: true,
      shown: 0,
      copy(text) {
        this.copied.push(text);
      },
      async confirm() {
        return this.answer;
      },
      error(title) {
        this.errors.push(title);
      },
      showGallery() {
        this.shown++;
      },
      pickFolder: async () => 'picked/folder'
    };
    registerGalleryCommands(commands, model, nb, env, trans);
  });

  afterEach(() => model.dispose());

  const path = 'demo-paint/00001-1.png';

  it('inserts an image as a %%paint cell holding its infotext', async () => {
    await commands.execute(CommandIDs.insertImageCell, { path });
    expect(nb.cells).toEqual([`%%paint\n${EXPECTED['text-latin1.png'].parameters}`]);
  });

  it('inserts an image as a %%paint --init cell, the file named from the notebook folder', async () => {
    await commands.execute(CommandIDs.insertImg2imgCell, { path });
    const recipe = EXPECTED['text-latin1.png'].parameters;
    expect(nb.cells).toEqual([`%%paint --init demo-paint/00001-1.png\n${recipe}`]);
    nb.path = 'elsewhere/deeper/other.ipynb';
    await commands.execute(CommandIDs.insertImg2imgCell, { path });
    expect(nb.cells[1]).toBe(`%%paint --init ../../demo-paint/00001-1.png\n${recipe}`);
    expect(commands.label(CommandIDs.insertImg2imgCell)).toBe('Insert as img2img cell');
    await commands.execute(CommandIDs.insertImg2imgCell, { path: 'demo-paint/00002-2.png' });
    expect(nb.cells).toHaveLength(2); // no generation data: nothing inserted, the user is told
    expect(env.errors).toEqual(['No generation data']);
  });

  it('acts on the selection when no path is given', async () => {
    model.select(path);
    await commands.execute(CommandIDs.copyGenerationData);
    expect(env.copied).toEqual([EXPECTED['text-latin1.png'].parameters]);
  });

  it('reports an image without generation data', async () => {
    await commands.execute(CommandIDs.insertImageCell, { path: 'demo-paint/00002-2.png' });
    expect(nb.cells).toEqual([]);
    expect(env.errors).toEqual(['No generation data']);
  });

  it('opens an image with the document manager', async () => {
    await commands.execute(CommandIDs.openImage, { path });
    expect(opened).toContainEqual({ path });
  });

  it('deletes only after the user agrees', async () => {
    env.answer = false;
    await commands.execute(CommandIDs.deleteImage, { path });
    expect(backend.files.has(path)).toBe(true);
    env.answer = true;
    await commands.execute(CommandIDs.deleteImage, { path });
    expect(backend.files.has(path)).toBe(false);
    expect(model.images.map(i => i.path)).toEqual(['demo-paint/00002-2.png']);
  });

  it('shows the gallery and picks folders', async () => {
    await commands.execute(CommandIDs.openGallery);
    expect(env.shown).toBe(1);
    await commands.execute(CommandIDs.chooseFolder);
    expect(model.folder).toBe('picked/folder');
    expect(model.source).toBe('picked');
  });

  it('cannot insert without a notebook', () => {
    nb.open = false;
    expect(commands.isEnabled(CommandIDs.insertImageCell)).toBe(false);
    expect(commands.isEnabled(CommandIDs.insertImg2imgCell)).toBe(false);
  });
});
