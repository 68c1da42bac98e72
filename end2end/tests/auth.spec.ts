import { test, expect } from '@playwright/test';
import { signIn, password } from './helpers';

const roles: [string, string, string[]][] = [
  ['admin', 'Ada Administrator', ['Accounts receivable', 'Retail and Commerce', 'System administration']],
  ['finance', 'Fiona Finance', ['Retail and Commerce']],
  ['callcenter', 'Carl Callcenter', ['Retail and Commerce']],
  ['supervisor', 'Sam Supervisor', ['Retail and Commerce']],
];

for (const [username, name, groups] of roles) {
  test(`${username} signs in and sees the navigation of their roles`, async ({ page }) => {
    await signIn(page, username);
    await expect(page.getByTestId('signed-in-user')).toHaveText(name);
    const nav = page.getByRole('navigation', { name: 'Main' });
    for (const g of groups) await expect(nav.getByRole('heading', { name: g })).toBeVisible();
    if (username !== 'admin') {
      await expect(nav.getByRole('link', { name: 'Feature management' })).toHaveCount(0);
    }
  });
}

test('a finance user is refused feature management, by the server', async ({ page }) => {
  await signIn(page, 'finance');
  const res = await page.goto('/admin/features');
  expect(res?.status()).toBe(403);
  await expect(page.getByRole('heading', { name: 'No access' })).toBeVisible();
  await expect(page.getByText('Feature management')).toBeVisible();
});

test('a wrong password is refused with a message', async ({ page }) => {
  await page.goto('/login');
  await page.getByLabel('Username').fill('callcenter');
  await page.locator('#password').fill(password() + 'x');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('The username or password is not correct.');
  await expect(page.getByTestId('signed-in-user')).toHaveCount(0);
});

test('an anonymous visitor is sent to sign in and comes back afterwards', async ({ page }) => {
  await page.goto('/customers');
  await expect(page).toHaveURL(/\/login\?next=%2Fcustomers|\/login\?next=\/customers/);
  await page.getByLabel('Username').fill('callcenter');
  await page.locator('#password').fill(password());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Customers', level: 1 })).toBeVisible();
  await expect(page.getByRole('cell', { name: 'Contoso Retail' })).toBeVisible();
});

test('the overview shows finance where card payments stand, and each count opens its page', async ({ page }) => {
  await signIn(page, 'finance');
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'Where card payments stand' })).toBeVisible();
  await expect(page.locator('[data-standing]')).toHaveCount(4);
  await expect(page.locator('[data-standing="pending"]')).toContainText('Pending Authorization');
  await page.screenshot({ path: 'screenshots/overview-finance.png', fullPage: true });
  await page.locator('[data-standing="incomplete"]').click();
  await expect(page.locator('h1')).toHaveText('Incomplete cards payment');
});

test('the call center, without the finance role, gets no payment counts', async ({ page }) => {
  await signIn(page, 'callcenter');
  await page.goto('/');
  await expect(page.locator('h1')).toHaveText('Overview');
  await expect(page.getByRole('heading', { name: 'Where card payments stand' })).toHaveCount(0);
});
