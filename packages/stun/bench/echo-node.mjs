// A bare node:dgram UDP echo server, for context in the server benchmark: what one Node
// event loop costs per datagram before any STUN work. usage: node echo-node.mjs --port P
import dgram from 'node:dgram';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const host = opt('--host', '127.0.0.1');
const port = Number(opt('--port', '0'));
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
sock.bind(port, host, () => console.log(`node echo listening on ${host}:${sock.address().port}`));
process.on('SIGTERM', () => sock.close(() => process.exit(0)));
