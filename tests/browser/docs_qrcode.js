// Opens /docs in Debian's headless Chromium (driven by playwright-core), authorizes the
// basicAuth scheme, runs "Try it out" on GET /qrcode/{username} and reports, as one line of
// JSON, whether the QR image rendered and every Content-Security-Policy violation and console
// error the page had. tests/test_clients.py runs it and judges the result.
// Usage: node docs_qrcode.js BASE_URL USERNAME PASSWORD [SCREENSHOT.png]
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

async function main() {
  const [baseUrl, username, password, screenshot] = process.argv.slice(2);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'docs-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
    viewport: { width: 1280, height: 1600 },
  });
  const result = { violations: [], consoleErrors: [], image: null };
  try {
    const page = await context.newPage();
    // Injected by the browser, so the page's own CSP does not apply to it.
    await page.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    page.on('console', (message) => {
      if (message.type() === 'error') result.consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => result.consoleErrors.push(String(error)));

    await page.goto(`${baseUrl}/docs`);
    const operation = page.locator('#operations-auth-get_qrcode');
    await operation.waitFor({ timeout: 30000 });

    // Authorize: the basicAuth scheme takes the user's own username and password.
    await page.locator('.auth-wrapper .authorize').first().click();
    const basic = page.locator('.auth-container').filter({ hasText: 'basicAuth' });
    await basic.locator('input[type=text]').fill(username);
    await basic.locator('input[type=password]').fill(password);
    await basic.locator('button.authorize').click();
    await page.locator('.dialog-ux button.close-modal').click();

    await operation.locator('.opblock-summary').first().click();
    await operation.locator('.try-out__btn').click();
    await operation.locator('input[placeholder="username"]').fill(username);
    await operation.locator('button.execute').click();

    const image = operation.locator('.live-responses-table img');
    await image.waitFor({ timeout: 30000 });
    await page.waitForFunction(
      (element) => element.complete, await image.elementHandle(), { timeout: 10000 });
    result.image = await image.evaluate((element) => ({
      src: element.src.slice(0, 5),
      complete: element.complete,
      width: element.naturalWidth,
      height: element.naturalHeight,
    }));
    if (screenshot) await operation.screenshot({ path: screenshot });
    result.violations = await page.evaluate(() => window.cspViolations);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
