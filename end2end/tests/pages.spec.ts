import { test, expect } from '@playwright/test';
import { signIn, gotoHydrated } from './helpers';
import { mkdirSync } from 'node:fs';

// Every page opens, hydrates without a console error, and is captured for a person to look at
// (end2end/screenshots/).
const pages = [
  '/', '/admin/features', '/admin/users', '/admin/audit', '/parameters/accounts-receivable',
  '/parameters/call-center', '/parameters/commerce', '/parameters/payment-properties', '/parameters/connectors',
  '/parameters/electronic-payment-setup', '/admin/simulator',
];

test('every page renders and hydrates cleanly', async ({ page }) => {
  mkdirSync('screenshots', { recursive: true });
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${page.url()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
  await page.goto('/login');
  await page.screenshot({ path: 'screenshots/login.png', fullPage: true });
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/');
  await page.screenshot({ path: 'screenshots/overview-supervisor.png', fullPage: true });
  await gotoHydrated(page, '/customers');
  await expect(page.locator('h1')).toHaveText('Customers');
  await page.screenshot({ path: 'screenshots/customers.png', fullPage: true });
  await signIn(page, 'admin');
  for (const p of pages) {
    const res = await page.goto(p);
    expect(res?.status(), p).toBe(200);
    await page.waitForLoadState('networkidle');
    await expect(page.locator('h1')).toBeVisible();
    const name = p === '/' ? 'overview' : p.slice(1).replaceAll('/', '-');
    await page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });
  }
  expect(problems).toEqual([]);
});
