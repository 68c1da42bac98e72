import { test, expect, Page } from '@playwright/test';
import { signIn, gotoHydrated, enterCard } from './helpers';
import { mkdirSync } from 'node:fs';

// Issue 4 against the second server: demo orders, the card payment features and nonrecurring
// tokens on, an expired authorization with its order held.
test.use({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

function daysAfter(iso: string, days: number): string {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

async function fillOrder(page: Page, channel: string, item: string, shipInDays: number) {
  await page.getByLabel('Channel').selectOption({ label: channel });
  const ship = page.getByLabel('Requested ship date, line 1');
  const today = await ship.inputValue();
  await page.getByLabel('Item, line 1').fill(item);
  await page.getByLabel('Quantity, line 1').fill('1');
  await page.getByLabel('Unit price, line 1').fill('480.00');
  await ship.fill(daysAfter(today, shipInDays));
}

test('R-TOK-3: a POS customer order shipping in 10 days asks for consent; Cancel blocks it; OK authorizes; 3 days needs none', async ({ page }) => {
  const errors: string[] = [];
  page.on('console', m => { if (m.type() === 'error' && m.text().includes('hydrat')) errors.push(m.text()); });
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '4111111111111111', 'Robin Diaz');
  await fillOrder(page, 'Houston store (POS store)', 'Sectional sofa', 10);
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  const dialog = page.getByRole('dialog');
  await expect(dialog).toContainText('Customer consent required');
  await expect(dialog).toContainText('for this order only');
  await page.screenshot({ path: 'screenshots/consent-dialog.png', fullPage: true });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toHaveCount(0);
  await expect(page.getByTestId('confirmation-cancelled')).toContainText('nothing was placed');
  expect(new URL(page.url()).pathname).toBe('/orders/new');

  // Moving the ship date inside the threshold removes the need for consent.
  const ship = page.getByLabel('Requested ship date, line 1');
  await ship.fill(daysAfter(await ship.inputValue(), -7));
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  const line = page.locator('tr[data-payment-line]');
  await expect(line).toContainText('Nonrecurring');
  await expect(line.locator('[data-payment-status="authorized"]')).toBeVisible();

  // Ten days out again, this time with the customer's consent: the balance is tokenized.
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '4111111111111111', 'Robin Diaz');
  await fillOrder(page, 'Houston store (POS store)', 'Armchair', 10);
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'OK' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  await expect(page.locator('tr[data-payment-line]')).toContainText('Recurring');
  await page.screenshot({ path: 'screenshots/order-consented.png', fullPage: true });
  expect(errors, 'pages hydrate without errors').toEqual([]);
});

test('R-TOK-6, R-TOK-8: the call center saves a card only when both settings allow, and it shows on Customer credit cards', async ({ page }) => {
  await signIn(page, 'callcenter');
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '5555555555554444', 'Alex Morgan');
  await expect(page.getByTestId('card')).toContainText('•••• 4444');
  await expect(page.getByTestId('save-card')).toHaveCount(0);

  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/call-center');
  await page.getByLabel('Allow customer card on file').selectOption('yes');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Parameters saved.');

  await signIn(page, 'callcenter');
  await gotoHydrated(page, '/orders/new');
  await enterCard(page, '5555555555554444', 'Alex Morgan');
  await page.getByLabel('Customer').selectOption({ label: 'C-1002 · Fabrikam Outdoor' });
  await page.waitForLoadState('networkidle');
  await page.getByTestId('save-card').check();
  await fillOrder(page, 'Call center (Call center)', 'Roof rack', 2);
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  const dialog = page.getByRole('dialog');
  await expect(dialog).toContainText('Save the card on file');
  await dialog.getByRole('button', { name: 'OK' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  await expect(page.locator('tr[data-payment-line]')).toContainText('Recurring');

  await gotoHydrated(page, '/customers');
  await page.locator('tr', { hasText: 'C-1002' }).getByRole('link', { name: 'Credit cards' }).click();
  await expect(page.locator('h1')).toHaveText('Customer credit cards');
  await expect(page.locator('tr[data-last-four="4444"]')).toContainText('Alex Morgan');
  await page.screenshot({ path: 'screenshots/customer-cards.png', fullPage: true });

  // The saved card is offered in the Number list of the customer's next order.
  await gotoHydrated(page, '/orders/new');
  await page.getByLabel('Customer').selectOption({ label: 'C-1002 · Fabrikam Outdoor' });
  await page.waitForLoadState('networkidle');
  await expect(page.getByTestId('saved-cards')).toContainText('Alex Morgan · Mastercard •••• 4444');
});

test('R-AUT-4, R-AUT-5: an expired authorization is under Pending Authorization with Expired = Yes and the order held; a new payment releases it', async ({ page }) => {
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/payments/authorizations');
  await page.getByLabel('Status').selectOption('pending_authorization');
  await page.getByRole('button', { name: 'Filter' }).click();
  const row = page.locator('tbody tr', { hasText: 'C-1005' });
  await expect(row).toHaveCount(1);
  await expect(row.getByTestId('expired')).toHaveText('Yes');
  await expect(row).toContainText('Pending Authorization');
  await expect(row).toContainText('Do not process');
  await page.screenshot({ path: 'screenshots/authorization-management.png', fullPage: true });
  await row.getByRole('link', { name: 'Details' }).click();
  await expect(page.getByTestId('do-not-process')).toHaveText('Yes');
  await expect(page.locator('h1')).toContainText('Pending Authorization');
  await page.screenshot({ path: 'screenshots/authorization-detail.png', fullPage: true });

  await enterCard(page, '4111111111111111', 'Alex Chen');
  await expect(page.locator('h1')).toContainText('New payment for SO-');
  await page.getByRole('button', { name: 'Authorize new payment' }).click();
  await expect(page.getByTestId('new-payment-status')).toHaveText('New payment: Authorized.');
  await expect(page.locator('h1')).not.toContainText('Do not process');
  await expect(page.locator('[data-payment-status="replaced"]')).toHaveCount(1);
  await page.screenshot({ path: 'screenshots/order-new-payment.png', fullPage: true });
});

test('R-TOK-7: the web shop takes a card on the processor page and confirms the order', async ({ page }) => {
  await page.goto('/shop');
  await expect(page.locator('h1')).toHaveText('Checkout');
  await page.getByRole('link', { name: 'Enter your card on the secure payment page' }).click();
  await page.getByLabel('Card number').fill('5555 5555 5555 4444');
  await page.getByLabel('Expiry (MM/YY)').fill('08/31');
  await page.getByLabel('Name on card').fill('Sam Shopper');
  await page.getByRole('button', { name: 'Save card' }).click();
  await expect(page.getByTestId('card')).toContainText('Mastercard •••• 4444 · Sam Shopper');
  await page.getByLabel('Quantity of Insulated bottle').fill('2');
  await page.getByLabel('E-mail').fill('sam@shop.example');
  await page.getByLabel('Name', { exact: true }).fill('Sam Shopper');
  await page.screenshot({ path: 'screenshots/shop-checkout.png', fullPage: true });
  await page.getByRole('button', { name: 'Pay now' }).click();
  await expect(page.getByRole('status')).toContainText('is confirmed; your card was authorized');
  await page.screenshot({ path: 'screenshots/shop-thanks.png', fullPage: true });
});
