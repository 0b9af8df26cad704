// Writes docs/KINDS.md, the parameter reference of the built-in stage kinds, from their zod schemas:
//   node --import tsx scripts/kinds-reference.ts
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kindsMarkdown } from '../cli/commands/kinds.ts';
import { PROJECT_ROOT } from '../workers/config.ts';

await writeFile(join(PROJECT_ROOT, 'docs', 'KINDS.md'), kindsMarkdown());
