import { test, expect, Page } from '@playwright/test';
import { signIn, gotoHydrated } from './helpers';

const prerequisites = [
  'Unified payment posting journal defaults for Commerce',
  'Omni-channel payments',
  'Duplicate payment protection on invoicing',
  'Enable refunds over multiple captures',
  'Enable manual void of expired credit card payment lines when authorizations are expired',
];
const ocop = 'Omni-channel Commerce order payments';

function row(page: Page, key: string) {
  return page.locator(`tr[data-feature="${key}"]`);
}

test('R-FEA-2: Omni-channel Commerce order payments needs its prerequisites first, then enables', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/admin/features');
  const target = row(page, 'omni_channel_commerce_order_payments');
  await target.getByRole('button', { name: 'Enable' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText(`${ocop} cannot be enabled until these features are enabled`);
  for (const p of prerequisites) await expect(alert).toContainText(p);
  await expect(target.locator('.badge')).toHaveText('Off');

  const keys = ['unified_payment_posting_journal_defaults', 'omni_channel_payments', 'duplicate_payment_protection',
    'refunds_over_multiple_captures', 'manual_void_of_expired_lines'];
  for (const k of keys) {
    await row(page, k).getByRole('button', { name: 'Enable' }).click();
    await expect(row(page, k).locator('.badge')).toHaveText('On');
  }
  await target.getByRole('button', { name: 'Enable' }).click();
  await expect(target.locator('.badge')).toHaveText('On');
  await expect(page.getByRole('status')).toHaveText('Feature updated.');

  // Disabling a prerequisite of an enabled feature is refused, naming the dependent.
  await row(page, 'omni_channel_payments').getByRole('button', { name: 'Disable' }).click();
  await expect(page.getByRole('alert')).toContainText(`Omni-channel payments cannot be disabled while these features that depend on it are enabled: ${ocop}`);
  await page.reload();
  await expect(row(page, 'omni_channel_payments').locator('.badge')).toHaveText('On');
});

test('R-FEA-3: nonrecurring tokens with the unified POS experience show a warning', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/admin/features');
  // Prerequisites of nonrecurring tokens (the commerce payment features are on from the test above).
  for (const k of ['incremental_capture', 'restrict_payment_token_usage', 'nonrecurring_tokens']) {
    await row(page, k).getByRole('button', { name: 'Enable' }).click();
    await expect(row(page, k).locator('.badge')).toHaveText('On');
  }
  await expect(page.locator('.notice.warning')).toHaveCount(0);
  await row(page, 'unified_payments_experience_in_pos').getByRole('button', { name: 'Enable' }).click();
  await expect(page.locator('.notice.warning')).toContainText(
    'Enable unified payments experience in POS is on, so Enable use of nonrecurring tokens in Commerce does not take effect');
  await row(page, 'unified_payments_experience_in_pos').getByRole('button', { name: 'Disable' }).click();
  await expect(page.locator('.notice.warning')).toHaveCount(0);
});

test('the filter box narrows the list after hydration', async ({ page }) => {
  await signIn(page, 'admin');
  await gotoHydrated(page, '/admin/features');
  await page.getByLabel('Filter').fill('token');
  await expect(page.locator('tbody tr:visible')).toHaveCount(2);
});

test('the audit page shows the sign-ins and toggles', async ({ page }) => {
  await signIn(page, 'admin');
  await page.goto('/admin/audit?action=feature.enable');
  const rows = page.locator('tr[data-action="feature.enable"]');
  await expect(rows.filter({ hasText: ocop })).toHaveCount(1);
  await expect(rows.first()).toContainText('admin');
  await expect(rows.first()).toContainText('{"enabled":false}');
  await expect(rows.first()).toContainText('{"enabled":true}');
  await page.goto('/admin/audit?action=sign_in.failed');
  await expect(page.locator('tr[data-action="sign_in.failed"]').first()).toBeVisible();
});
