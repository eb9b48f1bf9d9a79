// Picks TCP ports for the dev stack: the preferred port when it is free, otherwise a free one.
import { createServer } from 'node:net';

/**
 * Resolves to `port` when it can be bound on `host`, otherwise to a free port the OS picks.
 * `port` 0 always asks the OS. The port is released again before this resolves, so a short race with
 * another process remains; the dev stack accepts that.
 * @example await findFreePort(4000, '127.0.0.1') // 4000, or e.g. 39211 when 4000 is taken
 */
export async function findFreePort(port: number, host = '127.0.0.1'): Promise<number> {
  const tryBind = (p: number): Promise<number | null> =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.unref();
      srv.once('error', () => resolve(null));
      srv.listen({ port: p, host, exclusive: true }, () => {
        const addr = srv.address();
        const got = typeof addr === 'object' && addr !== null ? addr.port : p;
        srv.close(() => resolve(got));
      });
    });
  if (port !== 0) {
    const got = await tryBind(port);
    if (got !== null) return got;
  }
  const any = await tryBind(0);
  if (any === null) throw new Error(`no free TCP port on ${host}`);
  return any;
}

/** `http://host:port` with IPv6 hosts bracketed. */
export function originOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
