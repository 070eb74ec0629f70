/*
 * floor: what the data path of a TURN relay costs in C, per packet and batched, under the
 * same turnutils_uclient load as the relays (bench/perpacket.mjs). Like floor-node.mjs it
 * is not a TURN server: it answers uclient's Allocate, Refresh, CreatePermission,
 * ChannelBind and Binding requests with bare success responses (no authentication, no
 * checks) and relays ChannelData between the clients' relay sockets, so that the same
 * four socket operations happen per relayed message (ChannelData in on the listening
 * socket, payload out of the sender's relay socket, in on the receiver's relay socket,
 * ChannelData out of the listening socket) with no JavaScript around them.
 *
 *   floor --port P [--host 127.0.0.1] [--mode libuv|mmsg] [--connect]
 *
 * --mode libuv (default): what Node's libuv does for each socket: epoll, then per readable
 *   socket recvmsg() one datagram at a time until EAGAIN (at most 32), and one sendmsg()
 *   per datagram sent, at once. The cost of Node's syscalls without Node.
 * --mode mmsg: each readable socket drained with one recvmmsg() (up to 64); what goes out
 *   of the listening socket during one epoll round is sent with sendmmsg() at its end.
 *   Relay sockets still send one datagram each (each is a different socket: a batch
 *   across sockets needs io_uring).
 * --connect: relay sockets connect() to their one peer and send without an address.
 *
 * Prints one "listening" line. Build: cc -O2 -o floor floor.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ALLOCS 4096
#define MAX_CHANNELS 8
#define BATCH 64
#define OUTQ 1024
#define BUF_LEN 2048

struct alloc {
  int fd;
  struct sockaddr_in client;
  uint16_t relay_port; /* host order */
  int nch;
  uint16_t ch_num[MAX_CHANNELS];
  struct sockaddr_in ch_peer[MAX_CHANNELS];
  int connected;
  int used;
};

static struct alloc allocs[MAX_ALLOCS];
static int nallocs;
static int lfd, efd, mode_mmsg, do_connect;
static struct sockaddr_in host_sa;

/* ---------------------------------------------------------------------------------- */
/* Minimal STUN */

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

/* Finds attribute `type` in a STUN message; returns its value and length, or NULL. */
static const uint8_t *attr(const uint8_t *m, unsigned len, unsigned type, unsigned *alen) {
  unsigned off = 20, end = 20 + rd16(m + 2);
  if (end > len) end = len;
  while (off + 4 <= end) {
    unsigned t = rd16(m + off), l = rd16(m + off + 2);
    if (off + 4 + l > end) return NULL;
    if (t == type) { *alen = l; return m + off + 4; }
    off += 4 + ((l + 3) & ~3u);
  }
  return NULL;
}

static unsigned add_xor_addr(uint8_t *out, unsigned off, unsigned type, const struct sockaddr_in *a) {
  wr16(out + off, type);
  wr16(out + off + 2, 8);
  out[off + 4] = 0;
  out[off + 5] = 1;
  wr16(out + off + 6, ntohs(a->sin_port) ^ 0x2112);
  uint32_t ip = ntohl(a->sin_addr.s_addr) ^ 0x2112A442u;
  out[off + 8] = (uint8_t)(ip >> 24); out[off + 9] = (uint8_t)(ip >> 16); out[off + 10] = (uint8_t)(ip >> 8); out[off + 11] = (uint8_t)ip;
  return off + 12;
}

static unsigned add_u32(uint8_t *out, unsigned off, unsigned type, uint32_t v) {
  wr16(out + off, type);
  wr16(out + off + 2, 4);
  out[off + 4] = (uint8_t)(v >> 24); out[off + 5] = (uint8_t)(v >> 16); out[off + 6] = (uint8_t)(v >> 8); out[off + 7] = (uint8_t)v;
  return off + 8;
}

/* Clients by address and port: open addressing, never shrinks (a bench). */
#define HASH_SIZE 16384
static struct alloc *by_client[HASH_SIZE];
static unsigned hash_of(const struct sockaddr_in *c) {
  uint32_t h = (uint32_t)c->sin_addr.s_addr * 2654435761u ^ (uint32_t)c->sin_port * 40503u;
  return (h ^ (h >> 15)) & (HASH_SIZE - 1);
}
static struct alloc *find_client(const struct sockaddr_in *c) {
  for (unsigned h = hash_of(c);; h = (h + 1) & (HASH_SIZE - 1)) {
    struct alloc *a = by_client[h];
    if (!a) return NULL;
    if (a->used && a->client.sin_port == c->sin_port && a->client.sin_addr.s_addr == c->sin_addr.s_addr) return a;
  }
}
static void add_client(struct alloc *a) {
  unsigned h = hash_of(&a->client);
  while (by_client[h]) h = (h + 1) & (HASH_SIZE - 1);
  by_client[h] = a;
}

static int mksock(const struct sockaddr_in *bindto, int bufsz) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) { perror("socket"); exit(1); }
  if (bufsz) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
  }
  if (bind(fd, (const struct sockaddr *)bindto, sizeof *bindto) < 0) { perror("bind"); exit(1); }
  return fd;
}

static void control(const uint8_t *m, unsigned len, const struct sockaddr_in *from) {
  if (len < 20 || (m[0] & 0xc0) || rd32(m + 4) != 0x2112A442u) return;
  unsigned type = rd16(m), method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  if (type & 0x0110) return; /* only requests */
  uint8_t out[256];
  unsigned rtype = type | 0x0100; /* success response */
  wr16(out, rtype);
  memcpy(out + 4, m + 4, 16);
  unsigned off = 20, alen;
  struct alloc *a = find_client(from);
  switch (method) {
    case 0x001: /* Binding */
      off = add_xor_addr(out, off, 0x0020, from);
      break;
    case 0x003: { /* Allocate */
      if (!a) {
        if (nallocs >= MAX_ALLOCS) return;
        a = &allocs[nallocs++];
        memset(a, 0, sizeof *a);
        struct sockaddr_in any = host_sa;
        any.sin_port = 0;
        a->fd = mksock(&any, 0);
        struct sockaddr_in got;
        socklen_t gl = sizeof got;
        getsockname(a->fd, (struct sockaddr *)&got, &gl);
        a->relay_port = ntohs(got.sin_port);
        a->client = *from;
        a->used = 1;
        add_client(a);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = a};
        epoll_ctl(efd, EPOLL_CTL_ADD, a->fd, &ev);
      }
      struct sockaddr_in rel = host_sa;
      rel.sin_port = htons(a->relay_port);
      off = add_xor_addr(out, off, 0x0016, &rel);
      off = add_u32(out, off, 0x000d, 600);
      off = add_xor_addr(out, off, 0x0020, from);
      break;
    }
    case 0x004: { /* Refresh */
      const uint8_t *lt = attr(m, len, 0x000d, &alen);
      uint32_t life = lt && alen == 4 ? rd32(lt) : 600;
      if (a && life == 0) {
        epoll_ctl(efd, EPOLL_CTL_DEL, a->fd, NULL);
        close(a->fd);
        a->used = 0;
      }
      off = add_u32(out, off, 0x000d, life);
      break;
    }
    case 0x008: /* CreatePermission */
      break;
    case 0x009: { /* ChannelBind */
      const uint8_t *cn = attr(m, len, 0x000c, &alen);
      const uint8_t *pa = attr(m, len, 0x0012, &alen);
      if (a && cn && pa && alen == 8 && pa[1] == 1 && a->nch < MAX_CHANNELS) {
        struct sockaddr_in peer = {.sin_family = AF_INET};
        peer.sin_port = htons(rd16(pa + 2) ^ 0x2112);
        peer.sin_addr.s_addr = htonl(rd32(pa + 4) ^ 0x2112A442u);
        unsigned num = rd16(cn);
        int k = 0;
        for (; k < a->nch; k++) if (a->ch_num[k] == num) break;
        if (k == a->nch) {
          a->ch_num[k] = (uint16_t)num;
          a->ch_peer[k] = peer;
          a->nch++;
          if (do_connect && a->nch == 1 && connect(a->fd, (struct sockaddr *)&peer, sizeof peer) == 0) a->connected = 1;
        }
      }
      break;
    }
    default:
      return;
  }
  wr16(out + 2, off - 20);
  sendto(lfd, out, off, 0, (const struct sockaddr *)from, sizeof *from);
}

/* ---------------------------------------------------------------------------------- */
/* Data path */

/* ChannelData from a client: its payload out of the client's relay socket. */
static void to_peer(uint8_t *b, unsigned n, const struct sockaddr_in *from) {
  struct alloc *a = find_client(from);
  if (!a) return;
  unsigned num = rd16(b), len = rd16(b + 2);
  if (len + 4 > n) return;
  int k = 0;
  for (; k < a->nch; k++) if (a->ch_num[k] == num) break;
  if (k == a->nch) return;
  if (a->connected) send(a->fd, b + 4, len, 0);
  else sendto(a->fd, b + 4, len, 0, (struct sockaddr *)&a->ch_peer[k], sizeof a->ch_peer[k]);
}

/* Queued ChannelData for the listening socket (mmsg mode). */
static uint8_t outbuf[OUTQ][BUF_LEN + 4];
static struct mmsghdr outmsg[OUTQ];
static struct iovec outiov[OUTQ];
static struct sockaddr_in outaddr[OUTQ];
static int nout;

static void flush_out(void) {
  int done = 0;
  while (done < nout) {
    int r = sendmmsg(lfd, outmsg + done, (unsigned)(nout - done), 0);
    if (r <= 0) break;
    done += r;
  }
  nout = 0;
}

/* A datagram from a peer at a relay socket: ChannelData to the client. */
static void to_client(struct alloc *a, const uint8_t *b, unsigned n, const struct sockaddr_in *from) {
  int k = 0;
  for (; k < a->nch; k++) if (a->ch_peer[k].sin_port == from->sin_port && a->ch_peer[k].sin_addr.s_addr == from->sin_addr.s_addr) break;
  if (k == a->nch || n > BUF_LEN) return;
  if (mode_mmsg) {
    if (nout == OUTQ) flush_out();
    uint8_t *o = outbuf[nout];
    wr16(o, a->ch_num[k]);
    wr16(o + 2, n);
    memcpy(o + 4, b, n);
    outiov[nout].iov_base = o;
    outiov[nout].iov_len = n + 4;
    outaddr[nout] = a->client;
    memset(&outmsg[nout], 0, sizeof outmsg[nout]);
    outmsg[nout].msg_hdr.msg_iov = &outiov[nout];
    outmsg[nout].msg_hdr.msg_iovlen = 1;
    outmsg[nout].msg_hdr.msg_name = &outaddr[nout];
    outmsg[nout].msg_hdr.msg_namelen = sizeof outaddr[nout];
    nout++;
    return;
  }
  uint8_t o[BUF_LEN + 4];
  wr16(o, a->ch_num[k]);
  wr16(o + 2, n);
  memcpy(o + 4, b, n);
  sendto(lfd, o, n + 4, 0, (const struct sockaddr *)&a->client, sizeof a->client);
}

static uint8_t inbuf[BATCH][BUF_LEN];
static struct mmsghdr inmsg[BATCH];
static struct iovec iniov[BATCH];
static struct sockaddr_in inaddr[BATCH];

/* Reads what a socket has: one datagram per recvfrom until EAGAIN (at most 32, as libuv), or recvmmsg batches. */
static void drain(int fd, struct alloc *a) {
  if (!mode_mmsg) {
    for (int i = 0; i < 32; i++) {
      struct sockaddr_in from;
      socklen_t fl = sizeof from;
      ssize_t n = recvfrom(fd, inbuf[0], BUF_LEN, 0, (struct sockaddr *)&from, &fl);
      if (n < 0) return;
      if (!a) {
        if (n >= 4 && (inbuf[0][0] & 0xc0) == 0x40) to_peer(inbuf[0], (unsigned)n, &from);
        else control(inbuf[0], (unsigned)n, &from);
      } else {
        to_client(a, inbuf[0], (unsigned)n, &from);
      }
    }
    return;
  }
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iniov[i].iov_base = inbuf[i];
      iniov[i].iov_len = BUF_LEN;
      inmsg[i].msg_hdr.msg_iov = &iniov[i];
      inmsg[i].msg_hdr.msg_iovlen = 1;
      inmsg[i].msg_hdr.msg_name = &inaddr[i];
      inmsg[i].msg_hdr.msg_namelen = sizeof inaddr[i];
    }
    int got = recvmmsg(fd, inmsg, BATCH, MSG_DONTWAIT, NULL);
    if (got <= 0) return;
    for (int i = 0; i < got; i++) {
      unsigned n = inmsg[i].msg_len;
      if (!a) {
        if (n >= 4 && (inbuf[i][0] & 0xc0) == 0x40) to_peer(inbuf[i], n, &inaddr[i]);
        else control(inbuf[i], n, &inaddr[i]);
      } else {
        to_client(a, inbuf[i], n, &inaddr[i]);
      }
    }
    if (got < BATCH) return; /* drained: no extra call that only says EAGAIN */
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
    else if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      const char *m = argv[++i];
      if (!strcmp(m, "mmsg")) mode_mmsg = 1;
      else if (strcmp(m, "libuv")) { fprintf(stderr, "--mode libuv|mmsg\n"); return 2; }
    } else if (!strcmp(argv[i], "--connect")) do_connect = 1;
    else { fprintf(stderr, "usage: floor --port P [--host 127.0.0.1] [--mode libuv|mmsg] [--connect]\n"); return 2; }
  }
  if (port <= 0 || port > 65535) { fprintf(stderr, "usage: floor --port P [--host 127.0.0.1] [--mode libuv|mmsg] [--connect]\n"); return 2; }
  memset(&host_sa, 0, sizeof host_sa);
  host_sa.sin_family = AF_INET;
  host_sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &host_sa.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 2; }
  lfd = mksock(&host_sa, 1 << 20);
  efd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(efd, EPOLL_CTL_ADD, lfd, &ev);
  printf("floor listening on %s:%d (%s%s)\n", host, port, mode_mmsg ? "recvmmsg/sendmmsg" : "one datagram per call, as libuv", do_connect ? ", relay sockets connected" : "");
  fflush(stdout);
  struct epoll_event evs[1024];
  for (;;) {
    int n = epoll_wait(efd, evs, 1024, -1);
    if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
    for (int i = 0; i < n; i++) {
      struct alloc *a = evs[i].data.ptr;
      drain(a ? a->fd : lfd, a);
    }
    if (mode_mmsg && nout) flush_out();
  }
}
