// The bench's CPU settings of the recipe (bench/all.ts, bench/soak.ts): what a 2-core machine runs in
// minutes rather than hours.
export const CPU_SETTINGS = [
  // ICT questions (a sentence of the chunk rewritten by rule into the question it answers): free; the
  // LLM is a lever below. The eval set: the chunks' own sentences, another generator than training's.
  'generatedQueries.llm={"provider":"ict","form":"question"}',
  'evalQueries.llm={"provider":"ict"}',
  'evalQueries.maxChunks=300',
  // A CPU-sized fine-tune: 30 steps of 32 rows, one hard negative each (the recipe freezes the
  // embeddings and merges with the base as far as the dev split says it helps).
  'model.maxSteps=30',
  'model.numNegatives=1',
  // Rows need only the one negative training uses: kept with 1–2 mined negatives instead of dropped
  // for want of 3 (23% of the rows of a 5-article jaquad-dev subset).
  'dataset.numNegatives=1',
  'model.checkpointEvery=15',
];
