// dashboard.js -- the dashboard of `flow serve` in a real browser: Debian's
// chromium, driven by playwright-core, against a real serve on a free
// loopback port with a store and a flows directory of its own. A person's
// path through it: start a run from the Flows view, watch its graph turn
// green, answer the approval by clicking, see it completed in the list;
// cancel a run with its button; then a serve with a token, which the page
// asks for. Screenshots (wide and narrow) are kept in $FLOW_BUILD_DIR/artifacts.
//
// Run by run.sh (ctest: browser/dashboard) with FLOW set to the flow binary.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const {spawn} = require('child_process');
const {chromium} = require('playwright-core');

const FLOW = process.env.FLOW;
const BUILD = process.env.FLOW_BUILD_DIR || path.resolve(__dirname, '../../build');
const ARTIFACTS = path.join(BUILD, 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 30000;   // the longest a step may take on a busy machine

let passed = 0, failed = 0;
const ok = (what) => { passed++; console.log('ok: ' + what); };
const notOk = (what) => { failed++; console.log('FAIL: ' + what); };
function check(cond, what) { if (cond) ok(what); else notOk(what); return cond; }
// step(what, fn): fn's throw (a timeout waiting for the page) is a failure,
// not a crash; the page as it was then is kept as a screenshot.
let lastPage = null, failures = 0;
async function step(what, fn) {
  try {
    await fn();
    ok(what);
    return true;
  } catch (e) {
    notOk(what + ': ' + String(e.message || e).split('\n')[0]);
    if (lastPage) {
      const file = path.join(ARTIFACTS, 'dashboard-failure-' + (++failures) + '.png');
      await lastPage.screenshot({path: file, fullPage: true}).catch(() => {});
      console.log('  the page then: ' + file + ' (' + lastPage.url() + ')');
    }
    return false;
  }
}

const FLOWS = {
  'release.yaml': `name: release
description: Build, test and ship, with a person's approval
tasks:
  build:
    shell: 'sleep 0.3; echo "{\\"artifact\\": \\"app-1.4.2.tar.gz\\"}"'
  unit_tests:
    after: build
    foreach: [core, api, web]
    run: [echo, '{"suite": "{{ item }}", "passed": 42}']
  lint:
    after: build
    shell: 'echo "2 files checked" >&2; echo "{\\"warnings\\": 0}"'
  approve:
    after: [unit_tests, lint]
    feedback:
      type: approval
      message: Ship app-1.4.2 to production?
  ship:
    after: approve
    run: [echo, '{"shipped": "app-1.4.2"}']
`,
  'nightly.yaml': `name: nightly
description: The nightly report, mailed
tasks:
  extract:
    run: [echo, '{"rows": 1200}']
  report:
    after: extract
    shell: 'echo "cannot reach the mail server" >&2; exit 3'
`,
  'onboard.yaml': `name: onboard
description: Questions only a person can answer
tasks:
  plan:
    feedback:
      type: selection
      message: Which plan?
      options: [starter, team, enterprise]
  note:
    feedback:
      type: text
      message: A line for the welcome e-mail
  provision:
    after: [plan, note]
    run: [echo, '{"plan": "{{ tasks.plan.output.selected }}"}']
`,
  'backfill.yaml': `name: backfill
description: Reload last month, slowly
tasks:
  reload:
    shell: 'sleep 120'
`,
};

const children = [];

// A `flow serve` on a free port of 127.0.0.1; resolves to its base URL.
function serve(dir, extra) {
  return new Promise((resolve, reject) => {
    const child = spawn(FLOW, ['serve', '--listen', '127.0.0.1:0', '--flows', path.join(dir, 'flows'),
      '--store', 'sqlite:' + path.join(dir, 'flow.db'), ...(extra || [])],
      {cwd: dir, stdio: ['ignore', 'ignore', 'pipe']});
    children.push(child);
    let err = '';
    const timer = setTimeout(() => reject(new Error('flow serve did not say where it listens: ' + err)), WAIT);
    child.stderr.on('data', d => {
      err += d;
      const m = /listening on (http:\/\/[^/\s]+)\//.exec(err);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', code => { clearTimeout(timer); reject(new Error('flow serve exited ' + code + ': ' + err)); });
  });
}

async function api(base, method, route, body, token) {
  const headers = {'Content-Type': 'application/json'};
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(base + '/api/v1' + route, {method, headers, body: body ? JSON.stringify(body) : undefined});
  return {status: res.status, json: await res.json().catch(() => null)};
}

// A page that fails the test on a script error or a CSP violation.
async function newPage(browser, viewport, problems) {
  const ctx = await browser.newContext({viewport, deviceScaleFactor: 1, colorScheme: 'light'});
  const page = await ctx.newPage();
  page.on('pageerror', e => problems.push('script error: ' + e.message));
  page.on('console', m => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push('CSP: ' + m.text());
  });
  page.on('dialog', d => d.accept());
  lastPage = page;
  return page;
}

async function shot(page, name) {
  // the toast of the last action goes first: it is not part of the page
  await page.waitForFunction(() => {
    const t = document.querySelector('.toast');
    return !t || getComputedStyle(t).opacity === '0';
  }, null, {timeout: WAIT}).catch(() => {});
  await page.mouse.move(0, 0);   // no row lit by a pointer left where it clicked
  const file = path.join(ARTIFACTS, 'dashboard-' + name + '.png');
  await page.screenshot({path: file});
  console.log('screenshot: ' + file);
}

// Nothing wider than the window but the graph, which scrolls in its box.
async function fitsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

async function main() {
  if (!FLOW) throw new Error('set FLOW to the flow binary');
  fs.mkdirSync(ARTIFACTS, {recursive: true});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-browser-'));
  fs.mkdirSync(path.join(dir, 'flows'));
  for (const [name, text] of Object.entries(FLOWS)) fs.writeFileSync(path.join(dir, 'flows', name), text);

  const browser = await chromium.launch({executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync']});
  const problems = [];
  try {
    const base = await serve(dir);
    console.log('serve: ' + base);

    // Runs of other shapes, so the list shows what a day looks like.
    for (const id of ['nightly-0411', 'nightly-0412']) {
      const nightly = await api(base, 'POST', '/runs', {flow: 'nightly', id});
      check(nightly.status === 201, 'POST /runs starts the nightly run ' + id + ' (201)');
    }
    const slow = await api(base, 'POST', '/runs', {flow: 'backfill', id: 'backfill-march'});
    check(slow.status === 201, 'POST /runs starts the backfill run (201)');

    const page = await newPage(browser, {width: 1280, height: 800}, problems);
    await page.goto(base + '/#/flows');

    // --- start a run by clicking
    let runId = null;
    await step('the Flows view lists the files of --flows and starts a run from its form', async () => {
      await page.click('a.flow-item:has-text("release")', {timeout: WAIT});
      await page.waitForSelector('.flow-detail .graph svg g.task[data-task="build"]', {timeout: WAIT});
      await page.fill('#inputs', '{"version": "1.4.2"}');
      await page.fill('#run-id', 'release-1.4.2');
      await page.click('button:has-text("Start run")');
      await page.waitForURL(/#\/runs\/release-1\.4\.2$/, {timeout: WAIT});
      runId = 'release-1.4.2';
    });

    // --- the graph turns green, then waits for a person
    await step('graph nodes turn st-completed as tasks finish', async () => {
      for (const t of ['build', 'unit_tests', 'lint'])
        await page.waitForSelector(`.graph g.task[data-task="${t}"].st-completed`, {timeout: WAIT});
    });
    await step('the approval task waits: node st-waiting, run waiting for feedback', async () => {
      await page.waitForSelector('.graph g.task[data-task="approve"].st-waiting', {timeout: WAIT});
      await page.waitForSelector('.title-status .badge.st-waiting', {timeout: WAIT});
      await page.waitForSelector('.feedback-card form.fb button:has-text("Approve")', {timeout: WAIT});
    });
    const status = await page.textContent('.title-status .badge').catch(() => '');
    check(/running|paused/.test(status), 'the waiting run is running or paused (' + status + ')');
    check(await page.locator('table.acts tbody tr:has-text("unit_tests")').count() >= 3,
          'the activations table has a row per foreach item');
    await step('a row expands to its output (pretty JSON) and stderr tail', async () => {
      const row = page.locator('table.acts tbody tr:has(td:text-is("lint"))').first();
      await row.locator('button.expander').click();
      await page.waitForSelector('tr.detail pre:has-text("\\"warnings\\": 0")', {timeout: WAIT});
      await page.waitForSelector('tr.detail pre:has-text("2 files checked")', {timeout: WAIT});
      await row.locator('button.expander').click();
    });
    await page.locator('#by-input, .fb input.by').first().fill('Ada');
    await shot(page, 'run-waiting');

    // --- answer by clicking
    await step('clicking Approve completes the run (badge st-completed, every node green)', async () => {
      await page.click('.feedback-card button:has-text("Approve")');
      await page.waitForSelector('.title-status .badge.st-completed', {timeout: WAIT});
      await page.waitForFunction(() => {
        const nodes = [...document.querySelectorAll('.graph g.task')];
        return nodes.length === 5 && nodes.every(g => g.classList.contains('st-completed'));
      }, null, {timeout: WAIT});
    });
    await step('the completed run shows when it ended and how long it took', async () => {
      await page.waitForSelector('.facts [data-fact="ended"] time', {timeout: WAIT});
      await page.waitForFunction(() => /\d/.test(document.querySelector('.facts [data-fact="duration"] dd').textContent),
                                 null, {timeout: WAIT});
    });
    await step('the journal shows the answer, by its author', async () => {
      await page.waitForSelector('.journal .jrec[data-type="feedback_answered"]:has-text("approved by Ada")', {timeout: WAIT});
      await page.waitForSelector('.journal .jrec[data-type="run_ended"]', {timeout: WAIT});
    });
    check(await page.isHidden('.feedback-card'), 'the answered request is gone from the run page');
    check(await page.isDisabled('button:has-text("Pause")') && await page.isDisabled('button:has-text("Cancel")'),
          'Pause and Cancel are disabled on a completed run');
    await page.evaluate(() => { const b = document.querySelector('.journal-box'); b.scrollTop = 0; });
    await shot(page, 'run');

    // --- a run that fails shows its error
    await page.goto(base + '/#/runs/nightly-0412');
    await step('a failed run shows its status and error', async () => {
      await page.waitForSelector('.title-status .badge.st-failed', {timeout: WAIT});
      await page.waitForSelector('.outcome .note-err', {timeout: WAIT});
      await page.waitForSelector('.graph g.task[data-task="report"].st-failed', {timeout: WAIT});
    });
    check(await page.isEnabled('button:has-text("Retry")'), 'Retry is enabled on a failed run');

    // --- cancel with the button (a confirm dialog, accepted)
    await page.goto(base + '/#/runs/backfill-march');
    await step('Cancel on a running run cancels it', async () => {
      await page.waitForSelector('.title-status .badge.st-running', {timeout: WAIT});
      await page.click('button:has-text("Cancel")');
      await page.waitForSelector('.title-status .badge.st-cancelled', {timeout: WAIT});
    });

    // --- a 409 from the API is shown, and changes nothing
    await page.goto(base + '/#/flows/release');
    await step('starting a run with an id that exists shows the API\'s 409 message', async () => {
      await page.waitForSelector('#run-id', {timeout: WAIT});
      await page.fill('#run-id', 'release-1.4.2');
      await page.click('button:has-text("Start run")');
      await page.waitForSelector('.start-form .form-error:not([hidden])', {timeout: WAIT});
    });
    check(/#\/flows\/release$/.test(page.url()), 'the page stays on the form after a refused start');

    // --- the list
    await page.goto(base + '/#/runs');
    await step('the runs list shows the run completed, in green', async () => {
      await page.waitForSelector(`table.runs tr[data-run="${runId}"] .badge.st-completed`, {timeout: WAIT});
    });
    const colours = await page.evaluate(() => {
      const b = document.querySelector('table.runs .badge.st-completed');
      const f = document.querySelector('table.runs .badge.st-failed');
      return [b && getComputedStyle(b).color, f && getComputedStyle(f).color];
    });
    check(colours[0] && /^rgb\(\s*\d+,\s*(\d+),/.test(colours[0]) &&
          (() => { const [r, g, b] = colours[0].match(/\d+/g).map(Number); return g > r && g > b; })(),
          'a completed badge is green (' + colours[0] + ')');
    check(colours[0] !== colours[1], 'completed and failed badges differ in colour');
    await step('the status filter is in the hash and filters the list', async () => {
      await page.selectOption('#f-status', 'failed');
      await page.waitForURL(/#\/runs\?status=failed$/, {timeout: WAIT});
      await page.waitForFunction(() => {
        const rows = [...document.querySelectorAll('table.runs tbody tr')];
        return rows.length === 2 && rows.every(r => r.dataset.run.startsWith('nightly-'));
      }, null, {timeout: WAIT});
    });
    await page.goto(base + '/#/runs?limit=2');
    await step('paging: two runs a page, Older follows the API\'s next cursor, Newest comes back', async () => {
      await page.waitForFunction(() => document.querySelectorAll('table.runs tbody tr').length === 2, null, {timeout: WAIT});
      const first = await page.$$eval('table.runs tbody tr', rows => rows.map(r => r.dataset.run));
      await page.click('.pager a:has-text("Older")');
      await page.waitForURL(/cursor=/, {timeout: WAIT});
      await page.waitForFunction(f => {
        const rows = [...document.querySelectorAll('table.runs tbody tr')].map(r => r.dataset.run);
        return rows.length >= 1 && rows.every(id => !f.includes(id));
      }, first, {timeout: WAIT});
      await page.click('.pager a:has-text("Newest")');
      await page.waitForFunction(f => {
        const rows = [...document.querySelectorAll('table.runs tbody tr')].map(r => r.dataset.run);
        return rows.join() === f.join();
      }, first, {timeout: WAIT});
    });

    // --- a second release waits: answered from the Feedback view
    const second = await api(base, 'POST', '/runs', {flow: 'release', id: 'release-1.4.3'});
    check(second.status === 201, 'POST /runs starts a second release (201)');
    await page.goto(base + '/#/runs');
    await step('the list shows the new run live, waiting, and the nav counts its request', async () => {
      await page.waitForSelector('table.runs tr[data-run="release-1.4.3"] .badge.st-waiting', {timeout: WAIT});
      await page.waitForSelector('#feedback-count:not([hidden])', {timeout: WAIT});
    });
    await page.waitForSelector(`table.runs tr[data-run="${runId}"]`, {timeout: WAIT});
    await shot(page, 'runs');
    check(await fitsWidth(page), 'wide: nothing overflows the window');

    await page.click('nav a[data-nav="feedback"]');
    await step('the Feedback view lists the open request; Reject answers it in place', async () => {
      const form = page.locator('form.fb[data-run="release-1.4.3"]');
      await form.waitFor({timeout: WAIT});
      await form.locator('button:has-text("Reject")').click();
      await page.waitForSelector('form.fb[data-run="release-1.4.3"]', {state: 'detached', timeout: WAIT});
      await page.waitForSelector('.empty:has-text("no run has an open request")', {timeout: WAIT});
    });
    await page.goto(base + '/#/runs/release-1.4.3');
    await step('the rejected release ends, its journal saying rejected', async () => {
      await page.waitForSelector('.journal .jrec[data-type="feedback_answered"]:has-text("rejected")', {timeout: WAIT});
      await page.waitForSelector('.title-status .badge.st-completed', {timeout: WAIT});
    });

    // --- a selection and a text, answered on the run page
    const onboard = await api(base, 'POST', '/runs', {flow: 'onboard', id: 'onboard-acme'});
    check(onboard.status === 201, 'POST /runs starts the onboard run (201)');
    await page.goto(base + '/#/runs/onboard-acme');
    await step('a selection is answered with its select, a text with its text field', async () => {
      const plan = page.locator('form.fb[data-request^="plan-"]');
      await plan.locator('select').selectOption('team', {timeout: WAIT});
      await plan.locator('button:has-text("Send")').click();
      await page.waitForSelector('.journal .jrec[data-type="feedback_answered"]:has-text("selected team")', {timeout: WAIT});
      const note = page.locator('form.fb[data-request^="note-"]');
      await note.locator('textarea').fill('Welcome aboard, ACME!');
      await note.locator('button:has-text("Send")').click();
      await page.waitForSelector('.journal .jrec[data-type="feedback_answered"]:has-text("Welcome aboard")', {timeout: WAIT});
      await page.waitForSelector('.title-status .badge.st-completed', {timeout: WAIT});
    });

    await page.goto(base + '/#/workers');
    await step('the Workers view says there is none without Redis', async () => {
      await page.waitForSelector('.empty:has-text("No workers")', {timeout: WAIT});
    });

    // --- a narrow window: everything stacks
    const narrow = await newPage(browser, {width: 390, height: 844}, problems);
    await narrow.goto(base + '/#/runs');
    await narrow.waitForSelector(`table.runs tr[data-run="${runId}"] .badge.st-completed`, {timeout: WAIT});
    check(await fitsWidth(narrow), 'narrow runs list: nothing overflows horizontally');
    await shot(narrow, 'runs-narrow');
    await narrow.goto(base + '/#/runs/' + runId);
    await narrow.waitForSelector('.graph g.task.st-completed', {timeout: WAIT});
    check(await fitsWidth(narrow), 'narrow run page: nothing but the graph overflows');
    await shot(narrow, 'run-narrow');
    await narrow.goto(base + '/#/flows/release');
    await narrow.waitForSelector('.start-form', {timeout: WAIT});
    check(await fitsWidth(narrow), 'narrow flows view: nothing overflows');

    // --- a serve with a token
    const tokenDir = path.join(dir, 'token');
    fs.mkdirSync(path.join(tokenDir, 'flows'), {recursive: true});
    fs.writeFileSync(path.join(tokenDir, 'flows', 'release.yaml'), FLOWS['release.yaml']);
    const token = 'browser-test-' + Math.random().toString(36).slice(2) + '-token';
    fs.writeFileSync(path.join(tokenDir, 'token'), token + '\n', {mode: 0o600});
    const tbase = await serve(tokenDir, ['--token-file', path.join(tokenDir, 'token')]);
    const started = await api(tbase, 'POST', '/runs', {flow: 'release', id: 'with-token'}, token);
    check(started.status === 201, 'the token serve starts a run for a request with the token');
    check((await api(tbase, 'GET', '/runs')).status === 401, 'the token serve answers 401 without it');
    const tpage = await newPage(browser, {width: 1280, height: 800}, problems);
    await tpage.goto(tbase + '/');
    await step('the page asks for the token', async () => {
      await tpage.waitForSelector('form.token-form input#token', {timeout: WAIT});
    });
    await shot(tpage, 'token');
    await step('a wrong token is refused, and the page says so', async () => {
      await tpage.fill('#token', 'not-the-token');
      await tpage.click('form.token-form button[type="submit"]');
      await tpage.waitForSelector('form.token-form .form-error', {timeout: WAIT});
    });
    await step('after the right token the runs list appears', async () => {
      await tpage.fill('#token', token);
      await tpage.click('form.token-form button[type="submit"]');
      await tpage.waitForSelector('table.runs tr[data-run="with-token"]', {timeout: WAIT});
    });
    await step('the token is kept for the tab: a run page loads its graph with it', async () => {
      await tpage.goto(tbase + '/#/runs/with-token');
      await tpage.waitForSelector('.graph g.task[data-task="build"].st-completed', {timeout: WAIT});
    });

    check(problems.length === 0, 'no script error and no CSP violation' +
          (problems.length ? ': ' + problems.slice(0, 3).join(' | ') : ''));
  } finally {
    await browser.close().catch(() => {});
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await Promise.all(children.map(c => c.exitCode !== null ? null
      : new Promise(r => { const t = setTimeout(() => { c.kill('SIGKILL'); r(); }, 15000); c.on('exit', () => { clearTimeout(t); r(); }); })));
    fs.rmSync(dir, {recursive: true, force: true});
  }
}

main().then(() => {
  console.log(passed + ' passed, ' + failed + ' failed');
  process.exit(failed ? 1 : 0);
}, e => {
  console.log('FAIL: ' + (e && e.stack || e));
  console.log(passed + ' passed, ' + (failed + 1) + ' failed');
  process.exit(1);
});
