/*
 * forward: the ceiling of the TURN benchmark's setup. A "relay" with no TURN in it: the
 * first ChannelData from a client source gets it a relay socket (127.0.0.1, a free
 * port); the payload goes from that socket to the peer (--peer-port), and what comes back
 * to the socket goes to the client as ChannelData on channel 0x4000. The same packets and
 * hops as a real relay, recvmmsg/sendmmsg batches, no allocation, permission or channel
 * checks: what the load generator and the echo peer can drive on this machine. Pair with
 * `turnload --raw`.
 *
 * usage: forward --port P --peer-port Q [--host 127.0.0.1]. Prints one "listening" line.
 * Build: cc -O2 -o forward forward.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define BUF_LEN 2048
#define MAX_CLIENTS 1024

static int mksock(const struct sockaddr_in *bindto) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) { perror("socket"); exit(1); }
  int sz = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  if (bind(fd, (const struct sockaddr *)bindto, sizeof *bindto) < 0) { perror("bind"); exit(1); }
  return fd;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, peer_port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--peer-port")) peer_port = atoi(argv[i + 1]);
  }
  if (port <= 0 || port > 65535 || peer_port <= 0 || peer_port > 65535) {
    fprintf(stderr, "usage: forward --port P --peer-port Q [--host 127.0.0.1]\n");
    return 2;
  }
  struct sockaddr_in sa, any, peer;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 2; }
  any = sa;
  any.sin_port = 0;
  peer = sa;
  peer.sin_port = htons((uint16_t)peer_port);

  static struct pollfd pfd[MAX_CLIENTS + 1];
  static struct sockaddr_in client[MAX_CLIENTS + 1];
  int n = 1;
  pfd[0].fd = mksock(&sa);
  pfd[0].events = POLLIN;
  printf("forward listening on %s:%d\n", host, port);
  fflush(stdout);

  static uint8_t buf[BATCH][BUF_LEN], hdr[BATCH][4];
  static struct iovec iov[BATCH][2];
  static struct sockaddr_in from[BATCH];
  static struct mmsghdr msg[BATCH];
  for (;;) {
    if (poll(pfd, (nfds_t)n, -1) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
    for (int k = 0; k < n; k++) {
      if (!(pfd[k].revents & POLLIN)) continue;
      for (int i = 0; i < BATCH; i++) {
        iov[i][0].iov_base = buf[i];
        iov[i][0].iov_len = BUF_LEN;
        msg[i].msg_hdr.msg_iov = iov[i];
        msg[i].msg_hdr.msg_iovlen = 1;
        msg[i].msg_hdr.msg_name = &from[i];
        msg[i].msg_hdr.msg_namelen = sizeof from[i];
      }
      int got = recvmmsg(pfd[k].fd, msg, BATCH, MSG_DONTWAIT, NULL);
      if (got <= 0) continue;
      if (k == 0) {
        /* From clients: strip the header, send from the client's relay socket to the peer;
         * runs of messages from the same client go out in one sendmmsg. */
        int start = 0;
        while (start < got) {
          int c = 1;
          for (; c < n; c++)
            if (client[c].sin_port == from[start].sin_port && client[c].sin_addr.s_addr == from[start].sin_addr.s_addr) break;
          if (c == n) {
            if (n > MAX_CLIENTS) { start++; continue; }
            client[n] = from[start];
            pfd[n].fd = mksock(&any);
            pfd[n].events = POLLIN;
            n++;
          }
          int end = start;
          for (; end < got; end++) {
            if (from[end].sin_port != client[c].sin_port || from[end].sin_addr.s_addr != client[c].sin_addr.s_addr) break;
            unsigned len = msg[end].msg_len >= 4 ? ((unsigned)buf[end][2] << 8 | buf[end][3]) : 0;
            if (len + 4 > msg[end].msg_len) len = 0;
            iov[end][0].iov_base = buf[end] + 4;
            iov[end][0].iov_len = len;
            msg[end].msg_hdr.msg_name = &peer;
            msg[end].msg_hdr.msg_namelen = sizeof peer;
          }
          sendmmsg(pfd[c].fd, msg + start, (unsigned)(end - start), 0);
          start = end;
        }
      } else {
        /* From the peer: ChannelData to the client, header and payload as two iovecs. */
        for (int i = 0; i < got; i++) {
          unsigned len = msg[i].msg_len;
          hdr[i][0] = 0x40; hdr[i][1] = 0x00; hdr[i][2] = (uint8_t)(len >> 8); hdr[i][3] = (uint8_t)len;
          iov[i][1].iov_base = buf[i];
          iov[i][1].iov_len = len;
          iov[i][0].iov_base = hdr[i];
          iov[i][0].iov_len = 4;
          msg[i].msg_hdr.msg_iovlen = 2;
          msg[i].msg_hdr.msg_name = &client[k];
          msg[i].msg_hdr.msg_namelen = sizeof client[k];
        }
        sendmmsg(pfd[0].fd, msg, (unsigned)got, 0);
      }
    }
  }
}
