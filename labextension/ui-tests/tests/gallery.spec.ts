/**
 * The extension in a real JupyterLab: paint with the bundled model, find the
 * image in the gallery, insert it as a cell, re-run it, get the same pixels.
 *
 * Env: JSD_UI_MODEL — a diffusers folder to use instead of the bundled tiny model.
 */
import { APIRequestContext, expect, Page, test } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

const ARTIFACTS = path.resolve(__dirname, '../../../artifacts/labextension');
const FIXTURES = path.resolve(__dirname, '../../test/fixtures');
const PROMPT = 'a red circle on a blue background';

test.describe.configure({ mode: 'serial' });

// Our own errors (logged as `jupyter-sd: …`) and uncaught page errors fail every test.
const problems: string[] = [];
test.beforeEach(({ page }) => {
  problems.length = 0;
  page.on('pageerror', e => problems.push(`pageerror: ${e.message}`));
  page.on('console', m => {
    if (m.type() === 'error' && m.text().includes('jupyter-sd')) {
      problems.push(m.text());
    }
  });
});
test.afterEach(() => {
  expect(problems).toEqual([]);
});

function code(source: string) {
  return { cell_type: 'code', source, metadata: {}, outputs: [], execution_count: null };
}

async function putNotebook(request: APIRequestContext, name: string, cells: unknown[]) {
  const content = {
    cells,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python' },
      language_info: { name: 'python' }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  const r = await request.put(`/api/contents/${name}`, {
    data: { type: 'notebook', format: 'json', content }
  });
  expect(r.ok()).toBeTruthy();
}

async function putPng(request: APIRequestContext, target: string, fixture: string) {
  const folder = path.posix.dirname(target);
  await request.put(`/api/contents/${folder}`, { data: { type: 'directory' } });
  const content = fs.readFileSync(path.join(FIXTURES, fixture)).toString('base64');
  const r = await request.put(`/api/contents/${target}`, {
    data: { type: 'file', format: 'base64', content }
  });
  expect(r.ok()).toBeTruthy();
}

async function shot(page: Page, name: string) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

async function openNotebook(page: Page, name: string) {
  await page.goto(`/lab/tree/${name}?reset`);
  await expect(page.locator('.jp-NotebookPanel .jp-Cell').first()).toBeVisible({ timeout: 60_000 });
  // Wait for the kernel, so runs do not race its start.
  await expect(page.locator('#jp-main-statusbar')).toContainText('| Idle', { timeout: 90_000 });
}

const cells = (page: Page) =>
  page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell');

/** Run one cell (by index) and wait until it has an execution count. */
async function runCell(page: Page, index: number, timeout = 180_000) {
  const cell = cells(page).nth(index);
  await cell.locator('.jp-InputArea-editor').click();
  await page.keyboard.press('Shift+Enter');
  await expect(cell.locator('.jp-InputPrompt')).toHaveText(/\[\d+\]/, { timeout });
}

async function runCommand(page: Page, label: string) {
  // Focus the notebook without changing its active cell.
  await page
    .locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-mod-active .jp-InputPrompt')
    .click();
  await page.keyboard.press('Control+Shift+C');
  const input = page.locator('.lm-CommandPalette-input');
  await input.fill(label);
  await expect(page.locator('.lm-CommandPalette-item.lm-mod-active')).toContainText(label);
  await page.keyboard.press('Enter');
}

async function exists(request: APIRequestContext, p: string) {
  return (await request.get(`/api/contents/${p}?content=0`)).ok();
}

const BUNDLED_MODEL = path.resolve(__dirname, '../../../jupyter_sd/models/tiny/model_index.json');

test('paint, find in gallery, insert as cell, re-run with identical pixels', async ({
  page,
  request
}) => {
  const model = process.env.JSD_UI_MODEL;
  test.skip(
    !model && !fs.existsSync(BUNDLED_MODEL),
    'no bundled tiny model (jupyter_sd/models/tiny) and no JSD_UI_MODEL folder to paint with'
  );
  const setup = ['%load_ext jupyter_sd'];
  if (model) {
    setup.push(`%config PaintMagics.model = ${JSON.stringify(model)}`);
  }
  await putNotebook(request, 'demo.ipynb', [
    code(setup.join('\n')),
    code(`%%paint --steps 20 --seed 1\n${PROMPT}`),
    { cell_type: 'markdown', source: '# Notes\n(word:1.2) <lora:x:1>', metadata: {} },
    code(
      [
        'import numpy as np',
        'from PIL import Image',
        "a, b = (np.asarray(Image.open(f'demo-paint/{n}')) for n in ('00001-1.png', '00002-1.png'))",
        "print('PIXELS', 'SAME' if a.shape == b.shape and (a == b).all() else 'DIFFERENT', a.shape)"
      ].join('\n')
    )
  ]);
  const dialogs: string[] = [];
  page.on('dialog', d => {
    dialogs.push(d.message());
    void d.dismiss();
  });

  await openNotebook(page, 'demo.ipynb');

  // Our toolbar buttons are there.
  const toolbar = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar');
  await expect(toolbar.locator('[data-jp-item-name="jupyter-sd-insert-paint-cell"]')).toBeVisible();
  await expect(toolbar.locator('[data-jp-item-name="jupyter-sd-open-gallery"]')).toBeVisible();

  // %%paint highlighting: in the paint cell only, not in the Markdown cell.
  const paintCell = cells(page).nth(1);
  await expect(paintCell.locator('.jp-sd-magic')).toHaveText('%%paint');
  await expect(paintCell.locator('.jp-sd-option').first()).toHaveText('--steps');
  await expect(paintCell.locator('.jp-sd-prompt')).toHaveText(PROMPT);
  await expect(cells(page).nth(2).locator('[class*="jp-sd-"]')).toHaveCount(0);

  await runCell(page, 0);
  await runCell(page, 1);
  await expect
    .poll(() => exists(request, 'demo-paint/00001-1.png'), { timeout: 60_000 })
    .toBe(true);
  await shot(page, '01-painted');

  // The gallery, from the palette, shows the new image with its parameters.
  await runCommand(page, 'Open paint gallery');
  const gallery = page.locator('#jupyter-sd-gallery');
  await expect(gallery).toBeVisible();
  await expect(gallery.locator('.jp-sd-gallery-folder')).toHaveText('/demo-paint');
  const thumb = gallery.locator('.jp-sd-thumb[data-path="demo-paint/00001-1.png"]');
  await expect(thumb).toBeVisible({ timeout: 20_000 });
  await thumb.click();
  const details = gallery.locator('.jp-sd-details');
  await expect(details.locator('.jp-sd-param-prompt')).toHaveText(PROMPT);
  await expect(details.locator('dd[data-key="Seed"]')).toHaveText('1');
  await expect(details.locator('dd[data-key="Steps"]')).toHaveText('20');
  await expect(details.locator('dd[data-key="Size"]')).toHaveText(/^\d+x\d+$/);
  await shot(page, '02-gallery');

  // Insert it as a %%paint cell below the active cell (the Markdown one, after the run).
  const before = await cells(page).count();
  await details.getByRole('button', { name: 'Insert as %%paint cell' }).click();
  await expect(cells(page)).toHaveCount(before + 1);
  const inserted = cells(page).nth(3);
  await expect(inserted.locator('.cm-content')).toContainText('%%paint');
  await expect(inserted.locator('.cm-content')).toContainText('Seed: 1');
  await expect(inserted.locator('.jp-sd-param-key').first()).toHaveText('Steps');
  await shot(page, '03-inserted');

  // Re-run it: a second file, and the gallery shows it first.
  await runCell(page, 3);
  await expect
    .poll(() => exists(request, 'demo-paint/00002-1.png'), { timeout: 60_000 })
    .toBe(true);
  await expect(gallery.locator('.jp-sd-thumb').first()).toHaveAttribute(
    'data-path',
    'demo-paint/00002-1.png',
    { timeout: 20_000 }
  );

  // Same pixels, checked in the kernel.
  await runCell(page, 4);
  await expect(cells(page).nth(4).locator('.jp-OutputArea-output')).toContainText('PIXELS SAME');
  await shot(page, '04-same-pixels');

  // The toolbar's brush inserts an empty %%paint cell below the active cell.
  let count = await cells(page).count();
  await toolbar.locator('[data-jp-item-name="jupyter-sd-insert-paint-cell"] button').click();
  await expect(cells(page)).toHaveCount(count + 1);
  const fresh = page.locator('.jp-Notebook .jp-Cell.jp-mod-active');
  await expect(fresh.locator('.cm-content')).toHaveText('%%paint');
  // ...in edit mode, cursor on the prompt line, highlighted as it is typed.
  await expect(page.locator('.jp-Notebook.jp-mod-editMode')).toBeVisible();
  await page.keyboard.type('a blue (square:1.1)');
  await expect(fresh.locator('.cm-line').nth(1)).toHaveText('a blue (square:1.1)');
  await expect(fresh.locator('.jp-sd-prompt').first()).toContainText('a blue');
  await expect(fresh.locator('.jp-sd-weight')).toHaveText('1.1');

  // "Open paint panel" inserts `%paint panel` and runs it: a widget output appears.
  count = await cells(page).count();
  await runCommand(page, 'Open paint panel');
  await expect(cells(page)).toHaveCount(count + 1);
  const panelCell = page.locator('.jp-Notebook .jp-Cell', { hasText: '%paint panel' });
  await expect(panelCell.locator('.jp-InputPrompt')).toHaveText(/\[\d+\]/, { timeout: 120_000 });
  await expect(panelCell.locator('.jp-OutputArea-output .jupyter-widgets').first()).toBeVisible({
    timeout: 60_000
  });
  await shot(page, '05-panel');

  // "Open image" opens the file in JupyterLab's image viewer (00001-1.png is still selected).
  await details.getByRole('button', { name: 'Open image' }).click();
  await expect(
    page.locator('.lm-DockPanel-tabBar .lm-TabBar-tabLabel', { hasText: '00001-1.png' })
  ).toBeVisible();
  expect(dialogs).toEqual([]);
});

test('insert as img2img cell: a %%paint --init cell that paints from the picture', async ({
  page,
  request
}) => {
  const model = process.env.JSD_UI_MODEL;
  test.skip(
    !model && !fs.existsSync(BUNDLED_MODEL),
    'no bundled tiny model (jupyter_sd/models/tiny) and no JSD_UI_MODEL folder to paint with'
  );
  const setup = ['%load_ext jupyter_sd'];
  if (model) {
    setup.push(`%config PaintMagics.model = ${JSON.stringify(model)}`);
  }
  await putNotebook(request, 'i2i.ipynb', [
    code(setup.join('\n')),
    code(`%%paint --steps 4 --seed 2\n${PROMPT}`),
    code(
      [
        'from jupyter_sd import load_request',
        "r = load_request('i2i-paint/00002-2.png')",
        "print('INIT', r.mode, r.init.endswith('i2i-paint/00001-2.png'), r.strength)"
      ].join('\n')
    )
  ]);
  await openNotebook(page, 'i2i.ipynb');
  await runCell(page, 0);
  await runCell(page, 1);
  await expect.poll(() => exists(request, 'i2i-paint/00001-2.png'), { timeout: 60_000 }).toBe(true);
  await runCommand(page, 'Open paint gallery');
  const gallery = page.locator('#jupyter-sd-gallery');
  const thumb = gallery.locator('.jp-sd-thumb[data-path="i2i-paint/00001-2.png"]');
  await expect(thumb).toBeVisible({ timeout: 20_000 });
  await thumb.click();
  const details = gallery.locator('.jp-sd-details');
  await expect(details.locator('dd[data-key="Seed"]')).toHaveText('2');

  // Inserted below the active cell (Shift+Enter moved it on to the check cell), the file named from
  // the notebook's folder.
  await details.getByRole('button', { name: 'Insert as img2img cell' }).click();
  await expect(cells(page)).toHaveCount(4);
  const inserted = cells(page).nth(3);
  await expect(inserted.locator('.cm-line').first()).toHaveText(
    '%%paint --init i2i-paint/00001-2.png'
  );
  await expect(inserted.locator('.cm-content')).toContainText('Seed: 2');
  await shot(page, '08-img2img-cell');
  await runCell(page, 3);
  await expect.poll(() => exists(request, 'i2i-paint/00002-2.png'), { timeout: 60_000 }).toBe(true);
  await runCell(page, 2);
  await expect(cells(page).nth(2).locator('.jp-OutputArea-output')).toContainText(
    'INIT img2img True 0.75'
  );
});

test('a hostile prompt renders as text; delete asks first', async ({ page, request }) => {
  await putNotebook(request, 'xss.ipynb', [code('1 + 1')]);
  await putPng(request, 'xss-paint/00001-7.png', 'xss.png');
  await putPng(request, 'xss-paint/00002-3.png', 'itxt-compressed.png');
  const dialogs: string[] = [];
  page.on('dialog', d => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await openNotebook(page, 'xss.ipynb');
  await runCommand(page, 'Open paint gallery');
  const gallery = page.locator('#jupyter-sd-gallery');
  await expect(gallery.locator('.jp-sd-gallery-folder')).toHaveText('/xss-paint');

  // Unicode from a compressed iTXt chunk.
  await gallery.locator('.jp-sd-thumb[data-path="xss-paint/00002-3.png"]').click();
  await expect(gallery.locator('.jp-sd-param-prompt')).toContainText('🐱, 桜');

  await gallery.locator('.jp-sd-thumb[data-path="xss-paint/00001-7.png"]').click();
  const prompt = gallery.locator('.jp-sd-param-prompt');
  await expect(prompt).toHaveText('<img src=x onerror=alert(1)>');
  await expect(prompt.locator('img')).toHaveCount(0);
  await expect(gallery.locator('.jp-sd-param-negative')).toHaveText('<script>alert("x")</script>');
  await shot(page, '06-hostile-prompt');

  // Delete: cancel keeps the file, accept removes it.
  await gallery.getByRole('button', { name: 'Delete' }).click();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Cancel' }).click();
  expect(await exists(request, 'xss-paint/00001-7.png')).toBe(true);
  await gallery.getByRole('button', { name: 'Delete' }).click();
  await page.locator('.jp-Dialog .jp-mod-warn').click();
  await expect.poll(() => exists(request, 'xss-paint/00001-7.png')).toBe(false);
  await expect(gallery.locator('.jp-sd-thumb')).toHaveCount(1);
  expect(dialogs).toEqual([]);
});

test('without a notebook the gallery shows paint-outputs; Folder… shows another', async ({
  page,
  request
}) => {
  await putPng(request, 'paint-outputs/00001-5.png', 'text-latin1.png');
  await putPng(request, 'elsewhere/00003-9.png', 'ztxt.png');
  await page.goto('/lab?reset');
  await page.locator('.lm-TabBar-tab[data-id="jupyter-sd-gallery"]').click();
  const gallery = page.locator('#jupyter-sd-gallery');
  await expect(gallery.locator('.jp-sd-gallery-folder')).toHaveText('/paint-outputs');
  await expect(gallery.locator('.jp-sd-thumb')).toHaveCount(1);

  // Without a notebook there is nowhere to insert a cell.
  await gallery.locator('.jp-sd-thumb').click();
  await expect(gallery.getByRole('button', { name: 'Insert as %%paint cell' })).toBeDisabled();

  await gallery.getByRole('button', { name: 'Folder…' }).click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.locator('.jp-DirListing-item', { hasText: 'elsewhere' }).click();
  await dialog.getByRole('button', { name: 'Select' }).click();
  await expect(gallery.locator('.jp-sd-gallery-folder')).toHaveText('/elsewhere');
  await expect(gallery.locator('.jp-sd-thumb')).toHaveAttribute(
    'data-path',
    'elsewhere/00003-9.png'
  );
  await expect(gallery.getByRole('button', { name: 'Follow notebook' })).toBeVisible();
  await shot(page, '07-picked-folder');

  // The thumbnail's context menu acts on that image.
  await gallery.locator('.jp-sd-thumb').click({ button: 'right' });
  const menu = page.locator('.lm-Menu');
  await expect(menu.getByText('Copy generation data')).toBeVisible();
  await menu.getByText('Open image').click();
  await expect(
    page.locator('.lm-DockPanel-tabBar .lm-TabBar-tabLabel', { hasText: '00003-9.png' })
  ).toBeVisible();
});
