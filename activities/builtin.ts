// Importing this module registers every built-in stage kind, so a standalone worker knows them all.
import './buildDataset.ts';
import './chunk.ts';
import './embed.ts';
import './evaluate.ts';
import './filterQueries.ts';
import './generateEvalQueries.ts';
import './generateQueries.ts';
import './importQuestions.ts';
import './ingest.ts';
import './mineNegatives.ts';
import './prepareModel.ts';
import './prepareReranker.ts';
import './report.ts';
import './train.ts';
import './trainReranker.ts';
