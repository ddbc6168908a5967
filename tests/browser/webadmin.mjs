// The WebAdmin in a real browser: Debian's chromium, headless, driven by playwright-core.
// tests/webadmin_browser.rs runs it and answers each step it announces on stdout
// ("step NAME") with a line on stdin ("ok" or "fail REASON") once it has checked the
// server's behaviour over XMPP. Screenshots of every page go to $SHOTS.
// Environment: BASE (http://127.0.0.1:PORT), ADMIN, PASSWORD, SHOTS, CHROMIUM.
import { chromium } from 'playwright-core';
import readline from 'node:readline';
import path from 'node:path';

const { BASE, ADMIN, PASSWORD, SHOTS } = process.env;
const rl = readline.createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();

async function step(name) {
  console.log(`step ${name}`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== 'ok') throw new Error(`step ${name}: ${done ? 'no answer' : value}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function expectText(text, want, where) {
  if (!text.includes(want)) throw new Error(`${where}: no "${want}" in ${text}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();

  // the login page; a wrong password first, then the right one
  await page.goto(`${BASE}/admin/settings`);
  if (!page.url().endsWith('/admin/login')) throw new Error(`not sent to the login: ${page.url()}`);
  await shot(page, 'login');
  await page.fill('input[name=jid]', ADMIN);
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button:has-text("Log in")');
  expectText(await page.textContent('.msg.bad'), 'Wrong JID or password', 'wrong password');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button:has-text("Log in")');
  await page.waitForURL('**/admin/settings');
  expectText(await page.textContent('header'), ADMIN, 'logged in');
  await shot(page, 'server');

  // Auto Signup off for localhost: the test then sees a registration refused
  await page.click('nav >> text=Domains');
  const dom = page.locator('section#d-localhost');
  await dom.locator('select[name=auto_signup]').selectOption('false');
  await dom.locator('button:has-text("Save")').first().click();
  expectText(await page.textContent('.msg.ok'), 'auto signup off', 'auto signup');
  await step('signup-off');

  // a supplementary disco item: the test then finds it in disco#items
  const add = page.locator('section#d-localhost form:has(input[value=add_disco_item])');
  await add.locator('input[name=jid]').fill('irc.example.net');
  await add.locator('input[name=name]').fill('IRC gateway');
  await add.locator('button').click();
  expectText(await page.textContent('.msg.ok'), 'disco item irc.example.net added', 'disco item');
  expectText(await page.textContent('section#d-localhost table'), 'IRC gateway', 'item listed');
  await shot(page, 'domains');
  await step('disco-added');

  // the monitor: the test's connection shows up in the table (it refreshes itself)
  await page.click('nav >> text=Monitor');
  await page.waitForSelector('#rows tr >> text=watcher@localhost', { timeout: 15000 });
  await shot(page, 'monitor');
  await step('monitor-saw');

  // the other pages, for the screenshots, and an account created on its page
  await page.goto(`${BASE}/admin/federation`);
  await shot(page, 'federation');
  await page.goto(`${BASE}/admin/accounts`);
  const create = page.locator('form:has(input[value=create])');
  await create.locator('input[name=jid]').fill('from-browser@localhost');
  await create.locator('input[name=password]').fill('browser-pw');
  await create.locator('button').click();
  expectText(await page.textContent('.msg.ok'), 'from-browser@localhost created', 'account');
  await shot(page, 'accounts');
  await step('account-created');
  const row = page.locator('tr:has-text("from-browser@localhost")');
  await row.locator('input[name=confirm]').check();
  await row.locator('button:has-text("Delete")').click();
  expectText(await page.textContent('.msg.ok'), 'from-browser@localhost deleted', 'delete');
  await step('account-deleted');

  await page.click('button:has-text("Log out")');
  await page.waitForURL('**/admin/login');
  await page.goto(`${BASE}/admin/settings`);
  if (!page.url().endsWith('/admin/login')) throw new Error('still logged in after logout');
  console.log('done');
} catch (e) {
  console.log(`error ${String(e.stack || e).replace(/\n/g, ' | ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  rl.close();
}
