#!/usr/bin/env node
// web_check.js BASE_URL PHOTO OUT_DIR — drives the web page (gateway/web/index.html) in
// Debian's headless Chromium through playwright-core (tools/node_modules) and checks every
// step against the HTTP API's own answer to the same query: a text query; a result made the
// reference, then a composed change; a filter; an uploaded photo as the reference; paging.
// Screenshots of each step go to OUT_DIR (1440 px wide, and the page at 375 px, whose width
// must not overflow). Exit 0 when all hold; 1 and one line per problem otherwise.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules/playwright-core'));

const [base, photo, outDir, tryonArg] = process.argv.slice(2);
const wantTryon = tryonArg === '1';
if (!outDir) { console.error('usage: web_check.js BASE_URL PHOTO OUT_DIR'); process.exit(2); }
const problems = [];
const K = 12;

async function api(body) {
  const r = await fetch(base + '/v1/search', { method: 'POST', body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(`API ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(j)}`);
  return j.hits.map((h) => h.id);
}

async function shown(page) {
  await page.waitForFunction(() => !document.getElementById('status').textContent.startsWith('Searching'));
  return page.$$eval('#results .hit', (els) => els.map((e) => e.dataset.id));
}

function same(step, got, want) {
  const ok = got.length === want.length && got.every((id, i) => id === want[i]);
  console.log(`  ${step}: ${got.length} hits ${ok ? 'as the API answers' : 'DIFFER from the API'}`);
  if (!ok) problems.push(`${step}: page shows [${got}] but the API answers [${want}]`);
  if (!got.length) problems.push(`${step}: no results shown`);
}

async function step(page, name, want) {
  await page.click('#search');
  const got = await shown(page);
  same(name, got, await want());
  const imgs = await page.$$eval('#results .hit img', (els) => els.length);
  if (imgs !== got.length) problems.push(`${name}: ${imgs} images for ${got.length} hits`);
  await page.screenshot({ path: path.join(outDir, `${name}.png`), fullPage: true });
  return got;
}

// One #filter-NAME per attribute of /v1/schema that a control fits; a select value and a
// price range, ANDed with the free-text filter, give the API's answer to the same filter;
// paging keeps the filter; group by product; a "Try on" reaches succeeded and shows an image.
async function filtersGroupTryon(page) {
  const schema = await (await fetch(base + '/v1/schema')).json();
  await page.waitForFunction(() => document.body.dataset.schema === 'loaded');
  for (const a of schema.attributes) {
    if (a.name === 'image_uri') continue;
    const fits = a.type === 'bool' || a.values || ((a.type === 'number' || a.type === 'integer') && a.min !== undefined);
    if (!fits) continue;
    const tag = await page.$eval(`#filter-${a.name}`, (e) => e.tagName + ':' + (e.type || '')).catch(() => null);
    const want = a.type === 'bool' ? 'INPUT:checkbox' : a.values ? 'SELECT:select-one' : 'SPAN:';
    if (tag !== want) problems.push(`#filter-${a.name} (${a.type}) is ${tag}, not ${want}`);
    if (!a.values && a.type !== 'bool' && !(await page.$(`#filter-${a.name}-min`))) problems.push(`#filter-${a.name}-min missing`);
  }
  console.log(`  8-filters: ${schema.attributes.length} schema attributes checked for controls`);
  const color = schema.attributes.find((a) => a.name === 'color');
  const price = schema.attributes.find((a) => a.name === 'price');
  if (!color || !color.values || !price) { problems.push('schema lacks color values or a price range'); return; }
  const c = color.values[0].value, lo = 10, hi = Math.round((price.min + price.max) / 2);
  await page.fill('#reference-id', '');
  await page.fill('#query-text', 'a dress');
  await page.fill('#filter-expr', 'in_stock = true');
  await page.selectOption('#filter-color', c);
  await page.fill('#filter-price-min', String(lo));
  await page.fill('#filter-price-max', String(hi));
  const filter = `(in_stock = true) AND color = ${JSON.stringify(c)} AND price >= ${lo} AND price <= ${hi}`;
  const k = 4;
  await page.fill('#page-size', String(k));
  const got = await step(page, '8-filters', () => api({ text: 'a dress', k, offset: 0, filter }));
  const attrs = await page.$$eval('#results .hit .attrs', (els) => els.map((e) => e.textContent));
  if (!attrs.every((t) => t.includes('color: ' + c))) problems.push('8-filters: a hit is not ' + c);
  if (got.length === k) {
    await page.click('#next');
    same('8-filters-page2', await shown(page), await api({ text: 'a dress', k, offset: k, filter }));
  }
  await page.fill('#filter-expr', '');
  await page.selectOption('#filter-color', '');
  await page.fill('#filter-price-min', '');
  await page.fill('#filter-price-max', '');
  await page.fill('#page-size', String(K));
  await page.selectOption('#group-by', 'product');
  const grouped = await step(page, '9-group', () => api({ text: 'a dress', k: K, offset: 0, group_by: 'product' }));
  if (new Set(grouped).size !== grouped.length) problems.push('9-group: an id shown twice');
  await page.selectOption('#group-by', '');

  await page.waitForFunction(() => document.body.dataset.generation);
  const gen = await page.evaluate(() => document.body.dataset.generation);
  const jobsOk = (await fetch(base + '/v1/jobs')).ok;
  if ((gen === 'on') !== jobsOk) problems.push(`try-on shown=${gen} but GET /v1/jobs ok=${jobsOk}`);
  if (!wantTryon) { console.log('  10-tryon: skipped (no worker)'); return; }
  const first = await page.$('#results .hit .tryon');
  if (!first || !(await first.isVisible())) { problems.push('10-tryon: no visible .tryon button'); return; }
  const hitId = await page.$eval('#results .hit', (e) => e.dataset.id);
  await page.setInputFiles('#person-file', photo);
  await page.waitForFunction(() => true);
  await page.click(`#results .hit[data-id="${hitId}"] .tryon`);
  await page.waitForFunction(() => ['succeeded', 'failed', 'cancelled', 'expired']
    .includes(document.getElementById('job-progress').dataset.state), null, { timeout: 40000 });
  const st = await page.$eval('#job-progress', (e) => e.dataset.state + ' ' + e.dataset.job);
  console.log('  10-tryon: ' + await page.textContent('#job-progress'));
  const [state, jobId] = st.split(' ');
  const job = await (await fetch(base + '/v1/jobs/' + jobId)).json();
  if (state !== 'succeeded' || job.state !== 'succeeded') problems.push(`10-tryon: page says ${state}, API ${job.state} ${job.error || ''}`);
  await page.waitForFunction(() => { const i = document.getElementById('job-image'); return i.complete && i.naturalWidth > 0; },
    null, { timeout: 10000 }).catch(() => problems.push('10-tryon: #job-image has no image'));
  const w = await page.$eval('#job-image', (i) => i.naturalWidth);
  console.log(`  10-tryon: job ${jobId} ${job.state}, image ${w} px wide`);
  await page.screenshot({ path: path.join(outDir, '10-tryon.png'), fullPage: true });
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    await page.goto(base + '/');
    await page.fill('#page-size', String(K));

    await page.fill('#query-text', 'a red dress');
    const text = await step(page, '1-text', () => api({ text: 'a red dress', k: K, offset: 0 }));

    const ref = text[0];
    await page.click(`#results .hit[data-id="${ref}"] .use-reference`);
    if ((await page.inputValue('#reference-id')) !== ref) problems.push('clicking a result did not make it the reference');
    await page.fill('#query-text', 'is blue');
    await page.selectOption('#method', 'searle');
    await step(page, '2-composed', () => api({ ref_id: ref, caption: 'is blue', method: 'searle', k: K, offset: 0 }));

    await page.fill('#filter-expr', 'color = "red"');
    const filtered = await step(page, '3-filter', () =>
      api({ ref_id: ref, caption: 'is blue', method: 'searle', k: K, offset: 0, filter: 'color = "red"' }));
    const attrs = await page.$$eval('#results .hit .attrs', (els) => els.map((e) => e.textContent));
    if (filtered.length && !attrs.every((a) => a.includes('color: red'))) problems.push('3-filter: a hit is not red: ' + attrs);

    await page.fill('#filter-expr', '');
    await page.fill('#reference-id', '');
    await page.setInputFiles('#reference-file', photo);
    await page.waitForFunction(() => !document.getElementById('reference').hidden);
    const b64 = fs.readFileSync(photo).toString('base64');
    await page.fill('#query-text', 'in green');
    await step(page, '4-photo', () => api({ image: b64, caption: 'in green', method: 'searle', k: K, offset: 0 }));

    await page.fill('#reference-id', '');
    await page.setInputFiles('#reference-file', []);
    await page.evaluate(() => { document.getElementById('reference-file').dispatchEvent(new Event('change')); });
    await page.fill('#query-text', 'a dress');
    await page.fill('#page-size', '5');
    await step(page, '5-page1', () => api({ text: 'a dress', k: 5, offset: 0 }));
    await page.click('#next');
    same('6-page2', await shown(page), await api({ text: 'a dress', k: 5, offset: 5 }));
    await page.screenshot({ path: path.join(outDir, '6-page2.png'), fullPage: true });
    await page.fill('#page-size', String(K));
    await filtersGroupTryon(page);
    await page.screenshot({ path: path.join(outDir, 'shot-1440.png'), fullPage: true });

    const phone = await browser.newPage({ viewport: { width: 375, height: 800 } });
    await phone.goto(base + '/');
    await phone.fill('#query-text', 'a red dress');
    await phone.click('#search');
    await shown(phone);
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    if (width > 375) problems.push(`at 375 px the page is ${width} px wide`);
    await phone.screenshot({ path: path.join(outDir, '7-phone-375.png'), fullPage: true });
    await phone.screenshot({ path: path.join(outDir, 'shot-375.png'), fullPage: true });
  } finally {
    await browser.close();
  }
  for (const p of problems) console.error('FAIL: ' + p);
  console.log(`${problems.length} problems; screenshots in ${outDir}`);
  process.exit(problems.length ? 1 : 0);
}
main().catch((e) => { console.error('FAIL: ' + e.message); process.exit(1); });
