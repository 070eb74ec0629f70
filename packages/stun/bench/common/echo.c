/*
 * echo: a bare UDP echo server (recvmmsg/sendmmsg, one thread), shared by the benchmarks.
 * It does no work per packet. In the STUN server benchmark it is the ceiling of the
 * measurement setup: the rate the load generator reaches against it bounds what it can
 * measure, so a STUN server measured below it is the bottleneck, not the load generator.
 * In the TURN benchmark it is the peer: the relay sends the payload from the relayed
 * address and echo sends it back to that address.
 *
 * usage: echo --port P [--host 127.0.0.1]. Prints one "listening" line when bound; exits
 * on SIGTERM (the default action).
 * Build: cc -O2 -o echo echo.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define BUF_LEN 2048

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: echo --port P [--host 127.0.0.1]\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return 1; }
  int sz = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 2; }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
  printf("echo listening on %s:%d\n", host, port);
  fflush(stdout);

  static char buf[BATCH][BUF_LEN];
  static struct iovec iov[BATCH];
  static struct sockaddr_in from[BATCH];
  static struct mmsghdr msg[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = buf[i];
      iov[i].iov_len = BUF_LEN;
      msg[i].msg_hdr.msg_iov = &iov[i];
      msg[i].msg_hdr.msg_iovlen = 1;
      msg[i].msg_hdr.msg_name = &from[i];
      msg[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    /* Blocks for the first datagram, then takes whatever else is queued. */
    int n = recvmmsg(fd, msg, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("recvmmsg");
      return 1;
    }
    for (int i = 0; i < n; i++) iov[i].iov_len = msg[i].msg_len;
    int off = 0;
    while (off < n) {
      int r = sendmmsg(fd, msg + off, (unsigned)(n - off), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        break; /* drop the rest, as a busy server or peer would */
      }
      off += r;
    }
  }
}
