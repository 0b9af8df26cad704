import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clearFingerprintCache, codeFingerprint } from '../../dsl/fingerprint.ts';

// The automatic code fingerprint: editing the stage or anything it imports invalidates; editing an
// unrelated file does not; nobody has to bump a version.

async function project() {
  const dir = await mkdtemp(join(tmpdir(), 'ef-fp-'));
  await writeFile(join(dir, 'helper.ts'), 'export const twice = (x: number) => x * 2;\n');
  await writeFile(join(dir, 'deep.ts'), 'export const k = 1;\n');
  await writeFile(join(dir, 'mid.ts'), "import { k } from './deep.ts';\nexport const m = k + 1;\n");
  await writeFile(join(dir, 'stage.ts'), "import { twice } from './helper.ts';\nimport { m } from './mid.ts';\nimport { z } from 'zod';\nexport const run = () => twice(m) + z.string().parse('1').length;\n");
  await writeFile(join(dir, 'unrelated.ts'), 'export const u = 1;\n');
  await writeFile(join(dir, 'train.py'), 'print(1)\n');
  return dir;
}

describe('code fingerprint', () => {
  it('changes with the stage, its transitive imports and its code files, and nothing else', async () => {
    const dir = await project();
    const fp = async () => {
      clearFingerprintCache();
      return codeFingerprint({ module: join(dir, 'stage.ts'), codeFiles: ['train.py'] });
    };
    const base = await fp();
    expect(base).toMatch(/^[0-9a-f]{64}$/);

    await writeFile(join(dir, 'unrelated.ts'), 'export const u = 2;\n');
    expect(await fp()).toBe(base);

    await writeFile(join(dir, 'deep.ts'), 'export const k = 2;\n');
    const afterDeep = await fp();
    expect(afterDeep).not.toBe(base);

    await writeFile(join(dir, 'train.py'), 'print(2)\n');
    expect(await fp()).not.toBe(afterDeep);

    clearFingerprintCache();
    expect(await codeFingerprint({ module: join(dir, 'stage.ts'), codeFiles: ['train.py'], version: '2' })).not.toBe(await fp());
  });
});
