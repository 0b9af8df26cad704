// Importing this module registers every built-in stage kind with the worker's registry.
// One line per stage file in activities/.
export {};
