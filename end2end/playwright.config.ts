import { defineConfig } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

// One server for the whole run: a fresh SQLite database in demo mode, on a free port, with a
// password generated for this run. Workers re-read this file, so the values travel in env vars.
if (!process.env.PAYSTAGE_E2E_PORT) {
  process.env.PAYSTAGE_E2E_PORT = execFileSync(process.execPath, [
    '-e',
    "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})",
  ]).toString().trim();
  process.env.PAYSTAGE_E2E_PASSWORD = randomBytes(12).toString('hex');
  process.env.PAYSTAGE_E2E_DB = join(mkdtempSync(join(tmpdir(), 'paystage-e2e-')), 'e2e.db');
  process.env.PAYSTAGE_E2E_PORT2 = execFileSync(process.execPath, [
    '-e',
    "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})",
  ]).toString().trim();
  process.env.PAYSTAGE_E2E_DB2 = join(mkdtempSync(join(tmpdir(), 'paystage-e2e-orders-')), 'e2e.db');
  process.env.PAYSTAGE_E2E_PORT3 = execFileSync(process.execPath, [
    '-e',
    "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})",
  ]).toString().trim();
  process.env.PAYSTAGE_E2E_DB3 = join(mkdtempSync(join(tmpdir(), 'paystage-e2e-empty-')), 'e2e.db');
  process.env.PAYSTAGE_E2E_SECRET_KEY = randomBytes(32).toString('hex');
  for (const i of [1, 2, 3]) {
    process.env[`PAYSTAGE_E2E_SANDBOX_PORT${i}`] = execFileSync(process.execPath, [
      '-e',
      "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})",
    ]).toString().trim();
    process.env[`PAYSTAGE_E2E_SANDBOX_DIR${i}`] = mkdtempSync(join(tmpdir(), 'paystage-e2e-sandbox-'));
  }
  process.env.PAYSTAGE_E2E_SANDBOX_KEY = randomBytes(16).toString('hex');
  process.env.PAYSTAGE_E2E_SANDBOX_HMAC = randomBytes(32).toString('hex');
}
const port = process.env.PAYSTAGE_E2E_PORT;
const port2 = process.env.PAYSTAGE_E2E_PORT2;
const port3 = process.env.PAYSTAGE_E2E_PORT3;
const root = resolve(__dirname, '..');
const bin = process.env.PAYSTAGE_BIN ?? join(root, 'target/debug/paystage');

export default defineConfig({
  testDir: './tests',
  fullyParallel: false,
  workers: 1,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    browserName: 'chromium',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic'],
    },
  },
  // Each Paystage server reaches a processor sandbox of its own over HTTP (issue #42), started
  // first (web servers start in the order listed), with its store in a temporary folder.
  // Server 1: demo users and reference data, every feature off (the feature and parameter tests
  // start from there). Server 2: demo orders too, with the card payment features on (pipeline tests).
  // Server 3: an empty database without demo data and no processor in its environment, set up
  // through the pages alone (onboarding.spec.ts, issue #43); its sandbox's keys are typed there.
  webServer: [
    ...[1, 2, 3].map((i) => ({
      command: `${bin} sandbox --port ${process.env[`PAYSTAGE_E2E_SANDBOX_PORT${i}`]} --data ${process.env[`PAYSTAGE_E2E_SANDBOX_DIR${i}`]} `
        + `--merchant-account PaystageE2E --notify-url http://127.0.0.1:${[port, port2, port3][i - 1]}/webhooks/adyen/sandbox`,
      url: `http://127.0.0.1:${process.env[`PAYSTAGE_E2E_SANDBOX_PORT${i}`]}/healthz`,
      timeout: 60_000,
      reuseExistingServer: false,
      stdout: 'pipe' as const,
      env: {
        PAYSTAGE_SANDBOX_API_KEY: process.env.PAYSTAGE_E2E_SANDBOX_KEY!,
        PAYSTAGE_SANDBOX_HMAC_KEY: process.env.PAYSTAGE_E2E_SANDBOX_HMAC!,
        PAYSTAGE_LOG: 'warn',
      },
    })),
    ...[port, port2].map((p, i) => ({
    command: `${bin} serve`,
    url: `http://127.0.0.1:${p}/healthz`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: 'pipe' as const,
    env: {
      DATABASE_URL: `sqlite://${i === 0 ? process.env.PAYSTAGE_E2E_DB : process.env.PAYSTAGE_E2E_DB2}`,
      PAYSTAGE_PORT: p!,
      PAYSTAGE_DEMO: 'true',
      PAYSTAGE_DEMO_ORDERS: i === 0 ? 'false' : 'true',
      PAYSTAGE_DEMO_PASSWORD: process.env.PAYSTAGE_E2E_PASSWORD!,
      PAYSTAGE_SITE_ROOT: join(root, 'target/site'),
      PAYSTAGE_LOG: 'warn',
      PAYSTAGE_PROCESSOR_URL: `http://127.0.0.1:${process.env[`PAYSTAGE_E2E_SANDBOX_PORT${i + 1}`]}/checkout/v72`,
      PAYSTAGE_PROCESSOR_API_KEY: process.env.PAYSTAGE_E2E_SANDBOX_KEY!,
      PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT: 'PaystageE2E',
      // Cards are typed on the sandbox's hosted page, on its own origin (R-TOK-1).
      PAYSTAGE_PROCESSOR_CARD_PAGE: `http://127.0.0.1:${process.env[`PAYSTAGE_E2E_SANDBOX_PORT${i + 1}`]}/hpp/cards`,
      PAYSTAGE_CONNECTOR_SANDBOX_HMAC_KEY: process.env.PAYSTAGE_E2E_SANDBOX_HMAC!,
    },
  })),
    {
      command: `${bin} serve`,
      url: `http://127.0.0.1:${port3}/healthz`,
      timeout: 120_000,
      reuseExistingServer: false,
      stdout: 'pipe' as const,
      env: {
        DATABASE_URL: `sqlite://${process.env.PAYSTAGE_E2E_DB3}`,
        PAYSTAGE_PORT: port3!,
        PAYSTAGE_DEMO: 'false',
        PAYSTAGE_ADMIN_PASSWORD: process.env.PAYSTAGE_E2E_PASSWORD!,
        PAYSTAGE_SECRET_KEY: process.env.PAYSTAGE_E2E_SECRET_KEY!,
        PAYSTAGE_SITE_ROOT: join(root, 'target/site'),
        PAYSTAGE_LOG: 'warn',
      },
    },
  ],
});
