import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP relay in front of the gateway that breaks connections on cue, for what a buyer's network does: `dropRequest`
 * closes the connection of the next request whose bytes contain a marker, before it reaches the gateway;
 * `cutAnswer` lets an answer through until its bytes contain a marker, then closes the connection mid-stream.
 * Loopback only.
 */
export interface CutRelay {
  url: string;
  dropRequest(marker: string): void;
  cutAnswer(marker: string): void;
  /** How many connections were broken on cue. */
  cuts: number;
  close(): Promise<void>;
}

export const startCutRelay = async (target: string): Promise<CutRelay> => {
  const { hostname, port } = new URL(target);
  let requestMarker: string | null = null;
  let answerMarker: string | null = null;
  const sockets = new Set<Socket>();
  const relay: CutRelay = {
    url: '',
    cuts: 0,
    dropRequest: (marker) => {
      requestMarker = marker;
    },
    cutAnswer: (marker) => {
      answerMarker = marker;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (chunk: Buffer) => {
      if (requestMarker && chunk.includes(requestMarker)) {
        requestMarker = null;
        relay.cuts++;
        return end();
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      if (answerMarker && chunk.includes(answerMarker)) {
        answerMarker = null;
        relay.cuts++;
        // Let the written bytes leave before the connection goes.
        setImmediate(end);
      }
    });
    for (const socket of [client, upstream]) {
      socket.on('close', end);
      socket.on('error', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  relay.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return relay;
};
