// The bench's CPU settings of the recipe (bench/all.ts, bench/soak.ts): what a 2-core machine runs in
// under an hour on jaquad-dev. Only the generators change; the fine-tune is the recipe's own (two
// epochs of its top 2 layers, halfway back to the base), since that is the model a user gets.
export const CPU_SETTINGS = [
  // ICT questions (a sentence of the chunk rewritten by rule into the question it answers): free; the
  // LLM is a lever below. The eval set: the chunks' own sentences, another generator than training's.
  'generatedQueries.llm={"provider":"ict","form":"question"}',
  'evalQueries.llm={"provider":"ict"}',
  'evalQueries.maxChunks=300',
];
