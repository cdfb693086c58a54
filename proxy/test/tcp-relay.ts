import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay between a client and a real server, for network faults the server itself cannot make: `stall()` holds
 * every byte the server sends back (the server goes on executing what it receives — a reply lost in a slow network),
 * `heal()` lets the held bytes through in order, as TCP would once the path recovers. Loopback only.
 */
export interface TcpRelay {
  url(scheme: string): string;
  port: number;
  stall(): void;
  heal(): void;
  close(): Promise<void>;
}

export const startTcpRelay = async (target: { host: string; port: number }): Promise<TcpRelay> => {
  let stalled = false;
  const held: { socket: Socket; chunk: Buffer }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      if (stalled) held.push({ socket: client, chunk });
      else client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    stall: () => {
      stalled = true;
    },
    heal: () => {
      stalled = false;
      for (const { socket, chunk } of held.splice(0)) if (!socket.destroyed) socket.write(chunk);
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
