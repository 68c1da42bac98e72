import { test, expect, Page, Locator } from '@playwright/test';
import { signIn, gotoHydrated, enterCard, password } from './helpers';
import { mkdirSync } from 'node:fs';

// Issue #43, "done when": the third server starts on an empty database without demo data and with
// no processor in its environment. Its first administrator sets up a store, the store's card
// payment methods, a connector pointing at the sandbox (keys typed once), a call-center channel,
// the staff and a customer, all through the pages; a call-center user then takes an order with a
// card through the processor's page, and a finance user invoices it: one authorization, one
// capture, balanced journals. The second test closes the channel and sees new orders refused.
const base = `http://127.0.0.1:${process.env.PAYSTAGE_E2E_PORT3}`;
const sandbox = `http://127.0.0.1:${process.env.PAYSTAGE_E2E_SANDBOX_PORT3}`;
test.use({ baseURL: base });
test.describe.configure({ mode: 'serial' });
test.beforeAll(() => mkdirSync('screenshots', { recursive: true }));

let orderPath = '';

/** The panel headed `heading`. */
const panel = (page: Page, heading: string): Locator => page.locator('section', { has: page.getByRole('heading', { name: heading, exact: true }) });

/** Sums the Dr and Cr amounts of one journal row. */
async function drCr(row: Locator): Promise<[number, number]> {
  const cells = await row.locator('table.nested td.num').allTextContents();
  let dr = 0;
  let cr = 0;
  for (const c of cells) {
    const m = c.trim().match(/^(Dr|Cr) ([0-9.,]+)/);
    if (!m) continue;
    const cents = Math.round(parseFloat(m[2].replace(/,/g, '')) * 100);
    if (m[1] === 'Dr') dr += cents; else cr += cents;
  }
  return [dr, cr];
}

test('from an empty install to an invoiced card order through the pages alone', async ({ page, browser }) => {
  // The first administrator: a checklist of what is left, nothing ticked.
  await signIn(page, 'admin');
  await gotoHydrated(page, '/');
  const checklist = page.getByTestId('getting-started');
  await expect(checklist).toContainText('6 of 6 steps left');
  await page.screenshot({ path: 'screenshots/getting-started.png', fullPage: true });

  // A store and a call center.
  await checklist.getByRole('link', { name: 'Add a store' }).click();
  await expect(page.locator('h1')).toHaveText('Stores and channels');
  await page.waitForLoadState('networkidle');
  const addChannel = panel(page, 'Add a store or channel');
  await addChannel.getByLabel('Code').fill('houston');
  await addChannel.getByLabel('Name').fill('Houston store');
  await addChannel.getByLabel('Kind').selectOption({ label: 'POS store' });
  await addChannel.getByRole('button', { name: 'Add' }).click();
  await expect(page.locator('tr[data-channel="houston"] .badge')).toHaveText('Open');
  await expect(addChannel.getByLabel('Code')).toHaveValue('');
  await addChannel.getByLabel('Code').fill('phone');
  await addChannel.getByLabel('Name').fill('Phone orders');
  await addChannel.getByLabel('Kind').selectOption({ label: 'Call center' });
  await addChannel.getByLabel('Time zone').fill('America/Chicago');
  await addChannel.getByRole('button', { name: 'Add' }).click();
  await expect(page.locator('tr[data-channel="phone"] .badge')).toHaveText('Open');

  // The store's card payment methods, with their pre-authorization durations (R-PAR-6).
  await gotoHydrated(page, '/parameters/electronic-payment-setup');
  for (const [type, days] of [['Visa', '7'], ['Mastercard', '7'], ['American Express', '5']]) {
    await page.getByLabel('Store').selectOption({ label: 'Houston store (POS store)' });
    await page.getByLabel('Payment type').selectOption({ label: type });
    await page.getByLabel(/Pre-authorization duration/).fill(days);
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.locator('table.grid tbody tr', { hasText: type })).toContainText(days);
  }

  // A connector pointing at the sandbox: no processor yet, then the keys typed once.
  await gotoHydrated(page, '/parameters/connectors');
  await expect(page.getByTestId('processor-in-use')).toContainText('No payment can reach a processor');
  const add = panel(page, 'Add a connector');
  await add.getByLabel('Code').fill('sandbox');
  await add.getByLabel('Name').fill('Processor sandbox');
  await add.getByLabel('Kind').selectOption({ label: 'Paystage processor sandbox' });
  await add.getByLabel('Checkout API endpoint').fill(`${sandbox}/checkout/v72`);
  await add.getByLabel('Merchant account').fill('PaystageE2E');
  await add.getByLabel('API key').fill('a-wrong-key-at-first');
  await add.getByLabel('HMAC key (notifications)').fill('not hex');
  await add.getByLabel('Hosted card page').fill(`${sandbox}/hpp/cards`);
  await add.getByRole('button', { name: 'Add connector' }).click();
  await expect(add.locator('.field-error[data-field="hmac_key"]')).toContainText('hexadecimal');
  await add.getByLabel('HMAC key (notifications)').fill(process.env.PAYSTAGE_E2E_SANDBOX_HMAC!);
  await add.getByRole('button', { name: 'Add connector' }).click();
  const connector = page.locator('section[data-connector="sandbox"]');
  await expect(connector.getByRole('heading', { name: /Processor sandbox/ })).toContainText('Default');
  await expect(page.getByTestId('processor-in-use')).toContainText('Payments go through the default connector sandbox');
  // The keys are never shown again; a wrong API key is what Test connection says.
  await expect(connector.getByLabel('API key')).toHaveValue('');
  await expect(connector.getByLabel('API key')).toHaveAttribute('placeholder', /Stored · type to replace/);
  expect(await page.content()).not.toContain('a-wrong-key-at-first');
  await connector.getByRole('button', { name: 'Test connection' }).click();
  await expect(connector.getByTestId('connection-test')).toContainText('refuses this API key');
  await connector.getByLabel('API key').fill(process.env.PAYSTAGE_E2E_SANDBOX_KEY!);
  await connector.getByRole('button', { name: 'Save connection' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Connection saved.' })).toBeVisible();
  await expect(connector.getByLabel('API key')).toHaveValue('');
  await connector.getByRole('button', { name: 'Test connection' }).click();
  await expect(connector.getByTestId('connection-test')).toContainText('accepts this API key');

  // A second connector, which the call center alone pays through (R-PAR-5); the store keeps the
  // default. Its orders' cards are taken, authorized and captured there.
  await add.getByLabel('Code').fill('phone-sandbox');
  await add.getByLabel('Name').fill('Phone sandbox');
  await add.getByLabel('Kind').selectOption({ label: 'Paystage processor sandbox' });
  await add.getByLabel('Checkout API endpoint').fill(`${sandbox}/checkout/v72`);
  await add.getByLabel('Merchant account').fill('PaystageE2E');
  await add.getByLabel('API key').fill(process.env.PAYSTAGE_E2E_SANDBOX_KEY!);
  await add.getByLabel('HMAC key (notifications)').fill(process.env.PAYSTAGE_E2E_SANDBOX_HMAC!);
  await add.getByLabel('Hosted card page').fill(`${sandbox}/hpp/cards`);
  await add.getByRole('button', { name: 'Add connector' }).click();
  const phoneConnector = page.locator('section[data-connector="phone-sandbox"]');
  await expect(phoneConnector.getByTestId('pays-for')).toContainText('No store or channel pays through it yet');
  await gotoHydrated(page, '/parameters/stores');
  const phoneRow = page.locator('tr[data-channel="phone"]');
  await phoneRow.getByLabel('Connector of this channel').selectOption({ label: 'Phone sandbox (phone-sandbox)' });
  await phoneRow.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Channel saved.' })).toBeVisible();
  await gotoHydrated(page, '/parameters/stores');
  await expect(phoneRow.getByLabel('Connector of this channel').locator('option:checked')).toHaveText('Phone sandbox (phone-sandbox)');
  await expect(page.locator('tr[data-channel="houston"]').getByLabel('Connector of this channel').locator('option:checked')).toHaveText('Default connector (Processor sandbox)');
  await gotoHydrated(page, '/parameters/connectors');
  await expect(phoneConnector.getByTestId('pays-for')).toContainText('Takes the cards of: Phone orders');
  await expect(connector.getByTestId('pays-for')).toContainText('Takes the cards of: Houston store');
  await page.screenshot({ path: 'screenshots/connectors-set-up.png', fullPage: true });

  // The people who take orders and invoice.
  await gotoHydrated(page, '/admin/users');
  for (const [username, name, role] of [['carla', 'Carla Call', 'Call center'], ['fin', 'Fin Ance', 'Finance']]) {
    await page.locator('#new-username').fill(username);
    await page.locator('#new-display-name').fill(name);
    await page.locator('#new-password').fill(password());
    for (const r of ['Administrator', 'Finance', 'Call center']) {
      await panel(page, 'Add a user').getByLabel(r, { exact: true }).setChecked(r === role);
    }
    await page.getByRole('button', { name: 'Add user' }).click();
    await expect(page.locator(`tr[data-user="${username}"]`)).toBeVisible();
  }

  // A customer; a bad e-mail is refused next to its field first.
  await gotoHydrated(page, '/customers');
  await expect(page.getByTestId('no-customers')).toBeVisible();
  const addCustomer = panel(page, 'Add a customer');
  await addCustomer.getByLabel('Account number').fill('C-1');
  await addCustomer.getByLabel('Name').fill('Dana Ruiz');
  await addCustomer.getByLabel('E-mail').fill('dana@');
  await addCustomer.getByLabel('Street').fill('1 Main Street');
  await addCustomer.getByLabel('City').fill('Houston');
  await addCustomer.getByLabel('Postal code').fill('77002');
  await addCustomer.getByLabel('Country').fill('us');
  await addCustomer.getByRole('button', { name: 'Add customer' }).click();
  await expect(addCustomer.locator('.field-error[data-field="email"]')).toContainText('e-mail address');
  await addCustomer.getByLabel('E-mail').fill('dana.ruiz@mail.example');
  await addCustomer.getByRole('button', { name: 'Add customer' }).click();
  await expect(page.locator('tr[data-customer="C-1"]')).toContainText('Houston, US');
  await page.screenshot({ path: 'screenshots/customers-set-up.png', fullPage: true });
  // Edited on its own page, where it can also be deactivated.
  await page.locator('tr[data-customer="C-1"]').getByRole('link', { name: 'Edit', exact: true }).click();
  await expect(page.locator('h1')).toHaveText('Customer C-1');
  await page.waitForLoadState('networkidle');
  await page.getByLabel('Phone').fill('+1 713 555 0100');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Customer saved.' })).toBeVisible();
  await expect(page.getByLabel('Phone')).toHaveValue('+1 713 555 0100');
  await page.screenshot({ path: 'screenshots/customer-edit.png', fullPage: true });

  // Everything ticked: the checklist is gone.
  await gotoHydrated(page, '/');
  await expect(page.getByTestId('getting-started')).toHaveCount(0);

  // The call center takes the order, the card typed on the processor's page.
  const callCenter = await (await browser.newContext({ baseURL: base })).newPage();
  await signIn(callCenter, 'carla');
  await gotoHydrated(callCenter, '/orders/new');
  // The channel first: the card is taken on the processor it pays through, and the channel is
  // still chosen when the processor's page sends the browser back.
  await callCenter.getByLabel('Channel').selectOption({ label: 'Phone orders (Call center)' });
  await enterCard(callCenter, '4111111111111111', 'Dana Ruiz');
  await expect(callCenter.getByTestId('card')).toContainText('Visa •••• 1111 · Dana Ruiz');
  await expect(callCenter.getByLabel('Channel').locator('option:checked')).toHaveText('Phone orders (Call center)');
  await callCenter.getByLabel('Customer').selectOption({ label: 'C-1 · Dana Ruiz' });
  await callCenter.getByLabel('Item, line 1').fill('Espresso machine');
  await callCenter.getByLabel('Quantity, line 1').fill('1');
  await callCenter.getByLabel('Unit price, line 1').fill('249.99');
  await callCenter.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(callCenter.locator('h1')).toContainText('Sales order SO-');
  orderPath = new URL(callCenter.url()).pathname;
  // Taken on the call center, its time shown in the channel's time zone.
  await expect(callCenter.getByText(/Phone orders · taken \d{4}-\d{2}-\d{2} \d{2}:\d{2} C[SD]T/)).toBeVisible();
  const orderNumber = ((await callCenter.locator('h1').textContent()) ?? '').match(/SO-\d+/)![0];

  // Finance invoices it: one authorization, one capture.
  await signIn(page, 'fin');
  await gotoHydrated(page, orderPath);
  await page.getByLabel('Quantity to invoice for line 1').fill('1');
  await page.getByRole('button', { name: 'Invoice', exact: true }).click();
  await expect(page.getByTestId('balance')).toHaveText('0.00 USD');
  await expect(page.locator('[data-authorization]')).toHaveCount(1);
  await expect(page.locator('[data-authorization] tr.capture')).toHaveCount(1);
  await expect(page.locator('[data-authorization]')).toContainText('249.99');
  await page.screenshot({ path: 'screenshots/onboarding-first-order-invoiced.png', fullPage: true });

  // Its journals balance, each one and in all.
  await gotoHydrated(page, `/journals?order=${orderNumber}`);
  const journals = page.locator('[data-testid="journals"] > tbody > tr');
  await expect(journals.first()).toBeVisible();
  expect(await journals.count()).toBeGreaterThanOrEqual(2);
  for (const row of await journals.all()) {
    const [dr, cr] = await drCr(row);
    expect(dr, await row.getAttribute('data-journal') ?? '').toBe(cr);
    expect(dr).toBeGreaterThan(0);
  }
  await callCenter.context().close();
});

test('closed, the call-center channel refuses new orders with a clear message while the old order still opens', async ({ page, browser }) => {
  expect(orderPath).not.toBe('');
  const callCenter = await (await browser.newContext({ baseURL: base })).newPage();
  await signIn(callCenter, 'carla');
  await gotoHydrated(callCenter, '/orders/new');
  await enterCard(callCenter, '4111111111111111', 'Dana Ruiz');
  await callCenter.getByLabel('Customer').selectOption({ label: 'C-1 · Dana Ruiz' });
  await callCenter.getByLabel('Channel').selectOption({ label: 'Phone orders (Call center)' });
  await callCenter.getByLabel('Item, line 1').fill('Grinder');
  await callCenter.getByLabel('Quantity, line 1').fill('1');
  await callCenter.getByLabel('Unit price, line 1').fill('89.00');

  // The administrator closes the channel while the order is being typed.
  await signIn(page, 'admin');
  await gotoHydrated(page, '/parameters/stores');
  const row = page.locator('tr[data-channel="phone"]');
  await row.getByRole('button', { name: 'Close' }).click();
  await expect(row.locator('.badge')).toHaveText('Closed');

  await callCenter.getByRole('button', { name: 'Place order and authorize' }).click();
  await expect(callCenter.getByText('Phone orders is closed: it takes no new orders')).toBeVisible();
  expect(new URL(callCenter.url()).pathname).toBe('/orders/new');
  await callCenter.screenshot({ path: 'screenshots/onboarding-closed-channel.png', fullPage: true });
  await gotoHydrated(callCenter, orderPath);
  await expect(callCenter.locator('h1')).toContainText('Sales order SO-');
  await expect(callCenter.getByTestId('balance')).toHaveText('0.00 USD');
  await callCenter.context().close();
});
