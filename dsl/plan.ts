import { z } from 'zod';
import type { Progress } from './stage.ts';

// The validated, resolved pipeline: the only thing the workflow receives. References, never data.

const Duration = z.union([z.string(), z.number()]);

export const ActivityPlan = z.object({
  queue: z.enum(['cpu', 'gpu']),
  startToCloseTimeout: Duration,
  heartbeatTimeout: Duration,
  retry: z.object({
    maximumAttempts: z.number().int().positive(),
    initialInterval: Duration,
    backoffCoefficient: z.number().min(1),
    maximumInterval: Duration,
  }),
});
export type ActivityPlan = z.infer<typeof ActivityPlan>;

export const PlannedStage = z.object({
  id: z.string(),
  kind: z.string(),
  output: z.string(),
  /** Validated parameters with defaults filled in. */
  params: z.unknown(),
  /** Input name → source: another stage's id or a pipeline input's name. */
  inputs: z.record(z.string(), z.string()),
  fingerprint: z.string(),
  volatile: z.boolean(),
  /** The module defining the kind, so a standalone worker can load a pipeline's own stage kinds. */
  module: z.string(),
  activity: ActivityPlan,
});
export type PlannedStage = z.infer<typeof PlannedStage>;

export const PlannedInput = z.object({
  name: z.string(),
  type: z.enum(['directory', 'file']),
  /** Where to snapshot from (absolute), when the workflow must snapshot it itself (schedules). */
  path: z.string().optional(),
  /** The `files` artifact holding the snapshot, when the CLI took it before starting. */
  digest: z.string().optional(),
});
export type PlannedInput = z.infer<typeof PlannedInput>;

export const Plan = z.object({
  version: z.literal(1),
  pipeline: z.string(),
  file: z.string(),
  inputs: z.array(PlannedInput),
  /** In topological order. */
  stages: z.array(PlannedStage),
  taskQueues: z.object({ workflow: z.string(), cpu: z.string(), gpu: z.string() }),
});
export type Plan = z.infer<typeof Plan>;

export type StageStatus = 'pending' | 'running' | 'ran' | 'cached' | 'failed' | 'cancelled' | 'skipped';

/** What the workflow reports per stage (in its memo, for `status`, and in its result). */
export interface StageState {
  id: string;
  kind: string;
  queue: 'cpu' | 'gpu';
  status: StageStatus;
  artifact?: string;
  seconds?: number;
  stats?: Record<string, number | string | boolean>;
  error?: StageError;
  /** When the stage was dispatched: the start of its first attempt. */
  startedAt?: string;
}

/** Why a stage failed, with what the person paged needs beside it. */
export interface StageError {
  type: string;
  message: string;
  /** The attempt it failed on. */
  attempt?: number;
  /** Its last heartbeat progress (of that attempt, or carried over from an earlier one). */
  progress?: Progress;
  /** When it failed: from `startedAt` to this is how long it was tried and retried. */
  failedAt?: string;
}

export interface RunResult {
  status: 'completed';
  stages: StageState[];
}
