// The ordered list of SQLite migrations; append new numbered files here.
import { migration as m0001 } from './0001-init.js';
import { migration as m0002 } from './0002-attempt-started.js';
import { migration as m0003 } from './0003-claim-indexes.js';
import { migration as m0004 } from './0004-nonces-without-rowid.js';
import { migration as m0005 } from './0005-drop-messages-app.js';
import { migration as m0006 } from './0006-message-counts.js';
import { migration as m0007 } from './0007-nonces-by-expiry.js';
import { migration as m0008 } from './0008-credits-accepted-at.js';

/** A numbered schema change. */
export type Migration = { readonly id: number; readonly name: string; readonly sql: string };

/** Every SQLite migration, ascending by id. */
export const sqliteMigrations: readonly Migration[] = [
  m0001,
  m0002,
  m0003,
  m0004,
  m0005,
  m0006,
  m0007,
  m0008,
];
