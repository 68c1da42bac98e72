import { test, expect } from '@playwright/test';
import { signIn, gotoHydrated } from './helpers';

test('R-PAR-7: a bad parameter value shows an error next to the field and is not saved', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/accounts-receivable');
  const days = page.getByLabel('Number of days before expired');
  await expect(days).toHaveValue('7');
  await days.fill('0');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.field-error[data-field="ar_days_before_expired"]'))
    .toHaveText('Number of days before expired must be from 1 to 365 days; 0 is out of range.');
  await page.reload();
  await expect(page.getByLabel('Number of days before expired')).toHaveValue('7');
});

test('a valid change is saved, survives a reload and is audited', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/commerce');
  await page.getByLabel('Default deposit percentage').fill('30');
  await page.getByLabel('Cancellation charge percentage').fill('10.5');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Parameters saved.');
  await page.reload();
  await expect(page.getByLabel('Default deposit percentage')).toHaveValue('30');
  await expect(page.getByLabel('Cancellation charge percentage')).toHaveValue('10.5');
  await page.goto('/admin/audit?action=parameters.update');
  const entry = page.locator('tr[data-action="parameters.update"]').filter({ hasText: 'Commerce parameters' });
  await expect(entry).toContainText('"commerce_default_deposit_percent":"30"');
});

test('without the wasm, a bad value is refused and the message still shows', async ({ page }) => {
  await signIn(page, 'admin');
  await page.route('**/*.wasm', (route) => route.abort());
  await page.goto('/parameters/payment-properties');
  await page.getByLabel('MinOrderProcessingDaysForStoringCardToken').fill('ten');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.field-error[data-field="payments_min_order_processing_days_for_storing_card_token"]'))
    .toContainText('must be a whole number of days');
  await expect(page.getByLabel('MinOrderProcessingDaysForStoringCardToken')).toHaveValue('7');
});

test('R-PAR-5: connector merchant properties validate the payment method list', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/connectors');
  const web = page.locator('tr[data-channel="WEB"]');
  await web.getByLabel('Non incremental capture payment methods').fill('interac; master card');
  await web.getByRole('button', { name: 'Save' }).click();
  await expect(web.locator('.field-error')).toContainText('"master card" is not a payment method variant');
  await web.getByLabel('Non incremental capture payment methods').fill('Interac;Maestro');
  await web.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Merchant properties saved.');
  await page.reload();
  await expect(page.locator('tr[data-channel="WEB"]').getByLabel('Non incremental capture payment methods')).toHaveValue('interac;maestro');
});

test('R-PAR-6: a pre-authorization duration out of range is refused', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/electronic-payment-setup');
  await page.getByLabel(/Pre-authorization duration/).fill('90');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.field-error[data-field="days"]')).toContainText('from 1 to 60 days');
  await page.getByLabel('Payment type').selectOption('discover');
  await page.getByLabel(/Pre-authorization duration/).fill('3');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('row', { name: /Houston store Discover 3/ })).toBeVisible();
});
