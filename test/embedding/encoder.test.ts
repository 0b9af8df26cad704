import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Encoder, planBatches } from '../../activities/embedding/encoder.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { MODEL_INFO_FILE } from '../../activities/artifactKinds/modelArtifact.ts';

describe('planBatches', () => {
  it('covers every text once, longest first, within both the text and the padded-token budget', () => {
    const lengths = [12, 256, 30, 256, 7, 128, 9, 64, 256, 11];
    const batches = planBatches(lengths, 4, 512);
    expect(batches.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const b of batches) {
      const width = Math.max(...b.map((i) => lengths[i]!));
      expect(b.length).toBeLessThanOrEqual(4);
      expect(b.length * width).toBeLessThanOrEqual(512);
    }
    expect(batches[0]).toEqual([1, 3]); // two 256-token texts fill 512
    const widths = batches.map((b) => lengths[b[0]!]!);
    expect([...widths].sort((a, b) => b - a)).toEqual(widths);
  });

  it('still makes progress when one text alone exceeds the token budget', () => {
    expect(planBatches([2000, 5], 8, 512)).toEqual([[0], [1]]);
  });
});

describe('Encoder.load on something that is not a model artifact', () => {
  it('says which file is wrong and what to pass instead', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-not-a-model-'));
    await expect(Encoder.load(dir)).rejects.toThrow(InvalidInputError);
    await expect(Encoder.load(dir)).rejects.toMatchObject({ where: join(dir, MODEL_INFO_FILE), hint: expect.stringContaining('prepareModel') });
    await writeFile(join(dir, MODEL_INFO_FILE), JSON.stringify({ name: 'x', dim: 'big' }));
    await expect(Encoder.load(dir)).rejects.toThrow(/model\.json: source/);
  });
});
