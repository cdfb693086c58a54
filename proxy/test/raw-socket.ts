import { connect, type Socket } from 'node:net';

/** A response as read off a raw socket: status, lowercase headers and the body (parsed when it is JSON). */
export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  text: string;
  json: any;
}

/** Parses the first HTTP/1.1 response in `raw` (Content-Length framed, as every answer these tests expect is). */
export const parseAnswer = (raw: string): RawAnswer | null => {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine = '', ...lines] = raw.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const text = raw.slice(end + 4, end + 4 + Number(headers['content-length'] ?? raw.length));
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: Number(statusLine.split(' ')[1]), headers, text, json };
};

/** An open TCP connection to a server, from `localAddress` when given (any of 127.0.0.0/8 on loopback). */
export interface RawConnection {
  socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves when the server closed the connection (or it failed), with the milliseconds since it opened. */
  closed: Promise<number>;
  write(text: string | Buffer): void;
  /** Resolves with the first complete response (or null if the connection closed first). */
  answer(): Promise<RawAnswer | null>;
  destroy(): void;
}

export const openRaw = (baseUrl: string, localAddress?: string): Promise<RawConnection> =>
  new Promise((resolve, reject) => {
    const { hostname, port } = new URL(baseUrl);
    const opened = Date.now();
    const socket = connect({ host: hostname, port: Number(port), ...(localAddress ? { localAddress } : {}) });
    let data = '';
    const waiting = new Set<() => void>();
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      for (const wake of waiting) wake();
    });
    const closed = new Promise<number>((done) => {
      socket.once('close', () => {
        for (const wake of waiting) wake();
        done(Date.now() - opened);
      });
    });
    socket.on('error', () => {});
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => data,
        closed,
        write: (text) => {
          if (!socket.destroyed) socket.write(text);
        },
        answer: () =>
          new Promise((done) => {
            const check = () => {
              const parsed = parseAnswer(data);
              const complete =
                parsed && Buffer.byteLength(parsed.text) >= Number(parsed.headers['content-length'] ?? 0);
              if (complete || socket.destroyed) {
                waiting.delete(check);
                done(complete ? parsed : null);
              }
            };
            waiting.add(check);
            check();
          }),
        destroy: () => socket.destroy(),
      }),
    );
    socket.once('error', reject);
  });

/** Sends `text` on a fresh connection and reads the first response. */
export const rawExchange = async (baseUrl: string, text: string): Promise<RawAnswer | null> => {
  const connection = await openRaw(baseUrl);
  try {
    connection.write(text);
    return await connection.answer();
  } finally {
    connection.destroy();
  }
};
