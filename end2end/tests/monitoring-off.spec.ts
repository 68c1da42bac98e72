import { test, expect, Page } from '@playwright/test';
import { signIn, gotoHydrated, addFault } from './helpers';
import { mkdirSync } from 'node:fs';

// Issue #39 item 4, R-PIP-6: Cards payment status monitoring off (the default), on the server with
// the card payment features on. Monitoring is turned back on afterwards for the other files.
test.use({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

async function setMonitoring(page: Page, value: 'yes' | 'no') {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/accounts-receivable');
  await page.getByLabel('Cards payment status monitoring').selectOption(value);
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toBeVisible();
  await page.reload();
  await expect(page.getByLabel('Cards payment status monitoring')).toHaveValue(value);
}


/// A new order of two tents at 8.25 % tax paid by a Visa card, opened on its page.
async function newOrder(page: Page) {
  await gotoHydrated(page, '/orders/new');
  await page.getByRole('link', { name: "Enter the card on the processor's payment page" }).click();
  await page.getByLabel('Card number').fill('4111 1111 1111 1111');
  await page.getByLabel('Expiry (MM/YY)').fill('12/30');
  await page.getByLabel('Name on card').fill('Robin Park');
  await page.getByRole('button', { name: 'Save card' }).click();
  await expect(page.getByTestId('card')).toContainText('Visa •••• 1111');
  await page.waitForLoadState('networkidle');
  await page.getByLabel('Customer').selectOption({ label: 'C-1001 · Contoso Retail' });
  await page.getByLabel('Tax %').fill('8.25');
  await page.getByLabel('Item, line 1').fill('Tent');
  await page.getByLabel('Quantity, line 1').fill('2');
  await page.getByLabel('Unit price, line 1').fill('150.00');
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  await expect(page.getByTestId('balance')).toHaveText('324.75 USD');
  await page.waitForLoadState('networkidle');
}

async function invoiceOne(page: Page) {
  await page.getByLabel('Quantity to invoice for line 1').fill('1');
  await page.getByRole('button', { name: 'Invoice', exact: true }).click();
}

test.describe.serial('with Cards payment status monitoring off', () => {
  test.afterAll(async ({ browser }) => {
    const page = await browser.newPage();
    await setMonitoring(page, 'yes');
    await page.close();
  });

  test('a card that is not charged: the invoicing is refused with the reason, nothing stays invoiced, and it can be tried again', async ({ page }) => {
    await setMonitoring(page, 'no');
    await addFault(page, 'capture', 'error_before');
    await signIn(page, 'supervisor');
    await newOrder(page);
    await invoiceOne(page);
    const alert = page.getByRole('alert');
    await expect(alert).toContainText('The card was not charged');
    await expect(alert).toContainText('Invoice again once the payment is sorted out');
    await expect(page.getByTestId('balance')).toHaveText('324.75 USD');
    await expect(page.locator('[data-process-status="reversed"]')).toHaveCount(1);
    await page.screenshot({ path: 'screenshots/monitoring-off-refused.png', fullPage: true });
    // The fault is spent: the same invoicing goes through.
    await invoiceOne(page);
    await expect(page.getByRole('status')).toContainText('the card payment completed');
    await expect(page.getByTestId('balance')).toHaveText('162.37 USD');
  });

  test('a failure after the charge is listed on Incomplete cards payment, counted on the Overview, and resumed', async ({ page }) => {
    await signIn(page, 'admin');
    await addFault(page, 'journal', 'error_before');
    await signIn(page, 'supervisor');
    await gotoHydrated(page, '/');
    const before = Number(await page.locator('[data-standing="incomplete"] strong').textContent());
    await newOrder(page);
    await invoiceOne(page);
    const notice = page.getByRole('status');
    await expect(notice).toContainText('the card payment is incomplete');
    await expect(page.getByTestId('balance')).toHaveText('162.37 USD');
    await gotoHydrated(page, '/');
    await expect(page.locator('[data-standing="incomplete"] strong')).toHaveText(String(before + 1));
    await page.locator('[data-standing="incomplete"]').click();
    await expect(page.locator('h1')).toHaveText('Incomplete cards payment');
    const row = page.locator('tbody tr', { has: page.getByTestId('one-step') });
    await expect(row).toHaveCount(1);
    await expect(row.getByTestId('one-step')).toHaveAttribute('title', /monitoring was off/);
    // Every row's actions fit beside the navigation at 1280 px: no sideways scrolling.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow, 'the page is no wider than the window').toBeLessThanOrEqual(0);
    await expect(row).toContainText('3. Post the payment journal');
    await expect(page.locator('tbody tr')).toHaveCount(before + 1);
    await page.screenshot({ path: 'screenshots/monitoring-off-incomplete.png', fullPage: true });
    const invoice = await row.getAttribute('data-invoice');
    await row.getByRole('button', { name: 'Resume' }).click();
    await expect(page.getByRole('status')).toHaveText(`${invoice}: the card payment completed.`);
    await expect(page.locator(`tr[data-invoice="${invoice}"]`)).toHaveCount(0);
  });
});
