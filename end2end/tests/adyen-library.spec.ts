// Issue #42: proof that `paystage sandbox` speaks Adyen's shapes. Adyen's own Node.js client
// library (@adyen/api-library, which calls Checkout /v72) drives the sandbox, started as its own
// process: authorize, two partial captures, a refund, an amount update, a cancel, an idempotent
// repeat; and the library's HMAC validator accepts every notification the sandbox sends.
//
// The library only speaks HTTPS, so a local TLS proxy (a throwaway self-signed certificate made
// with openssl) sits in front of the sandbox; the library is told to accept that certificate
// through its own `certificatePath: "unencrypted"` option. Requests and answers pass unchanged.
import { test, expect } from '@playwright/test';
import { Client, CheckoutAPI, hmacValidator } from '@adyen/api-library';
import { PaymentsApi } from '@adyen/api-library/lib/src/services/checkout/paymentsApi';
import { ModificationsApi } from '@adyen/api-library/lib/src/services/checkout/modificationsApi';
import { spawn, execFileSync, ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttps } from 'node:https';
import { createServer as createHttp, request as httpRequest, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '../..');
const bin = process.env.PAYSTAGE_BIN ?? join(root, 'target/debug/paystage');
const API_KEY = 'library-test-key-' + Date.now();
const HMAC_KEY = '9f'.repeat(32);
const MERCHANT = 'PaystageDemo';

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((ok, fail) => {
    const parts: Buffer[] = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => ok(Buffer.concat(parts)));
    req.on('error', fail);
  });
}

function listen(server: Server): Promise<number> {
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok((server.address() as AddressInfo).port)));
}

function freePort(): Promise<number> {
  const s = createHttp();
  return listen(s).then((p) => new Promise((ok) => s.close(() => ok(p))));
}

test.describe('Adyen client library against the sandbox', () => {
  let sandbox: ChildProcess;
  let receiver: Server;
  let proxy: Server;
  let payments: PaymentsApi;
  let modifications: ModificationsApi;
  const notifications: any[] = [];

  test.beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paystage-sandbox-lib-'));
    receiver = createHttp(async (req, res) => {
      const batch = JSON.parse((await body(req)).toString());
      for (const w of batch.notificationItems) notifications.push(w.NotificationRequestItem);
      res.end('[accepted]');
    });
    const hookPort = await listen(receiver);
    const port = await freePort();
    sandbox = spawn(bin, ['sandbox', '--port', String(port), '--data', join(dir, 'store'), '--api-key', API_KEY,
      '--hmac-key', HMAC_KEY, '--notify-url', `http://127.0.0.1:${hookPort}/webhooks/adyen/adyen`], {
      env: { ...process.env, PAYSTAGE_LOG: 'warn' }, stdio: 'ignore',
    });
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
      } catch { /* not up yet */ }
      if (i > 200) throw new Error('the sandbox did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    proxy = createHttps({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, async (req, res) => {
      const data = await body(req);
      const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.end(data);
    });
    const tlsPort = await listen(proxy);
    const client = new Client({ apiKey: API_KEY, environment: 'TEST', certificatePath: 'unencrypted' } as any);
    // The library's services carry Adyen's test URL as their base; pointed at the sandbox here.
    const checkout = new CheckoutAPI(client);
    const base = `https://127.0.0.1:${tlsPort}/checkout/v72`;
    payments = checkout.PaymentsApi;
    modifications = checkout.ModificationsApi;
    (payments as any).baseUrl = base;
    (modifications as any).baseUrl = base;
  });

  test.afterAll(() => {
    sandbox?.kill('SIGKILL');
    receiver?.close();
    proxy?.close();
  });

  test('authorize, capture twice, refund, update the amount, cancel; notifications verify', async () => {
    const eur = (value: number) => ({ currency: 'EUR', value });
    // A card sent in the clear by a PCI-compliant caller, stored for the shopper.
    const firstPayment = {
      amount: eur(10000), merchantAccount: MERCHANT, reference: 'lib-order-1',
      paymentMethod: { type: 'scheme', number: '4111111111111111', expiryMonth: '03', expiryYear: '2030', holderName: 'Jamie Rivera', cvc: '737' } as any,
      shopperReference: 'lib-shopper-1', storePaymentMethod: true, shopperInteraction: 'Ecommerce' as any,
      recurringProcessingModel: 'CardOnFile' as any, additionalData: { manualCapture: 'true' },
    } as any;
    const paid = await payments.payments(firstPayment, { idempotencyKey: 'lib-pay-1' });
    expect(paid.resultCode).toBe('Authorised');
    const psp = paid.pspReference!;
    const stored = paid.additionalData!['recurring.recurringDetailReference'];
    expect(stored).toBeTruthy();
    expect(paid.additionalData!['cardSummary']).toBe('1111');

    // The same key and request again: the stored answer, no second authorization.
    const again = await payments.payments(firstPayment, { idempotencyKey: 'lib-pay-1' });
    expect(again.pspReference).toBe(psp);

    const c1 = await modifications.captureAuthorisedPayment(psp, { amount: eur(3000), merchantAccount: MERCHANT, reference: 'lib-cap-1' }, { idempotencyKey: 'lib-cap-1' });
    const c2 = await modifications.captureAuthorisedPayment(psp, { amount: eur(2500), merchantAccount: MERCHANT, reference: 'lib-cap-2' }, { idempotencyKey: 'lib-cap-2' });
    expect([c1.status, c2.status]).toEqual(['received', 'received']);
    expect(c1.paymentPspReference).toBe(psp);
    expect(c1.pspReference).not.toBe(c2.pspReference);
    const refund = await modifications.refundCapturedPayment(psp, { amount: eur(1000), merchantAccount: MERCHANT, reference: 'lib-ref-1' }, { idempotencyKey: 'lib-ref-1' });
    expect(refund.status).toBe('received');
    const update = await modifications.updateAuthorisedAmount(psp, { amount: eur(12000), merchantAccount: MERCHANT, reference: 'lib-adj-1' }, { idempotencyKey: 'lib-adj-1' });
    expect(update.status).toBe('received');
    expect(update.amount.value).toBe(12000);

    // A second authorization on the stored card, then cancelled.
    const second = await payments.payments({
      amount: eur(4000), merchantAccount: MERCHANT, reference: 'lib-order-2',
      paymentMethod: { type: 'scheme', storedPaymentMethodId: stored } as any,
      shopperReference: 'lib-shopper-1', shopperInteraction: 'ContAuth' as any, recurringProcessingModel: 'CardOnFile' as any,
      additionalData: { manualCapture: 'true' },
    } as any, { idempotencyKey: 'lib-pay-2' });
    expect(second.resultCode).toBe('Authorised');
    const cancel = await modifications.cancelAuthorisedPaymentByPspReference(second.pspReference!, { merchantAccount: MERCHANT, reference: 'lib-cancel-1' }, { idempotencyKey: 'lib-cancel-1' });
    expect(cancel.status).toBe('received');
    // A capture of the cancelled authorization is refused with Adyen's error shape.
    await expect(modifications.captureAuthorisedPayment(second.pspReference!, { amount: eur(100), merchantAccount: MERCHANT }, { idempotencyKey: 'lib-cap-3' }))
      .rejects.toMatchObject({ statusCode: 422 });

    // Every outcome arrives as a notification, and Adyen's validator accepts each signature.
    const expected = ['AUTHORISATION', 'AUTHORISATION', 'CAPTURE', 'CAPTURE', 'REFUND', 'AUTHORISATION_ADJUSTMENT', 'CANCELLATION'];
    await expect.poll(() => notifications.map((n) => n.eventCode).sort(), { timeout: 15_000 }).toEqual([...expected].sort());
    const validator = new hmacValidator();
    for (const n of notifications) {
      expect(validator.validateHMAC(n, HMAC_KEY), `${n.eventCode} ${n.pspReference}`).toBe(true);
    }
    const tampered = { ...notifications[0], amount: { ...notifications[0].amount, value: notifications[0].amount.value + 1 } };
    expect(validator.validateHMAC(tampered, HMAC_KEY)).toBe(false);
  });
});
