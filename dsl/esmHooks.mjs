// Node module hooks (node:module register) that make pipeline files, and the .ts modules they import,
// ES modules wherever they live. Left to the nearest package.json, a .ts file in a folder without
// "type": "module" (a user's repo, a scratch dir) loads as CommonJS, which fails with "Cannot
// require() ES Module ... in a cycle" and would not allow top-level await anyway.
//
// bin/embedflow.js registers this BEFORE tsx, so it runs after tsx in the resolve chain: tsx then
// sees the format already decided and compiles the file as ESM, keeping its plain file URL (the code
// fingerprint and the stage-kind registry go by that path). Plain JS: it loads before tsx exists.
// .cts/.mts files, and packages under node_modules, keep the format they declare.

/** @param {string} url */
function isOwnTypeScript(url) {
  return url.startsWith('file:') && !url.includes('/node_modules/') && /\.tsx?$/.test(new URL(url).pathname);
}

/**
 * @param {string} specifier
 * @param {object} context
 * @param {(specifier: string, context: object) => Promise<{ url: string, format?: string | null }>} nextResolve
 */
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  return isOwnTypeScript(resolved.url) ? { ...resolved, format: 'module' } : resolved;
}
