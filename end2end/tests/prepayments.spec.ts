import { test, expect, Page } from '@playwright/test';
import { signIn, gotoHydrated } from './helpers';
import { mkdirSync } from 'node:fs';

// Issue 5 (R-PRE-1..5) against the second server (card payment features on, demo data).
test.use({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

/** The administrator sets the Commerce parameters: 30 % default deposit, 10 % cancellation charge. */
async function commerceParameters(page: Page) {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/commerce');
  await page.getByLabel('Default deposit percentage').fill('30');
  await page.getByLabel('Cancellation charge percentage').fill('10');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Parameters saved.');
  await page.context().clearCookies();
}

async function enterCard(page: Page) {
  await page.getByRole('link', { name: "Enter the card on the processor's payment page" }).click();
  await expect(page.locator('h1')).toHaveText('Card details');
  await page.getByLabel('Card number').fill('4111111111111111');
  await page.getByLabel('Expiry (MM/YY)').fill('11/31');
  await page.getByLabel('Name on card').fill('Dana Whitfield');
  await page.getByRole('button', { name: 'Save card' }).click();
  await page.waitForLoadState('networkidle');
}

/** A POS customer order of 200.00 with a deposit: blank = the 30 % default; `cash` of it in cash. */
async function depositOrder(page: Page, item: string, cash: string) {
  await gotoHydrated(page, '/orders/new');
  await enterCard(page);
  await page.getByLabel('Channel').selectOption({ label: 'Houston store (POS store)' });
  await page.getByLabel('Item, line 1').fill(item);
  await page.getByLabel('Quantity, line 1').fill('1');
  await page.getByLabel('Unit price, line 1').fill('200.00');
  await page.getByLabel('Prepayment: take a deposit').check();
  await page.getByLabel('of which cash').fill(cash);
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  return (await page.locator('h1').innerText()).match(/SO-\d+/)![0];
}

test('R-PRE-2: a POS customer order with a 30 % deposit paid half by card and half in cash is picked up, invoiced, and its journals shown', async ({ page }) => {
  await commerceParameters(page);
  await signIn(page, 'supervisor');
  const number = await depositOrder(page, 'Dining table', '30.00');
  await expect(page.locator('.summary').first()).toContainText('200.00 USD');
  const panel = page.getByTestId('prepayment');
  await expect(panel.getByTestId('deposit-paid')).toHaveText('60.00 USD');
  await expect(panel.getByTestId('due-at-pickup')).toHaveText('140.00 USD');
  await expect(panel.locator('tr[data-deposit="card"]')).toContainText('30.00 USD');
  await expect(panel.locator('tr[data-deposit="cash"]')).toContainText('30.00 USD');
  await expect(page.locator('.journal').filter({ hasText: 'Prepayment journal voucher' })).toHaveCount(2);
  await page.screenshot({ path: 'screenshots/deposit-order.png', fullPage: true });

  await page.getByRole('button', { name: 'Pick up and invoice' }).click();
  await expect(page.getByTestId('picked-up')).toContainText('picked up: invoice INV-');
  await expect(page.locator('h1')).toContainText('Invoiced');
  await expect(page.locator('.journal').filter({ hasText: 'Prepayment settlement' })).toContainText('60.00 USD');
  await expect(page.locator('tr[data-invoice] [data-process-status="completed"]')).toBeVisible();
  await page.screenshot({ path: 'screenshots/deposit-picked-up.png', fullPage: true });

  await signIn(page, 'finance');
  await gotoHydrated(page, `/journals?order=${number}`);
  const rows = page.locator('table[data-testid="journals"] > tbody > tr');
  await expect(rows).toHaveCount(5);
  for (const kind of ['Cash journal', 'Customer payment journal', 'Customer invoice', 'Prepayment settlement']) {
    await expect(rows.filter({ hasText: kind }).first()).toBeVisible();
  }
  await expect(rows.filter({ hasText: 'Cash journal' }).locator('td').nth(2)).toHaveText('Yes');
  await page.screenshot({ path: 'screenshots/journals.png', fullPage: true });
  const csv = await page.request.get(`/journals.csv?order=${number}`);
  expect(csv.status()).toBe(200);
  const text = await csv.text();
  expect(text.split('\n')[0]).toContain('prepayment_journal_voucher');
  expect(text).toContain('"Prepayment settlement"');
  expect(text).toContain(`"${number}"`);
});

test('R-PRE-4: cancelling with a 10 % charge shows the accounting first, then posts the refund journals', async ({ page }) => {
  await commerceParameters(page);
  await signIn(page, 'supervisor');
  await depositOrder(page, 'Bookcase', '30.00');
  await page.getByTestId('cancel-order').click();
  const preview = page.getByTestId('cancel-preview');
  await expect(preview.getByTestId('preview-charge')).toHaveText('20.00 USD');
  await expect(preview.getByTestId('preview-refund')).toHaveText('40.00 USD');
  await expect(preview.locator('[data-preview-journal]')).toHaveCount(3);
  await expect(preview).toContainText('Cancellation charges revenue');
  await page.screenshot({ path: 'screenshots/cancel-preview.png', fullPage: true });
  await page.getByRole('button', { name: 'Confirm cancellation' }).click();
  await expect(page.getByTestId('cancelled')).toContainText('20.00 USD kept as cancellation charge, 40.00 USD refunded');
  await page.getByRole('link', { name: 'Back to the order' }).click();
  await expect(page.locator('h1')).toContainText('Cancelled');
  await expect(page.getByTestId('cancellation-charge')).toContainText('20.00 USD');
  await expect(page.locator('.journal').filter({ hasText: 'Refund payment journal' })).toHaveCount(2);
  await expect(page.locator('.journal').filter({ hasText: 'Cancellation charge' }).first()).toBeVisible();
  await expect(page.getByTestId('cancel-order')).toHaveCount(0);
  await page.screenshot({ path: 'screenshots/cancelled-order.png', fullPage: true });
});

test('R-PRE-1: a negative deposit is refused with a message and nothing is posted; a positive one posts a prepayment journal', async ({ page }) => {
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/deposits');
  await page.getByLabel('Customer').selectOption({ index: 1 });
  await page.getByLabel('Amount (cash)').fill('-25.00');
  await page.getByRole('button', { name: 'Take deposit' }).click();
  await expect(page.locator('.field-error[data-field="amount"]')).toContainText('cannot be negative');
  await page.screenshot({ path: 'screenshots/deposit-negative.png', fullPage: true });
  await page.getByLabel('Amount (cash)').fill('25.00');
  await page.getByRole('button', { name: 'Take deposit' }).click();
  await expect(page.getByTestId('deposit-taken')).toContainText('prepayment journal JNL-');
  // The amount is not left in the form for a second click to take again.
  await expect(page.getByLabel('Amount (cash)')).toHaveValue('');

  // The New sales order form refuses a negative deposit the same way, placing nothing.
  await gotoHydrated(page, '/orders/new');
  await page.getByLabel('Channel').selectOption({ label: 'Houston store (POS store)' });
  await page.getByLabel('Item, line 1').fill('Stool');
  await page.getByLabel('Quantity, line 1').fill('1');
  await page.getByLabel('Unit price, line 1').fill('50.00');
  await page.getByLabel('Prepayment: take a deposit').check();
  await page.getByLabel('Deposit', { exact: true }).fill('-10');
  await page.getByLabel('of which cash').fill('0');
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('.field-error[data-field="deposit"]')).toContainText('cannot be negative');
  expect(new URL(page.url()).pathname).toBe('/orders/new');
});
