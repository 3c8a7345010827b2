// Generate TypeScript models from an AsyncAPI document with @asyncapi/modelina (pinned in
// package.json) and print them as JSON, {modelName: code}, for tests/test_asyncapi.py.
// Usage: node models.mjs ../../docs/asyncapi.json
import { readFile } from 'node:fs/promises';
import modelina from '@asyncapi/modelina';

const { TypeScriptGenerator } = modelina;

const file = process.argv[2];
if (!file) {
  console.error('usage: node models.mjs FILE');
  process.exit(2);
}
const models = await new TypeScriptGenerator().generate(JSON.parse(await readFile(file, 'utf8')));
process.stdout.write(JSON.stringify(Object.fromEntries(models.map((m) => [m.modelName, m.result]))));
