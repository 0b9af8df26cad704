#!/usr/bin/env node
// Pipeline files are TypeScript: tsx compiles them (and the CLI) on the fly.
import { register as registerHooks } from 'node:module';
import { register } from 'tsx/esm/api';

// The AWS SDK warns on every start under Node 20 (S3 stores); the CLI supports Node 20.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// Before tsx, so tsx compiles pipeline .ts files as ESM even where no package.json says "type": "module".
registerHooks('../dsl/esmHooks.mjs', import.meta.url);
register();
const { runCli } = await import('../cli/main.ts');
const code = await runCli(process.argv.slice(2));
// Native Temporal handles can keep the event loop alive after the work is done.
process.exit(code);
