// Opens /docs of a running portal in headless Chromium, as a person would: Authorize with a bearer token
// from /auth/login, then "Try it out" on GET /users/me, and checks that the response panel shows the
// signed-in user's email. Fails on any script error or Content-Security-Policy violation on the page.
// Usage: PORTAL_URL=http://127.0.0.1:8080 PORTAL_EMAIL=… PORTAL_PASSWORD=… node swagger.mjs
import { chromium } from 'playwright-core';

const base = process.env.PORTAL_URL;
const email = process.env.PORTAL_EMAIL;
const password = process.env.PORTAL_PASSWORD;
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!base || !email || !password) {
  console.error('set PORTAL_URL, PORTAL_EMAIL and PORTAL_PASSWORD');
  process.exit(2);
}

const login = await fetch(`${base}/auth/login`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ email, password }),
});
if (login.status !== 200) throw new Error(`login answered ${login.status}: ${await login.text()}`);
const token = (await login.json()).access_token;

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const problems = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The browser asks for /favicon.ico by itself; the portal has none, which is no fault of the page.
    const url = m.location().url ?? '';
    if (m.type() === 'error' && !url.endsWith('/favicon.ico')) problems.push(`console error: ${m.text()} (${url})`);
  });
  page.setDefaultTimeout(20_000);

  await page.goto(`${base}/docs`);
  const operation = page.locator('.opblock-get', { has: page.locator('[data-path="/users/me"]') }).first();
  await operation.waitFor();

  await page.locator('button.authorize').first().click();
  const bearerInput = 'input[aria-label="auth-bearer-value"]';
  await page.locator(`.modal-ux ${bearerInput}`).fill(token);
  const bearerScheme = page.locator('.modal-ux .auth-container', { has: page.locator(bearerInput) });
  await bearerScheme.locator('button.authorize').click();
  await page.locator('.modal-ux button.btn-done').first().click();

  await operation.locator('.opblock-summary').first().click();
  await operation.locator('button.try-out__btn').click();
  await operation.locator('button.execute').click();
  const live = operation.locator('.live-responses-table');
  await live.locator('tbody .response-col_status', { hasText: '200' }).first().waitFor();
  const body = await live.locator('tbody .response-col_description').first().innerText();
  if (!body.includes(email)) throw new Error(`the response panel does not show ${email}:\n${body}`);
  // The request Swagger UI sent carried the token pasted into Authorize.
  const curl = await operation.locator('.curl-command').innerText();
  if (!curl.includes(`Bearer ${token}`)) throw new Error(`the request was sent without the token:\n${curl}`);
} finally {
  await browser.close();
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`swagger ui: authorized and executed GET /users/me in Chromium, response shows ${email}`);
