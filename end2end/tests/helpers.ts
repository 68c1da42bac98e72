import { expect, Page } from '@playwright/test';

export const password = () => process.env.PAYSTAGE_E2E_PASSWORD!;

/** Signs in through the login form and waits for the overview. */
export async function signIn(page: Page, username: string) {
  await page.goto('/login');
  await page.getByLabel('Username').fill(username);
  await page.locator('#password').fill(password());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('signed-in-user')).toBeVisible();
}

/** Loads `path` and waits until the wasm bundle has hydrated the page. */
export async function gotoHydrated(page: Page, path: string) {
  const wasm = page.waitForResponse(/\.wasm$/);
  await page.goto(path);
  await wasm;
  await page.waitForLoadState('networkidle');
}

/** Adds one use of a fault on the processor simulator's page (signed in as an administrator). */
export async function addFault(page: Page, where: string, kind: string) {
  await gotoHydrated(page, '/admin/simulator');
  await page.getByLabel('Where').selectOption(where);
  await page.getByLabel('Kind').selectOption(kind);
  await page.getByLabel('Times').fill('1');
  await page.getByRole('button', { name: 'Add fault' }).click();
  await expect(page.getByRole('status')).toHaveText('Fault added.');
}

/** Enters a card on the processor's hosted card page (its own origin) and comes back to the page
 * that sent us. */
export async function enterCard(page: Page, number: string, holder: string) {
  await page.getByRole('link', { name: /Enter the card on the processor's payment page|Take a new payment|New: enter the card/ }).first().click();
  await expect(page.locator('h1')).toHaveText('Card details');
  await page.getByLabel('Card number').fill(number);
  await page.getByLabel('Expiry (MM/YY)').fill('11/31');
  await page.getByLabel('Name on card').fill(holder);
  await page.getByRole('button', { name: 'Save card' }).click();
  await page.waitForLoadState('networkidle');
}
