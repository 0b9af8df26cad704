import { mkdtemp, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileHashCache } from '../../artifacts/fileHashCache.ts';
import { sha256File } from '../../artifacts/hash.ts';
import { fingerprintDir } from '../../activities/models/fingerprint.ts';

// The hash cache lets a rerun skip re-reading a large model directory; it must never hand back the
// hash of content that is no longer there.

describe('file hash cache', () => {
  it('remembers hashes across processes, and a rewrite of the same size and mtime is hashed afresh', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-hashcache-'));
    const file = join(dir, 'weights.bin');
    const cachePath = join(dir, 'cache', 'file-sha256.json');
    await writeFile(file, 'A'.repeat(4096));
    // Hashed at once, the file is not remembered: it may still change within the same clock tick.
    const racy = await FileHashCache.open(cachePath);
    expect(await racy.sha256(file)).toEqual(await sha256File(file));
    await racy.save();
    await expect(readFile(cachePath, 'utf8')).rejects.toThrow(/ENOENT/);
    await new Promise((r) => setTimeout(r, 2100));

    const first = await FileHashCache.open(cachePath);
    expect(await first.sha256(file)).toEqual(await sha256File(file));
    await first.save();
    expect(Object.keys(JSON.parse(await readFile(cachePath, 'utf8')) as object)).toHaveLength(1);

    // Same bytes count, mtime set back: only the ctime tells, and it must.
    const before = await stat(file);
    await writeFile(file, 'B'.repeat(4096));
    await utimes(file, before.atime, before.mtime);
    const second = await FileHashCache.open(cachePath);
    expect(await second.sha256(file)).toEqual(await sha256File(file));
  });

  it('a torn cache file costs only the hashing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-hashcache-'));
    await writeFile(join(dir, 'a.txt'), 'hello');
    const cachePath = join(await mkdtemp(join(tmpdir(), 'ef-hashcache-home-')), 'cache.json');
    await writeFile(cachePath, '{"truncated');
    const cache = await FileHashCache.open(cachePath);
    expect(await fingerprintDir(dir, cache)).toEqual(await fingerprintDir(dir));
  });
});
