// Uses a hosted page of a running portal in headless Chromium, as a customer would: types a test card into
// the card form (Stripe.js's card Element; in tests localstripe's fake Stripe.js), submits it, and checks
// what the page then shows. A card that asks for 3-D Secure is authenticated in the fake's dialog, once for
// the card's setup and once for the payment. Keeps a phone-sized screenshot before and after. Fails on any
// script error or Content-Security-Policy violation on the page.
// Usage: node pages.mjs <page url> <card number> <paid|declined|saved> <screenshot path prefix>
import { chromium } from 'playwright-core';

const [url, number, outcome, shots] = process.argv.slice(2);
// Test cards that ask for 3-D Secure.
const THREE_D_SECURE = ['4000002500003155'];
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!url || !number || !['paid', 'declined', 'saved'].includes(outcome) || !shots) {
  console.error('usage: node pages.mjs <page url> <card number> <paid|declined|saved> <screenshot prefix>');
  process.exit(2);
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 412, height: 915 } });
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    // A declined card is answered 402, which Chromium logs as a failed resource load.
    const expected = outcome === 'declined' && /status of 402/.test(m.text());
    if (m.type() === 'error' && !expected) problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url);
  const form = page.locator('#card-form');
  await form.waitFor({ state: 'visible', timeout: 15000 });
  const field = (name) => page.locator(`#card-element input[placeholder="${name}"]`);
  await field('number').fill(number);
  await field('exp_month').fill('12');
  await field('exp_year').fill('31');
  await field('cvc').fill('123');
  await field('postal_code').fill('10119');
  await page.screenshot({ path: `${shots}-filled.png`, fullPage: true });
  await form.locator('button[type=submit]').click();
  if (THREE_D_SECURE.includes(number)) {
    const authenticate = page.getByRole('button', { name: 'Complete authentication' });
    await authenticate.click({ timeout: 15000 });
    await page.screenshot({ path: `${shots}-3ds.png`, fullPage: true });
    await authenticate.click({ timeout: 15000 });
  }
  if (outcome === 'paid') {
    await page.getByText('Thank you: this invoice is paid.').waitFor({ timeout: 20000 });
  } else if (outcome === 'saved') {
    await page.getByText(`ending in ${number.slice(-4)}`).waitFor({ timeout: 20000 });
  } else {
    const error = page.locator('#card-error');
    await error.waitFor({ state: 'visible', timeout: 20000 });
    const text = await error.textContent();
    if (!text.includes('Your card was declined')) problems.push(`the form shows "${text}", not the decline`);
    if (await form.locator('button[type=submit]').isDisabled()) problems.push('the form cannot be used again');
  }
  await page.screenshot({ path: `${shots}-${outcome}.png`, fullPage: true });
  console.log(await page.locator('main').innerText());
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
