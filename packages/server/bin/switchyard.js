#!/usr/bin/env node
// The `switchyard` command. Committed (not built) so that `npm ci` links it before the first
// build and a turbo cache restore never drops its exec bit; it runs the compiled CLI.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(
    'switchyard: the CLI is not built yet (packages/server/dist/bin.js is missing); run `npm run build` at the repository root, or `npm start`\n',
  );
  process.exit(1);
}
await import(entry.href);
