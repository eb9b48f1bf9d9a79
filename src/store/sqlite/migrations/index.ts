// The ordered list of SQLite migrations; append new numbered files here.
import { migration as m0001 } from './0001-init.js';

/** A numbered schema change. */
export type Migration = { readonly id: number; readonly name: string; readonly sql: string };

/** Every SQLite migration, ascending by id. */
export const sqliteMigrations: readonly Migration[] = [m0001];
