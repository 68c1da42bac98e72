import { test, expect, Page } from '@playwright/test';
import { signIn, gotoHydrated, addFault } from './helpers';
import { mkdirSync } from 'node:fs';

// Against the second server, which has demo orders and the card payment features on (issue 3).
test.use({ baseURL: `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT2}` });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

async function invoiceLines(page: Page, quantities: Record<number, string>) {
  for (const [line, qty] of Object.entries(quantities)) {
    await page.getByLabel(`Quantity to invoice for line ${line}`).fill(qty);
  }
  await page.getByRole('button', { name: 'Invoice', exact: true }).click();
}

test('R-TOK-1, R-CAP-1, R-CAP-6: a card taken on the processor page, two partial invoices, one authorization with two captures', async ({ page }) => {
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/orders/new');
  await page.screenshot({ path: 'screenshots/new-order.png', fullPage: true });
  await page.getByRole('link', { name: "Enter the card on the processor's payment page" }).click();
  await expect(page.locator('h1')).toHaveText('Card details');
  // The processor's own page, on the sandbox's origin (R-TOK-1).
  await expect(page.getByText('Processor sandbox')).toBeVisible();
  expect(page.url()).toContain(`127.0.0.1:${process.env.PAYSTAGE_E2E_SANDBOX_PORT2}/hpp/cards?`);
  await page.getByLabel('Card number').fill('4111 1111 1111 1112');
  await page.getByLabel('Expiry (MM/YY)').fill('12/30');
  await page.getByLabel('Name on card').fill('Jamie Rivera');
  await page.getByRole('button', { name: 'Save card' }).click();
  await expect(page.getByRole('alert')).toContainText('The card number is not valid');
  await expect(page.getByLabel('Card number')).toHaveValue('');
  await page.getByLabel('Card number').fill('4111 1111 1111 1111');
  await page.screenshot({ path: 'screenshots/processor-acceptance.png', fullPage: true });
  await page.getByRole('button', { name: 'Save card' }).click();
  await expect(page.getByTestId('card')).toContainText('Visa •••• 1111 · Jamie Rivera');
  expect(page.url()).not.toContain('4111111111111111');
  await page.waitForLoadState('networkidle');
  await page.getByLabel('Customer').selectOption({ label: 'C-1001 · Contoso Retail' });
  await page.getByLabel('Item, line 1').fill('Tent');
  await page.getByLabel('Quantity, line 1').fill('2');
  await page.getByLabel('Unit price, line 1').fill('150.00');
  await page.getByLabel('Item, line 2').fill('Stove');
  await page.getByLabel('Quantity, line 2').fill('1');
  await page.getByLabel('Unit price, line 2').fill('45.50');
  await page.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(page.locator('h1')).toContainText('Sales order SO-');
  await expect(page.getByTestId('balance')).toHaveText('345.50 USD');
  await page.waitForLoadState('networkidle');

  // A double click posts one invoice (one tent, not two): the button waits while it is on its way.
  await page.getByLabel('Quantity to invoice for line 1').fill('1');
  await page.getByRole('button', { name: 'Invoice', exact: true }).dblclick();
  await expect(page.getByRole('status')).toContainText('the card payment completed');
  await expect(page.getByTestId('balance')).toHaveText('195.50 USD');
  await expect(page.locator('tr[data-line="1"] td').nth(3)).toHaveText('1');
  // What was typed is gone once it is posted: a second click cannot invoice it again.
  await expect(page.getByLabel('Quantity to invoice for line 1')).toHaveValue('');
  await invoiceLines(page, { 1: '1', 2: '1' });
  await expect(page.getByRole('status')).toContainText('the card payment completed');
  await expect(page.getByTestId('balance')).toHaveText('0.00 USD');
  await expect(page.locator('[data-authorization]')).toHaveCount(1);
  await expect(page.locator('[data-authorization] tr.capture')).toHaveCount(2);
  await expect(page.locator('[data-authorization]')).toContainText('Fully captured');
  await expect(page.locator('[data-process-status="completed"]')).toHaveCount(2);
  await page.screenshot({ path: 'screenshots/order-incremental.png', fullPage: true });

  // A return of one tent: a credit note, refunded against the captures, with a refund journal.
  await page.getByLabel('Quantity to credit for line 1').fill('1');
  await page.getByRole('button', { name: 'Post credit note' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Credit note' })).toContainText('the card refund completed');
  await expect(page.locator('tr[data-line="1"] td').nth(4)).toHaveText('1');
  await expect(page.getByLabel('Quantity to credit for line 1')).toHaveValue('');
  await expect(page.locator('[data-invoice^="CRN-"] [data-process-status="completed"]')).toHaveCount(1);
  await expect(page.getByText(/Card refund for CRN-/)).toBeVisible();
  // The refund shows against the capture it came from, and the header says the total is net.
  await expect(page.getByTestId('capture-refunded')).toHaveCount(2);
  await expect(page.getByTestId('capture-refunded').filter({ hasText: '150.00 USD' })).toHaveCount(1);
  await expect(page.getByText('Invoiced, net of credit notes')).toBeVisible();
  await page.screenshot({ path: 'screenshots/order-credit-note.png', fullPage: true });
});

test('R-PIP-3, R-PIP-4, R-PIP-5: a journal fault leaves the invoice incomplete; Resume completes it without a second capture', async ({ page }) => {
  await signIn(page, 'admin');
  await addFault(page, 'journal', 'error_before');
  await expect(page.locator('tr[data-fault]')).toHaveCount(1);
  await page.screenshot({ path: 'screenshots/admin-simulator-fault.png', fullPage: true });

  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/orders?customer=Adatum');
  await page.screenshot({ path: 'screenshots/orders.png', fullPage: true });
  await page.getByRole('link', { name: /SO-/ }).first().click();
  await expect(page.locator('h1')).toContainText('Sales order');
  await page.waitForLoadState('networkidle');
  const orderNumber = ((await page.locator('h1').textContent()) ?? '').match(/SO-\d+/)![0];
  await invoiceLines(page, { 1: '1' });
  const notice = page.getByRole('status');
  await expect(notice).toContainText('the card payment is incomplete');
  await expect(notice).toContainText('Post the payment journal');
  await notice.getByRole('link', { name: 'Open Incomplete cards payment' }).click();
  await expect(page.locator('h1')).toHaveText('Incomplete cards payment');
  const row = page.locator('tbody tr');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('3. Post the payment journal');
  await expect(row).toContainText('injected fault');
  // The nine columns and the actions fit beside the navigation: no sideways scrolling at 1280 px.
  await expect(row.locator('td')).toHaveCount(9);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, 'the page is no wider than the window').toBeLessThanOrEqual(0);
  const invoice = await row.getAttribute('data-invoice');

  await row.getByRole('link', { name: 'View history' }).click();
  await expect(page.locator('h1')).toContainText(`Payment stages of ${invoice}`);
  await expect(page.getByTestId('execution-log')).toContainText('Execution log: 3. Post the payment journal');
  await expect(page.getByTestId('execution-log')).toContainText('injected fault');
  await page.getByRole('link', { name: '2. Capture or refund the card' }).click();
  await expect(page.getByTestId('execution-log')).toContainText('Captured');
  await page.screenshot({ path: 'screenshots/payment-history.png', fullPage: true });

  // Reconciliation shows the capture without its journal (R-LED-2), in the CSV too.
  await gotoHydrated(page, '/reconciliation');
  const brk = page.locator('tr[data-break="capture_without_journal"]', { hasText: orderNumber });
  await expect(brk).toHaveCount(1);
  await expect(brk).toContainText('is incomplete');
  await expect(page.getByTestId('reconciliation-summary')).toContainText('orders checked');
  await page.screenshot({ path: 'screenshots/reconciliation.png', fullPage: true });
  const csv = await page.request.get('/reconciliation.csv');
  expect(csv.headers()['content-type']).toContain('text/csv');
  expect(await csv.text()).toContain(`"Capture without a journal","${orderNumber}"`);

  // Open customer invoices: the invoice is open for its amount; selected, Incomplete cards payment
  // opens that page for it alone (seed 000).
  await gotoHydrated(page, '/invoices/open');
  const open = page.locator(`tr[data-invoice="${invoice}"]`);
  await expect(open).toContainText('Incomplete');
  await open.getByRole('radio').check();
  await expect(page.locator('.toolbar')).toContainText(`For ${invoice}.`);
  await page.screenshot({ path: 'screenshots/open-invoices.png', fullPage: true });
  await page.locator('.toolbar').getByRole('link', { name: 'Incomplete cards payment' }).click();
  await expect(page).toHaveURL(/\/payments\/incomplete\?invoice=\d+/);
  await expect(page.locator('tbody tr')).toHaveCount(1);
  await expect(page.locator(`tbody tr[data-invoice="${invoice}"]`)).toHaveCount(1);

  await gotoHydrated(page, `/payments/incomplete`);
  await page.screenshot({ path: 'screenshots/incomplete.png', fullPage: true });
  await page.locator(`tr[data-invoice="${invoice}"]`).getByRole('button', { name: 'Resume' }).click();
  await expect(page.getByRole('status')).toHaveText(`${invoice}: the card payment completed.`);
  await expect(page.locator(`tr[data-invoice="${invoice}"]`)).toHaveCount(0);
  await gotoHydrated(page, '/orders?customer=Adatum');
  await page.getByRole('link', { name: /SO-/ }).first().click();
  await expect(page.locator(`tr[data-invoice="${invoice}"] [data-process-status="completed"]`)).toBeVisible();
  await expect(page.locator('[data-authorization] tr.capture')).toHaveCount(1);
  await expect(page.locator('[data-journal]')).toHaveCount(2);
  // Resumed, the order's money adds up: no break of it is left.
  await gotoHydrated(page, '/reconciliation');
  await expect(page.getByTestId('reconciliation-summary')).toBeVisible();
  await expect(page.locator('tr[data-break]', { hasText: orderNumber })).toHaveCount(0);
});

test('R-PIP-4, seed 000: Terminate shows what stays open, asks a reason, and the receivable is settled by a new entry', async ({ page }) => {
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/payments/incomplete');
  const row = page.locator('tr[data-invoice="INV-000005"]');
  await expect(row).toContainText('2. Capture or refund the card');
  await row.locator('summary', { hasText: 'Terminate' }).click();
  const preview = row.getByTestId('terminate-preview');
  await expect(preview).toContainText('At the processor: 0.00 USD captured, 0.00 USD refunded.');
  await expect(preview).toContainText('Open on the receivable:');
  await expect(preview).toContainText('stays open for');
  await page.screenshot({ path: 'screenshots/terminate-preview.png', fullPage: true });
  await row.getByRole('button', { name: 'Terminate process' }).click();
  await expect(row, 'no reason chosen: nothing is sent').toHaveCount(1);
  await row.getByLabel('Why').selectOption({ label: 'The customer paid by other means' });
  await row.getByLabel('Reason (kept in the audit log)').fill('bank transfer');
  await row.getByRole('button', { name: 'Terminate process' }).click();
  await expect(page.getByRole('status')).toHaveText('The card payment process was terminated.');
  await expect(page.locator('tr[data-invoice="INV-000005"]')).toHaveCount(0);

  // Open customer invoices still lists it (its receivable is open); Settle leads to the entry.
  await gotoHydrated(page, '/invoices/open');
  const open = page.locator('tr[data-invoice="INV-000005"]');
  await expect(open).toContainText('Terminated');
  await open.getByRole('link', { name: 'Settle' }).click();
  await expect(page.locator('h1')).toContainText('Payment stages of INV-000005');
  await page.waitForLoadState('networkidle');
  const settle = page.getByTestId('settle');
  await expect(settle.getByTestId('terminate-preview')).toContainText('Open on the receivable:');
  await page.screenshot({ path: 'screenshots/settle-terminated.png', fullPage: true });
  await settle.getByLabel('Received by other means').check();
  await settle.getByLabel('Note (kept with the journal and in the audit log)').fill('transfer ref. 4471');
  await settle.getByRole('button', { name: 'Post the settling entry' }).click();
  await expect(settle.getByRole('status')).toContainText('INV-000005 settled:');
  await expect(settle.getByTestId('settled')).toBeVisible();
  await gotoHydrated(page, '/invoices/open');
  await expect(page.locator('tr[data-invoice="INV-000005"]')).toHaveCount(0);

  await signIn(page, 'admin');
  await page.goto('/admin/audit?action=payment_process.terminate');
  await expect(page.locator('tr[data-action="payment_process.terminate"]')).toContainText('The customer paid by other means: bank transfer');
  await expect(page.locator('tr[data-action="payment_process.terminate"]')).toContainText('supervisor');
  await page.goto('/admin/audit?action=payment_process.settle');
  await expect(page.locator('tr[data-action="payment_process.settle"]')).toContainText('received_otherwise');
});

test('the Incomplete cards payment page is refused to the call center, who still sees sales orders', async ({ page }) => {
  await signIn(page, 'callcenter');
  const res = await page.goto('/payments/incomplete');
  expect(res?.status()).toBe(403);
  await gotoHydrated(page, '/orders');
  await expect(page.locator('h1')).toHaveText('Sales orders');
});

test('issue #42: the processor\'s notifications arrive signed over HTTP and are listed with what Paystage did', async ({ page }) => {
  await signIn(page, 'finance');
  // The captures of the tests above came back from the sandbox as CAPTURE notifications.
  await expect(async () => {
    await gotoHydrated(page, '/payments/notifications');
    await expect(page.getByTestId('notifications').locator('tr[data-state="processed"]', { hasText: 'CAPTURE' }).first()).toBeVisible({ timeout: 1000 });
  }).toPass({ timeout: 30_000 });
  await expect(page.getByTestId('notifications')).toContainText('AUTHORISATION');
  await page.screenshot({ path: 'screenshots/notifications.png', fullPage: true });
  // The filter: nothing needs finance here.
  await page.getByLabel('State').selectOption('attention');
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(page.getByText('No notifications in this state.')).toBeVisible();
  await expect(page).toHaveURL(/state=attention/);
});

test('issue #42, R-LED-2: a capture the processor fails after accepting it is reversed, shown on the order, and worked by finance', async ({ page }) => {
  await signIn(page, 'admin');
  await addFault(page, 'capture', 'fails_later');

  // The processor answers the capture `received`: the invoice completes as usual…
  await signIn(page, 'supervisor');
  await gotoHydrated(page, '/orders?customer=Adatum');
  await page.getByRole('link', { name: /SO-/ }).first().click();
  await expect(page.locator('h1')).toContainText('Sales order');
  await page.waitForLoadState('networkidle');
  const order = page.url();
  await invoiceLines(page, { 2: '1' });
  await expect(page.getByRole('status')).toContainText('the card payment completed');
  // …then reports CAPTURE_FAILED by notification: the capture is shown failed, with the reason,
  // and a reversing journal stands beside the payment journal.
  await expect(async () => {
    await gotoHydrated(page, order);
    await expect(page.getByTestId('capture-failed')).toBeVisible({ timeout: 1000 });
  }).toPass({ timeout: 30_000 });
  await expect(page.getByTestId('capture-failed')).toContainText('The card scheme refused the capture');
  await expect(page.getByText(/failed at the processor: The card scheme refused the capture/)).toBeVisible();
  await expect(page.getByTestId('invoice-capture-failed')).toHaveCount(1);
  await page.screenshot({ path: 'screenshots/order-capture-failed.png', fullPage: true });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(wide, 'the order page is no wider than the window').toBeLessThanOrEqual(0);

  // Finance finds it among the notifications that need them, and marks it worked with a note.
  await signIn(page, 'finance');
  await gotoHydrated(page, '/payments/notifications?state=attention');
  const row = page.getByTestId('notifications').locator('tr[data-state="attention"]', { hasText: 'CAPTURE_FAILED' });
  await expect(row).toHaveCount(1);
  const detail = row.locator('xpath=following-sibling::tr[1]');
  await expect(detail).toContainText('Paystage reversed it with journal JNL-');
  await page.screenshot({ path: 'screenshots/notifications-attention.png', fullPage: true });
  const wider = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(wider, 'the page is no wider than the window').toBeLessThanOrEqual(0);
  await detail.getByRole('button', { name: 'Mark worked' }).click();
  await expect(detail.locator('[data-field="note"]')).toContainText('Say what was done');
  await detail.getByLabel('What finance did').fill('Customer paid the cushion by bank transfer');
  await detail.getByRole('button', { name: 'Mark worked' }).click();
  await expect(page.getByRole('status')).toHaveText('Marked as worked.');
  await expect(page.getByText('No notifications in this state.')).toBeVisible();
  await page.getByLabel('State').selectOption('worked');
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(page.getByTestId('notifications').locator('tr.notification-detail')).toContainText('Worked by finance: Customer paid the cushion by bank transfer');
});
