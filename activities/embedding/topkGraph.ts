/**
 * A two-node ONNX graph, scores = queries · corpusᵀ then TopK(k) along the corpus axis, serialised by
 * hand (a few protobuf fields) so exact search runs on onnxruntime's multithreaded GEMM without shipping
 * a binary model file or a protobuf library. Inputs: queries [nq, d] f32, corpus [nc, d] f32, k [1] i64.
 * Outputs: scores [nq, k] f32 (descending), indices [nq, k] i64.
 */
export function topkGraphBytes(): Uint8Array {
  const graph = [
    node('Gemm', ['queries', 'corpus'], ['similarity'], [attrInt('transB', 1)]),
    node('TopK', ['similarity', 'k'], ['scores', 'indices'], [attrInt('axis', 1), attrInt('largest', 1), attrInt('sorted', 1)]),
    text(2, 'exact_topk'), // GraphProto.name
    msg(11, valueInfo('queries', FLOAT, ['nq', 'd'])), // GraphProto.input
    msg(11, valueInfo('corpus', FLOAT, ['nc', 'd'])),
    msg(11, valueInfo('k', INT64, ['one'])),
    msg(12, valueInfo('scores', FLOAT, ['nq', 'k'])), // GraphProto.output
    msg(12, valueInfo('indices', INT64, ['nq', 'k'])),
  ];
  // ModelProto: ir_version (1), producer_name (2), graph (7), opset_import (8) = {domain '', version 17}.
  return concat([int(1, 8), text(2, 'embedflow'), msg(7, ...graph), msg(8, text(1, ''), int(2, 17))]);
}

const FLOAT = 1;
const INT64 = 7;

/** NodeProto: input (1), output (2), op_type (4), attribute (5). */
function node(opType: string, inputs: string[], outputs: string[], attrs: Uint8Array[]): Uint8Array {
  return msg(1, ...inputs.map((n) => text(1, n)), ...outputs.map((n) => text(2, n)), text(4, opType), ...attrs);
}

/** AttributeProto: name (1), i (3), type (20; INT = 2). */
function attrInt(name: string, value: number): Uint8Array {
  return msg(5, text(1, name), int(3, value), int(20, 2));
}

/** ValueInfoProto {name, type: TypeProto {tensor_type {elem_type, shape {dim {dim_param}}}}}. */
function valueInfo(name: string, elemType: number, dims: string[]): Uint8Array {
  const shape = msg(2, ...dims.map((d) => msg(1, text(2, d))));
  return concat([text(1, name), msg(2, msg(1, int(1, elemType), shape))]);
}

// Protobuf wire format: key = fieldNo << 3 | wireType (0 varint, 2 length-delimited).
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function int(fieldNo: number, value: number): Uint8Array {
  return Uint8Array.from([...varint(fieldNo << 3), ...varint(value)]);
}

function bytes(fieldNo: number, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.from([...varint((fieldNo << 3) | 2), ...varint(payload.length)]), payload]);
}

function text(fieldNo: number, value: string): Uint8Array {
  return bytes(fieldNo, new TextEncoder().encode(value));
}

function msg(fieldNo: number, ...parts: Uint8Array[]): Uint8Array {
  return bytes(fieldNo, concat(parts));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
