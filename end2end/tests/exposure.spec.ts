import { test, expect } from '@playwright/test';
import { signIn, gotoHydrated, enterCard } from './helpers';
import { mkdirSync } from 'node:fs';

// Issue #44, seeds 001/002: Authorization exposure, against the second server (demo orders).
test.use({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

test('an order holding more than it still has to charge is flagged, Release gives the excess back, and the forecast lists its customer', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '4111111111111111', 'Robin Diaz');
  await page.getByLabel('Channel').selectOption({ label: 'Houston store (POS store)' });
  await page.getByLabel('Item, line 1').fill('Bookcase');
  await page.getByLabel('Quantity, line 1').fill('1');
  await page.getByLabel('Unit price, line 1').fill('480.00');
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  const number = (await page.locator('h1').innerText()).match(/SO-\d+/)![0];

  // R-AUT-2: the payment line edited up to 600.00 while the order stays at 480.00.
  await page.getByLabel('New authorized amount').fill('600.00');
  await page.getByRole('button', { name: 'Adjust' }).click();
  await expect(page.getByRole('status')).toContainText('adjusted to 600.00 USD');

  await gotoHydrated(page, '/payments/exposure');
  await expect(page.locator('h1')).toHaveText('Authorization exposure');
  const row = page.locator(`tr[data-order="${number}"]`);
  await expect(row).toHaveAttribute('data-flagged', 'true');
  await expect(row.getByTestId('judgement')).toContainText('Exceeds by 120.00 USD');
  await expect(row.getByTestId('judgement')).toContainText('from 600.00 USD to 480.00 USD, releasing 120.00 USD');
  await expect(row).toContainText('Visa •••• 1111');
  await expect(page.getByTestId('customers')).toBeVisible();
  await page.screenshot({ path: 'screenshots/authorization-exposure.png', fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: 'screenshots/authorization-exposure-phone.png', fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  await row.getByRole('button', { name: 'Release the excess' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'released' })).toContainText(`120.00 USD of ${number} released: adjusted`);
  await expect(row).toHaveCount(0);
  await page.getByRole('link', { name: 'Every order with a hold' }).click();
  await expect(row.getByTestId('judgement')).toHaveText('Covered');
  await page.screenshot({ path: 'screenshots/authorization-exposure-all.png', fullPage: true });

  // Seed 003, R-AUT-3/6: its 480.00 is at risk when the hold expires in 7 days, and its token is
  // nonrecurring (a POS order shipping today), so its customer is listed to contact.
  await gotoHydrated(page, '/payments/expiry-forecast');
  await expect(page.locator('h1')).toHaveText('Expiry forecast');
  await expect(page.getByTestId('renewal-setting')).toContainText('renewed 2 days before they expire');
  await expect(page.getByRole('img', { name: /Authorizations expiring in the next 30 days, USD/ })).toBeVisible();
  await expect(page.getByTestId('forecast-days').locator('tbody tr').first()).toBeVisible();
  const contact = page.getByTestId('contacts').locator(`tr[data-order="${number}"]`);
  await expect(contact).toContainText('480.00 USD');
  await expect(contact.getByRole('link', { name: 'Take a new payment' })).toBeVisible();
  await page.screenshot({ path: 'screenshots/expiry-forecast.png', fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: 'screenshots/expiry-forecast-phone.png', fullPage: true });
  expect(errors).toEqual([]);
});
