import type * as Ort from 'onnxruntime-node';
import type * as Transformers from '@huggingface/transformers';
import type Usearch from 'usearch';
import type * as NodeLlamaCpp from 'node-llama-cpp';

// The heavy ML libraries, loaded on first use. Every CLI start and worker imports every stage kind's
// module to register it; loading these eagerly cost seconds per start. Modules use them through here.

let ort: Promise<typeof Ort> | undefined;
let transformers: Promise<typeof Transformers> | undefined;
let usearch: Promise<typeof Usearch> | undefined;
let llamaCpp: Promise<typeof NodeLlamaCpp> | undefined;

export function loadOnnxRuntime(): Promise<typeof Ort> {
  return (ort ??= import('onnxruntime-node'));
}

/** transformers.js, configured never to reach a model hub: tokenizers load from local directories only. */
export function loadTransformers(): Promise<typeof Transformers> {
  return (transformers ??= import('@huggingface/transformers').then((m) => {
    m.env.allowRemoteModels = false;
    m.env.allowLocalModels = true;
    return m;
  }));
}

export function loadUsearch(): Promise<typeof Usearch> {
  return (usearch ??= import('usearch').then((m) => m.default));
}

export function loadLlamaCpp(): Promise<typeof NodeLlamaCpp> {
  return (llamaCpp ??= import('node-llama-cpp'));
}
