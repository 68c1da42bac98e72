import { test, expect } from '@playwright/test';
import { gotoHydrated, password } from './helpers';

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
