#!/usr/bin/env node
// The registry mirror this project is built against serves only the platform packages of the
// hosts it mirrors for (no darwin/win/riscv builds of @swc/core and node-llama-cpp). `npm install`
// then silently leaves them out of package-lock.json, and `npm ci` refuses the lock as out of sync.
// This adds a lock entry with the platform constraints for each optional dependency that is
// missing, so `npm ci` skips it by platform as it would with the public registry.
// Run after `npm install` changes the lock: `node scripts/lock-platform-stubs.mjs`.
import { readFileSync, writeFileSync } from "node:fs";

const LOCK = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(LOCK, "utf8"));
const packages = lock.packages;

/** os/cpu/libc from the package-name conventions of @swc/core-* and @node-llama-cpp/*. */
function platformOf(name) {
  const base = name.split("/")[1];
  const os = /darwin|mac/.test(base) ? "darwin" : /win/.test(base) ? "win32" : /linux/.test(base) ? "linux" : null;
  const cpu =
    /arm64/.test(base) ? "arm64" :
    /ia32/.test(base) ? "ia32" :
    /armv7l|arm-gnueabihf/.test(base) ? "arm" :
    /riscv64/.test(base) ? "riscv64" :
    /ppc64/.test(base) ? "ppc64" :
    /s390x/.test(base) ? "s390x" :
    /x64/.test(base) ? "x64" : null;
  if (!os || !cpu) throw new Error(`cannot infer the platform of ${name}; add its lock entry by hand`);
  const libc = /musl/.test(base) ? ["musl"] : os === "linux" ? ["glibc"] : undefined;
  return { os: [os], cpu: [cpu], ...(libc ? { libc } : {}) };
}

let added = 0;
for (const [path, entry] of Object.entries(packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const at = `${path ? path + "/" : ""}node_modules/${dep}`;
    const hoisted = `node_modules/${dep}`;
    if (packages[at] || packages[hoisted]) continue;
    if (!/^@(swc|node-llama-cpp)\//.test(dep)) continue;
    packages[hoisted] = { version, optional: true, ...platformOf(dep) };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync(LOCK, JSON.stringify(lock, null, 2) + "\n");
console.log(`lock-platform-stubs: added ${added} platform entries`);
