import { test, expect } from '@playwright/test';
import { gotoHydrated, password, signIn } from './helpers';

test('after hydration the Show button reveals the password', async ({ page }) => {
  await gotoHydrated(page, '/login');
  const field = page.locator('#password');
  await expect(field).toHaveAttribute('type', 'password');
  await page.getByTestId('toggle-password').click();
  await expect(field).toHaveAttribute('type', 'text');
  await expect(page.getByTestId('toggle-password')).toHaveText('Hide');
});

test('without the wasm the Show button does nothing, yet the sign-in form still works', async ({ page }) => {
  await page.route('**/*.wasm', (route) => route.abort());
  await page.goto('/login');
  await page.getByTestId('toggle-password').click();
  await page.waitForTimeout(500);
  await expect(page.locator('#password')).toHaveAttribute('type', 'password');
  // The ActionForm posts as a plain HTML form and the server redirects.
  await page.getByLabel('Username').fill('finance');
  await page.locator('#password').fill(password());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('signed-in-user')).toHaveText('Fiona Finance');
});

test('without the wasm a rejected sign-in still shows its message', async ({ page }) => {
  await page.route('**/*.wasm', (route) => route.abort());
  await page.goto('/login');
  await page.getByLabel('Username').fill('finance');
  await page.locator('#password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('The username or password is not correct.');
});

test('without the wasm, signing in returns to the page that asked for it', async ({ page }) => {
  await page.route('**/*.wasm', (route) => route.abort());
  await page.goto('/customers');
  await expect(page).toHaveURL(/\/login\?next=/);
  await page.getByLabel('Username').fill('supervisor');
  await page.locator('#password').fill(password());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/customers$/);
  await expect(page.getByRole('cell', { name: 'Fabrikam Outdoor' })).toBeVisible();
});

// Issue #41: every page but sign-in is a lazy route, split into one chunk per area
// (app/src/routes.rs). The sign-in page needs the main module only; a page's HTML preloads its own
// area's chunk and no other; another area's chunk is fetched when the router first goes there.
test('the sign-in page loads the main module only; each area of pages is a chunk loaded when first needed', async ({ page }) => {
  const wasm: string[] = [];
  page.on('request', (r) => { if (r.url().endsWith('.wasm')) wasm.push(new URL(r.url()).pathname); });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
  await gotoHydrated(page, '/login');
  // The main module under its content-hashed name (build-site.sh), which the server lets a browser
  // keep for good.
  expect(wasm).toEqual([expect.stringMatching(/^\/pkg\/paystage\.[0-9a-f]{16}\.wasm$/)]);
  const main = await page.request.get(wasm[0]);
  expect(main.headers()['cache-control']).toBe('public, max-age=31536000, immutable');

  await signIn(page, 'supervisor');
  wasm.length = 0;
  const res = await page.goto('/orders');
  const html = await res!.text();
  expect(html).toMatch(/<link [^>]*href="\/pkg\/split_orders_pages_\d+\.wasm" rel="preload"/);
  expect(html).not.toContain('split_finance_pages');
  await page.waitForLoadState('networkidle');
  expect(wasm.filter((p) => p.startsWith('/pkg/split_'))).toEqual([expect.stringMatching(/^\/pkg\/split_orders_pages_\d+\.wasm$/)]);
  await expect(page.locator('h1')).toHaveText('Sales orders');

  wasm.length = 0;
  await page.getByRole('link', { name: 'Journals', exact: true }).click();
  await expect(page.locator('h1')).toHaveText('Journals');
  await expect(page).toHaveURL(/\/journals$/);
  expect(wasm.filter((p) => p.startsWith('/pkg/split_'))).toEqual([expect.stringMatching(/^\/pkg\/split_finance_pages_\d+\.wasm$/)]);
  // The page came from the router (no new document), so it is interactive straight away.
  expect(wasm.filter((p) => /paystage\./.test(p))).toEqual([]);
  expect(problems).toEqual([]);
});
