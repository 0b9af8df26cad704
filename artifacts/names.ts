import { isAbsolute, normalize } from 'node:path';
import { StorePathError } from '../core/errors.ts';
import { DIGEST_RE } from './manifest.ts';

// Every name a caller hands the store is checked here, so no key or path can escape the store root.

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** Refuse names that could escape the store root (`..`, absolute paths, odd characters). */
export function safeName(name: string, what: string): string {
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new StorePathError(`invalid ${what} ${JSON.stringify(name)}`, {
      hint: `${what} names use letters, digits, '.', '_' and '-' only`,
    });
  }
  return name;
}

/** A namespace is a few safe names joined by '/'. */
export function safeNamespace(ns: string, what = 'namespace'): string {
  const parts = ns.split('/');
  if (parts.length === 0 || parts.length > 4) throw new StorePathError(`invalid ${what} ${JSON.stringify(ns)}`);
  parts.forEach((p) => safeName(p, what));
  return parts.join('/');
}

export function safeRelPath(rel: string): string {
  const n = normalize(rel).split('\\').join('/');
  if (rel === '' || isAbsolute(rel) || n.startsWith('../') || n === '..' || n.includes('/../') || rel.includes('\0')) {
    throw new StorePathError(`artifact file path ${JSON.stringify(rel)} escapes the artifact`, {
      hint: 'use a relative path inside the artifact',
    });
  }
  return n;
}

export function checkDigest(digest: string): string {
  if (!DIGEST_RE.test(digest)) {
    throw new StorePathError(`${JSON.stringify(digest)} is not an artifact digest`, {
      hint: 'digests are 64 hex characters, as printed by `embedflow status` or `embedflow artifacts`',
    });
  }
  return digest;
}
