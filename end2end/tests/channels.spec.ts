import { test, expect, Page } from '@playwright/test';
import { signIn, gotoHydrated, enterCard } from './helpers';
import { mkdirSync } from 'node:fs';

// Issue #43: stores and channels set up through the pages; a closed channel takes no new orders
// while its orders' pages still open. Against the second server (demo orders and the card payment
// features on), on a channel of the test's own so that other specs are not affected.
test.use({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

async function fillOrder(page: Page, channel: string) {
  await page.getByLabel('Channel').selectOption({ label: channel });
  await page.getByLabel('Item, line 1').fill('Floor lamp');
  await page.getByLabel('Quantity, line 1').fill('1');
  await page.getByLabel('Unit price, line 1').fill('89.00');
}

test('a store added on Stores and channels takes orders; closed, it refuses new ones with a clear message while its orders still open', async ({ page, browser }) => {
  const suffix = Date.now().toString(36);
  const name = `Galleria store ${suffix}`;
  const option = `${name} (POS store)`;

  // An administrator adds the store; a bad code is refused next to its field, nothing added.
  const adminContext = await browser.newContext({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
  const admin = await adminContext.newPage();
  await signIn(admin, 'admin');
  await gotoHydrated(admin, '/parameters/stores');
  await admin.getByLabel('Code').fill('has spaces');
  await admin.getByLabel('Name', { exact: true }).first().fill(name);
  await admin.getByRole('button', { name: 'Add' }).click();
  await expect(admin.locator('.field-error[data-field="code"]')).toContainText('Enter a code of 2 to 32 letters');
  await expect(admin.locator(`tr[data-channel="galleria-${suffix}"]`)).toHaveCount(0);
  await admin.getByLabel('Code').fill(`galleria-${suffix}`);
  await admin.getByLabel('Kind').selectOption({ label: 'POS store' });
  await admin.getByRole('button', { name: 'Add' }).click();
  const row = admin.locator(`tr[data-channel="galleria-${suffix}"]`);
  await expect(row.locator('.badge')).toHaveText('Open');
  await expect(admin.getByLabel('Code')).toHaveValue('');
  await admin.screenshot({ path: 'screenshots/stores-and-channels.png', fullPage: true });

  // A sales order on it.
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '4111111111111111', 'Robin Diaz');
  await fillOrder(page, option);
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  const firstOrder = page.url();

  // A second one is being typed when the store closes: placing it is refused, with its name.
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '4111111111111111', 'Robin Diaz');
  await fillOrder(page, option);
  await row.getByRole('button', { name: 'Close' }).click();
  await expect(row.locator('.badge')).toHaveText('Closed');
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.getByText(`${name} is closed: it takes no new orders`)).toBeVisible();
  await page.screenshot({ path: 'screenshots/closed-channel-refused.png', fullPage: true });
  expect(new URL(page.url()).pathname).toBe('/orders/new');

  // Its order still opens; the store is no longer offered for new orders; opened again, it is.
  await gotoHydrated(page, new URL(firstOrder).pathname);
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  await gotoHydrated(page, '/orders/new');
  await expect(page.getByLabel('Channel').locator('option', { hasText: name })).toHaveCount(0);
  await row.getByRole('button', { name: 'Open again' }).click();
  await expect(row.locator('.badge')).toHaveText('Open');
  await gotoHydrated(page, '/orders/new');
  await expect(page.getByLabel('Channel').locator('option', { hasText: name })).toHaveCount(1);
  await adminContext.close();
});
