// Closing an HTTP server on shutdown without waiting forever for a client that never finishes its request.
import type { FastifyInstance } from 'fastify';

/** How long a closing server lets requests under way finish before it drops their connections, in ms. */
export const CLOSE_GRACE_MS = 3000;

/**
 * Closes `app`: no new connections, idle ones closed at once (Fastify's default), and after `graceMs` every
 * connection still open dropped — a client that sent half a request and went quiet would otherwise hold the
 * process until the CLI's own shutdown limit (10 s) killed it with exit 1.
 */
export async function closeServer(app: FastifyInstance, graceMs = CLOSE_GRACE_MS): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
  }
}
