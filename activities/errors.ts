// The errors live in the bottom layer (core/errors.ts), so the store can name them without importing
// the stage layer; every existing import of this path keeps working.
export * from '../core/errors.ts';
