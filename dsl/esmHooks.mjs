// Node module hooks (node:module register) that make pipeline files, and the .ts modules they import,
// ES modules wherever they live. Left to the nearest package.json, a .ts file in a folder without
// "type": "module" (a user's repo, a scratch dir) loads as CommonJS, which fails with "Cannot
// require() ES Module ... in a cycle" and would not allow top-level await anyway.
//
// bin/embedflow.js registers this BEFORE tsx, so it runs after tsx in the resolve chain: tsx then
// sees the format already decided and compiles the file as ESM, keeping its plain file URL (the code
// fingerprint and the stage-kind registry go by that path). Plain JS: it loads before tsx exists.
// .cts/.mts files, and packages under node_modules, keep the format they declare.
//
// `embedflow` and `embedflow/*` fall back to the package this CLI runs from when the importing file has
// no embedflow in its node_modules: a pipeline in any folder imports the very embedflow that runs it.
// An installed or linked embedflow still wins (dsl/fingerprint.ts resolves it the same way).

const OWN_PACKAGE_FILE = new URL('../index.ts', import.meta.url).href;

/** @param {string} specifier */
function isEmbedflow(specifier) {
  return specifier === 'embedflow' || specifier.startsWith('embedflow/');
}

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
  let resolved;
  try {
    resolved = await nextResolve(specifier, context);
  } catch (err) {
    if (!isEmbedflow(specifier) || /** @type {{ code?: string }} */ (err).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    // A package may import itself by name (package.json "exports"): resolve as if from inside it.
    resolved = await nextResolve(specifier, { ...context, parentURL: OWN_PACKAGE_FILE });
  }
  return isOwnTypeScript(resolved.url) ? { ...resolved, format: 'module' } : resolved;
}
