/**
 * Playwright against a real JupyterLab that the run starts (see start_lab.py), in
 * the system's Chromium (no browser downloads): set CHROMIUM to choose one.
 */
import { defineConfig } from '@playwright/test';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const PORT = Number(process.env.JSD_UI_PORT ?? 8917);
export const ROOT = process.env.JSD_UI_ROOT ?? path.join(os.tmpdir(), `jupyter-sd-ui-${PORT}`);
process.env.JSD_UI_ROOT = ROOT;

const CANDIDATES = [
  process.env.CHROMIUM,
  '/usr/bin/chromium-headless-shell',
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome'
];
const executablePath = CANDIDATES.find(p => p && fs.existsSync(p));

export default defineConfig({
  testDir: './tests',
  outputDir: '../../artifacts/labextension/test-results',
  timeout: 300_000,
  expect: { timeout: 30_000 },
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    viewport: { width: 1400, height: 900 },
    actionTimeout: 30_000,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    }
  },
  webServer: {
    command: `python ui-tests/start_lab.py ${PORT} "${ROOT}"`,
    cwd: path.resolve(__dirname, '..'),
    url: `http://127.0.0.1:${PORT}/lab`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe'
  }
});
