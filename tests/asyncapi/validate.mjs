// Validate an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package.json): prints every diagnostic, exits 1 if any has severity error or the document
// does not parse. Usage: node validate.mjs ../../docs/asyncapi.json
import { resolve } from 'node:path';
import parser from '@asyncapi/parser';

const { Parser, fromFile, DiagnosticSeverity } = parser;
const SEVERITY = ['error', 'warning', 'info', 'hint'];

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate.mjs FILE');
  process.exit(2);
}
const { document, diagnostics } = await fromFile(new Parser(), resolve(file)).parse();
for (const d of diagnostics) {
  const where = (d.path ?? []).join('/');
  console.log(`${SEVERITY[d.severity] ?? d.severity} ${d.code} /${where}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (!document || errors.length > 0) {
  console.error(`${file}: ${errors.length} error(s), not a valid AsyncAPI document`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} ` +
  `channels, ${document.operations().length} operations, ` +
  `${document.components().messages().length} messages`);
