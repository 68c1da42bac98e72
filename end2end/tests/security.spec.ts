import { test, expect } from '@playwright/test';
import { gotoHydrated, signIn, password } from './helpers';

// Issue #40: the pages hydrate under the Content-Security-Policy (scripts and wasm from this site,
// the inline hydration script by its nonce) without a single violation.
test('pages hydrate under the content security policy without violations', async ({ page }) => {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await gotoHydrated(page, '/login');
  await page.getByTestId('toggle-password').click();
  await expect(page.locator('#password')).toHaveAttribute('type', 'text');
  await page.locator('#password').fill('');
  await signIn(page, 'admin');
  for (const path of ['/', '/admin/users', '/admin/features', '/parameters/commerce']) {
    await gotoHydrated(page, path);
  }
  await signIn(page, 'supervisor');
  for (const path of ['/orders', '/orders/new', '/payments/authorizations', '/journals', '/payments/incomplete']) {
    await gotoHydrated(page, path);
  }
  expect(violations).toEqual([]);
});

test('an administrator disables a user, whose open session ends at once', async ({ browser }) => {
  const userCtx = await browser.newContext();
  const user = await userCtx.newPage();
  await signIn(user, 'callcenter');
  await user.goto('/customers');
  await expect(user.getByRole('cell', { name: 'Fabrikam Outdoor' })).toBeVisible();

  const adminCtx = await browser.newContext();
  const admin = await adminCtx.newPage();
  await signIn(admin, 'admin');
  await gotoHydrated(admin, '/admin/users');
  const row = admin.locator('tr[data-user="callcenter"]');
  await row.getByRole('button', { name: 'Disable' }).click();
  await expect(row.getByTestId('user-disabled')).toBeVisible();
  await admin.screenshot({ path: 'test-results/users-disabled.png', fullPage: true });

  await user.goto('/customers');
  await expect(user).toHaveURL(/\/login\?next=/);
  await user.getByLabel('Username').fill('callcenter');
  await user.locator('#password').fill(password());
  await user.getByRole('button', { name: 'Sign in' }).click();
  await expect(user.getByRole('alert')).toContainText('disabled');

  // Enabled again, they sign in as before (and the rest of the suite keeps its user).
  await row.getByRole('button', { name: 'Enable' }).click();
  await expect(row.getByTestId('user-disabled')).toHaveCount(0);
  await user.goto('/login');
  await user.getByLabel('Username').fill('callcenter');
  await user.locator('#password').fill(password());
  await user.getByRole('button', { name: 'Sign in' }).click();
  await expect(user.getByTestId('signed-in-user')).toBeVisible();
  await userCtx.close();
  await adminCtx.close();
});
