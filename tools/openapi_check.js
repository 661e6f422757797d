#!/usr/bin/env node
// openapi_check.js BASE_URL — fetches BASE_URL/openapi.json, validates it as OpenAPI 3 with
// @apidevtools/swagger-parser (a real validator, from tools/node_modules), then calls every
// documented operation once — with its request body example and path parameter examples —
// and checks that the status is one the document lists for it and that a JSON answer has
// the documented required fields. Exit 0 when all hold; 1 and one line per problem otherwise.
'use strict';
const path = require('path');
const SwaggerParser = require(path.join(__dirname, 'node_modules/@apidevtools/swagger-parser'));

const base = process.argv[2];
if (!base) { console.error('usage: openapi_check.js BASE_URL'); process.exit(2); }

function checkRequired(schema, value, where, problems) {
  if (!schema || typeof value !== 'object' || value === null) return;
  for (const k of schema.required || [])
    if (!(k in value)) problems.push(`${where}: answer lacks required field "${k}"`);
}

async function main() {
  const res = await fetch(base + '/openapi.json');
  if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}`);
  const doc = await res.json();
  await SwaggerParser.validate(structuredClone(doc)); // throws on an invalid document
  const api = await SwaggerParser.dereference(doc);
  const problems = [];
  let calls = 0;
  for (const [p, item] of Object.entries(api.paths)) {
    for (const method of ['get', 'post', 'put', 'delete', 'patch']) {
      const op = item[method];
      if (!op) continue;
      let url = p;
      for (const prm of [...(item.parameters || []), ...(op.parameters || [])])
        if (prm.in === 'path') url = url.replace(`{${prm.name}}`, encodeURIComponent(prm.example));
      const init = { method: method.toUpperCase() };
      const media = op.requestBody && op.requestBody.content['application/json'];
      if (media) init.body = JSON.stringify(media.example);
      const r = await fetch(base + url, init);
      calls++;
      const where = `${method.toUpperCase()} ${url} -> ${r.status}`;
      const documented = op.responses[String(r.status)];
      if (!documented) { problems.push(`${where}: status not documented`); continue; }
      const ctype = (r.headers.get('content-type') || '').split(';')[0];
      const body = await r.text();
      const want = documented.content && documented.content[ctype];
      if (documented.content && !want) {
        problems.push(`${where}: content type ${ctype} not documented`);
      } else if (ctype === 'application/json') {
        let v;
        try { v = JSON.parse(body); } catch (e) { problems.push(`${where}: not JSON`); continue; }
        checkRequired(want.schema, v, where, problems);
      }
      console.log(`  ${where}`);
    }
  }
  if (calls === 0) problems.push('the document lists no operation');
  for (const q of problems) console.error('FAIL: ' + q);
  console.log(`${calls} operations called, ${problems.length} problems`);
  process.exit(problems.length ? 1 : 0);
}
main().catch((e) => { console.error('FAIL: ' + e.message); process.exit(1); });
