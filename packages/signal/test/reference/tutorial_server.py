# The libjingle tutorial's signalling server (shared/reference/libjingle-stun-tutorial.txt,
# "The signaling server"), transcribed from Python 2 to Python 3 as faithfully as can be,
# to run as the reference for signalserver's plain mode. The only changes:
#   - print statements are print() calls, flushed (the test reads them);
#   - the buffer is bytes (b"") instead of a Python 2 str;
#   - host and port come from argv (port 0 picks a free one) and the port is printed once
#     listening, so a test can start it on a free loopback port;
#   - the 10 s "-- tick --" select timeout is kept.
# Everything else, including `if len(read_socks) > 3` (which lets a third party in: see
# the test), is the tutorial's.
from select import select
import socket
import sys
import time

read_socks = []
host = sys.argv[1] if len(sys.argv) > 1 else ""
port = int(sys.argv[2]) if len(sys.argv) > 2 else 14141
server_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server_sock.bind((host, port))
server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server_sock.listen(5)
read_socks.append(server_sock)
print("listening on %d" % server_sock.getsockname()[1], flush=True)

# We accept two parties only
buffer = b""

while True:
    rd, wr_dummy, ex_dummy = select(read_socks, [], [], 10)
    if not rd:
        print("-- tick --", flush=True)
        continue
    rd = rd[0]
    if rd is server_sock:
        # incoming new connection
        newsock, address = rd.accept()
        print("New connection from %s" % str(address), flush=True)
        if len(read_socks) > 3:
            # we only accept two parties at the most
            newsock.close()
            continue
        read_socks.append(newsock)
        if buffer:
            # we already have data to be sent to the new party
            newsock.sendall(buffer)
            print(" sent buffered data", flush=True)
            buffer = b""
        continue
    data = rd.recv(999999)
    if not data:
        # socket closed, remove from list
        print("Connection closed", flush=True)
        del read_socks[read_socks.index(rd)]
        buffer = b""
        continue
    if len(read_socks) < 3:
        print("Buffering data", flush=True)
        # the other party has not connected; bufferize
        buffer += data
        continue
    print("Forwarding data", flush=True)
    for wr in read_socks:
        if wr is not rd and wr is not server_sock:
            wr.sendall(data)
