/*
 * turnload: closed-loop ChannelData load generator for the natkit TURN relay benchmark.
 *
 * Setup (TURN over UDP, RFC 8656): --allocs client sockets, each connected to the relay;
 * each makes its own allocation with long-term credentials (Allocate, answering the 401
 * challenge with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY = HMAC-SHA1 keyed with the
 * long-term key; 438 Stale Nonce is answered too) and binds channel 0x4000 to the echo
 * peer (ChannelBind, which also installs the permission). The long-term key
 * MD5(user:realm:password) comes in hex with --key (the caller computes it; the realm
 * the relay names in its 401 must equal --realm, or the run stops); HMAC-SHA1 is
 * implemented below, so nothing beyond libc is needed.
 *
 * Load: a window of --window ChannelData messages in flight, slot s on allocation
 * s % allocs. The payload (--len bytes) carries the slot and a global sequence number;
 * the relay strips the 4-byte header and sends the payload from the relayed address to
 * the peer, which echoes it back to the relayed address, and the relay sends it to the
 * client as ChannelData again: one round trip = two relayed packets. Latency per round
 * trip (CLOCK_MONOTONIC); a slot unanswered after --timeout-ms is lost and re-used; an
 * answer after that is late. recvmmsg/sendmmsg batches. Only what happens after
 * --warmup-ms counts; then --duration-ms. Prints one JSON object on stdout.
 *
 * --raw skips the TURN setup (for the C forwarder, the ceiling of the setup): the
 * ChannelData is sent straight away.
 *
 * Build: cc -O2 -o turnload turnload.c
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 256
#define MAX_WINDOW 65536
#define MAX_ALLOCS 1024
#define MAX_LEN 1400
#define BUF_LEN 2048
#define HIST_US 200000
#define CHANNEL 0x4000
#define MAX_CPUS 64

/* ------------------------------------------------------------------------------------ */
/* SHA-1 (FIPS 180-4) and HMAC-SHA1 (RFC 2104), enough for MESSAGE-INTEGRITY. */

typedef struct { uint32_t h[5]; uint64_t n; uint8_t buf[64]; size_t used; } sha1_ctx;
#define ROL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))
static void sha1_block(sha1_ctx *c, const uint8_t *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) { f = (b & cc) | (~b & d); k = 0x5a827999; }
    else if (i < 40) { f = b ^ cc ^ d; k = 0x6ed9eba1; }
    else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8f1bbcdc; }
    else { f = b ^ cc ^ d; k = 0xca62c1d6; }
    uint32_t t = ROL(a, 5) + f + e + k + w[i];
    e = d; d = cc; cc = ROL(b, 30); b = a; a = t;
  }
  c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}
static void sha1_init(sha1_ctx *c) {
  static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  memcpy(c->h, iv, sizeof iv);
  c->n = 0;
  c->used = 0;
}
static void sha1_update(sha1_ctx *c, const uint8_t *p, size_t len) {
  c->n += len;
  while (len > 0) {
    size_t take = 64 - c->used < len ? 64 - c->used : len;
    memcpy(c->buf + c->used, p, take);
    c->used += take; p += take; len -= take;
    if (c->used == 64) { sha1_block(c, c->buf); c->used = 0; }
  }
}
static void sha1_final(sha1_ctx *c, uint8_t out[20]) {
  uint64_t bits = c->n * 8;
  uint8_t pad = 0x80, zero = 0;
  sha1_update(c, &pad, 1);
  while (c->used != 56) sha1_update(c, &zero, 1);
  uint8_t lb[8];
  for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(bits >> (56 - 8 * i));
  sha1_update(c, lb, 8);
  for (int i = 0; i < 5; i++) { out[4 * i] = c->h[i] >> 24; out[4 * i + 1] = c->h[i] >> 16; out[4 * i + 2] = c->h[i] >> 8; out[4 * i + 3] = c->h[i]; }
}
static void hmac_sha1(const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen, uint8_t out[20]) {
  uint8_t k[64] = {0}, ipad[64], opad[64], inner[20];
  if (klen > 64) { sha1_ctx c; sha1_init(&c); sha1_update(&c, key, klen); sha1_final(&c, k); }
  else memcpy(k, key, klen);
  for (int i = 0; i < 64; i++) { ipad[i] = k[i] ^ 0x36; opad[i] = k[i] ^ 0x5c; }
  sha1_ctx c;
  sha1_init(&c); sha1_update(&c, ipad, 64); sha1_update(&c, msg, mlen); sha1_final(&c, inner);
  sha1_init(&c); sha1_update(&c, opad, 64); sha1_update(&c, inner, 20); sha1_final(&c, out);
}

/* ------------------------------------------------------------------------------------ */
/* STUN messages, just what Allocate and ChannelBind need. */

#define A_USERNAME 0x0006
#define A_MESSAGE_INTEGRITY 0x0008
#define A_ERROR_CODE 0x0009
#define A_CHANNEL_NUMBER 0x000c
#define A_LIFETIME 0x000d
#define A_XOR_PEER_ADDRESS 0x0012
#define A_REALM 0x0014
#define A_NONCE 0x0015
#define A_XOR_RELAYED_ADDRESS 0x0016
#define A_REQUESTED_TRANSPORT 0x0019
#define M_ALLOCATE 0x0003
#define M_CHANNEL_BIND 0x0009
#define M_REFRESH 0x0004

struct msg { uint8_t b[1024]; int len; };

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static void msg_init(struct msg *m, unsigned type) {
  memset(m->b, 0, 20);
  put16(m->b, type);
  m->b[4] = 0x21; m->b[5] = 0x12; m->b[6] = 0xa4; m->b[7] = 0x42;
  for (int i = 8; i < 20; i++) m->b[i] = (uint8_t)(random() & 0xff);
  m->len = 20;
}
static void msg_attr(struct msg *m, unsigned type, const void *v, unsigned l) {
  put16(m->b + m->len, type);
  put16(m->b + m->len + 2, l);
  memcpy(m->b + m->len + 4, v, l);
  unsigned padded = (l + 3) & ~3u;
  memset(m->b + m->len + 4 + l, 0, padded - l);
  m->len += 4 + (int)padded;
  put16(m->b + 2, (unsigned)m->len - 20);
}
static void msg_integrity(struct msg *m, const uint8_t *key, size_t klen) {
  put16(m->b + 2, (unsigned)m->len - 20 + 24); /* the length counts MESSAGE-INTEGRITY itself */
  uint8_t mac[20];
  hmac_sha1(key, klen, m->b, (size_t)m->len, mac);
  msg_attr(m, A_MESSAGE_INTEGRITY, mac, 20);
}
/* The value of the first attribute `type` in a message, or NULL. */
static const uint8_t *msg_find(const uint8_t *b, int len, unsigned type, unsigned *vlen) {
  int end = 20 + (int)get16(b + 2);
  if (end > len) end = len;
  for (int p = 20; p + 4 <= end;) {
    unsigned t = get16(b + p), l = get16(b + p + 2);
    if (p + 4 + (int)l > end) return NULL;
    if (t == type) { *vlen = l; return b + p + 4; }
    p += 4 + (int)((l + 3) & ~3u);
  }
  return NULL;
}

struct creds { const char *user; uint8_t key[16]; const char *realm; char nonce[256]; unsigned nonce_len; int have_nonce; };

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * One authenticated request on a connected socket: answers 401/438 with the credentials,
 * retransmits (300 ms, 6 tries). Returns the success response's length in `resp`, or -1
 * with a message on stderr.
 */
static int request(int fd, unsigned method, struct creds *c, const struct sockaddr_in *peer, uint8_t *resp, int cap) {
  for (int attempt = 0; attempt < 4; attempt++) {
    struct msg m;
    msg_init(&m, method);
    if (method == M_ALLOCATE) {
      uint8_t rt[4] = {17, 0, 0, 0};
      msg_attr(&m, A_REQUESTED_TRANSPORT, rt, 4);
      uint8_t lt[4] = {0, 0, 0x0e, 0x10}; /* 3600 s: no refresh needed during a run */
      msg_attr(&m, A_LIFETIME, lt, 4);
    } else if (method == M_REFRESH) {
      uint8_t lt[4] = {0, 0, 0, 0}; /* lifetime 0: delete the allocation */
      msg_attr(&m, A_LIFETIME, lt, 4);
    } else {
      uint8_t ch[4] = {CHANNEL >> 8, CHANNEL & 0xff, 0, 0};
      msg_attr(&m, A_CHANNEL_NUMBER, ch, 4);
      uint8_t xa[8] = {0, 0x01};
      put16(xa + 2, ntohs(peer->sin_port) ^ 0x2112);
      uint32_t ip = ntohl(peer->sin_addr.s_addr) ^ 0x2112a442;
      xa[4] = ip >> 24; xa[5] = ip >> 16; xa[6] = ip >> 8; xa[7] = ip;
      msg_attr(&m, A_XOR_PEER_ADDRESS, xa, 8);
    }
    if (c->have_nonce) {
      msg_attr(&m, A_USERNAME, c->user, (unsigned)strlen(c->user));
      msg_attr(&m, A_REALM, c->realm, (unsigned)strlen(c->realm));
      msg_attr(&m, A_NONCE, c->nonce, c->nonce_len);
      msg_integrity(&m, c->key, 16);
    }
    int len = -1;
    for (int tries = 0; tries < 6 && len < 0; tries++) {
      if (send(fd, m.b, (size_t)m.len, 0) < 0 && errno != ECONNREFUSED) { perror("send"); return -1; }
      uint64_t deadline = now_ns() + 300000000ull;
      for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1) <= 0) continue;
        int r = (int)recv(fd, resp, (size_t)cap, MSG_DONTWAIT);
        if (r < 20 || memcmp(resp + 8, m.b + 8, 12) != 0) continue; /* not our answer */
        len = r;
        break;
      }
    }
    const char *name = method == M_ALLOCATE ? "Allocate" : method == M_REFRESH ? "Refresh" : "ChannelBind";
    if (len < 0) { fprintf(stderr, "no answer to %s\n", name); return -1; }
    unsigned type = get16(resp);
    if (type == (method | 0x0100)) return len;
    unsigned elen = 0;
    const uint8_t *e = msg_find(resp, len, A_ERROR_CODE, &elen);
    int code = e && elen >= 4 ? (e[2] & 7) * 100 + e[3] : 0;
    if ((code == 401 && !c->have_nonce) || code == 438) {
      unsigned rl = 0, nl = 0;
      const uint8_t *realm = msg_find(resp, len, A_REALM, &rl);
      const uint8_t *nonce = msg_find(resp, len, A_NONCE, &nl);
      if (!nonce || nl >= sizeof c->nonce) { fprintf(stderr, "%d without NONCE\n", code); return -1; }
      if (realm && (rl != strlen(c->realm) || memcmp(realm, c->realm, rl) != 0)) {
        fprintf(stderr, "the relay's realm is \"%.*s\", not \"%s\": the --key is for another realm\n", (int)rl, realm, c->realm);
        return -1;
      }
      memcpy(c->nonce, nonce, nl);
      c->nonce_len = nl;
      c->have_nonce = 1;
      continue;
    }
    fprintf(stderr, "%s refused: %d %.*s\n", name, code, e && elen > 4 ? (int)elen - 4 : 0, e ? (const char *)e + 4 : "");
    return -1;
  }
  fprintf(stderr, "too many challenges\n");
  return -1;
}

/* ------------------------------------------------------------------------------------ */
/* CPU accounting */

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}
static double process_cpu_s(int pid) {
  if (pid <= 0) return -1;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long ut = 0, st = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}
/*
 * Per CPU, seconds of: task time (user+nice+system+steal) and interrupt time
 * (irq+softirq), from /proc/stat. Loopback UDP delivery runs as softirq on the sending
 * CPU and is charged to no process, so a CPU's load is both.
 */
static int cpu_times(double task[MAX_CPUS], double intr[MAX_CPUS]) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0;
  char line[512];
  int n = 0;
  double hz = (double)sysconf(_SC_CLK_TCK);
  while (fgets(line, sizeof line, f)) {
    int id;
    unsigned long long v[8] = {0};
    if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
    if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 9) continue;
    if (id < 0 || id >= MAX_CPUS) continue;
    task[id] = (double)(v[0] + v[1] + v[2] + v[7]) / hz;
    intr[id] = (double)(v[5] + v[6]) / hz;
    if (id + 1 > n) n = id + 1;
  }
  fclose(f);
  return n;
}

static uint64_t hist[HIST_US + 1];
static double percentile(uint64_t total, double p) {
  if (total == 0) return -1;
  uint64_t rank = (uint64_t)(p * (double)total);
  if (rank >= total) rank = total - 1;
  uint64_t acc = 0;
  for (int i = 0; i <= HIST_US; i++) {
    acc += hist[i];
    if (acc > rank) return (double)i + 0.5;
  }
  return HIST_US;
}

static void usage(void) {
  fprintf(stderr,
          "usage: turnload --port P --peer-port Q [--host 127.0.0.1] [--peer 127.0.0.1]\n"
          "                --user U --key HEX(MD5(user:realm:password)) --realm R | --raw\n"
          "                [--allocs 8] [--window 128] [--len 100] [--duration-ms 3000] [--warmup-ms 500]\n"
          "                [--timeout-ms 250] [--batch 64] [--server-pid PID] [--peer-pid PID] [--release]\n"
          "--release: delete the allocations (Refresh, LIFETIME 0) after the run\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *peer_host = "127.0.0.1", *user = NULL, *keyhex = NULL, *realm = NULL;
  int release = 0;
  int port = 0, peer_port = 0, allocs = 8, window = 128, len = 100, batch = 64, server_pid = 0, peer_pid = 0, raw = 0;
  long duration_ms = 3000, warmup_ms = 500, timeout_ms = 250;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--raw")) { raw = 1; continue; }
    if (!strcmp(a, "--release")) { release = 1; continue; }
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--peer")) peer_host = v;
    else if (!strcmp(a, "--peer-port")) peer_port = atoi(v);
    else if (!strcmp(a, "--user")) user = v;
    else if (!strcmp(a, "--key")) keyhex = v;
    else if (!strcmp(a, "--realm")) realm = v;
    else if (!strcmp(a, "--allocs")) allocs = atoi(v);
    else if (!strcmp(a, "--window")) window = atoi(v);
    else if (!strcmp(a, "--len")) len = atoi(v);
    else if (!strcmp(a, "--duration-ms")) duration_ms = atol(v);
    else if (!strcmp(a, "--warmup-ms")) warmup_ms = atol(v);
    else if (!strcmp(a, "--timeout-ms")) timeout_ms = atol(v);
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else if (!strcmp(a, "--server-pid")) server_pid = atoi(v);
    else if (!strcmp(a, "--peer-pid")) peer_pid = atoi(v);
    else usage();
    i++;
  }
  if (port <= 0 || port > 65535 || peer_port <= 0 || peer_port > 65535) usage();
  if (window < 1 || window > MAX_WINDOW || batch < 1 || batch > MAX_BATCH || len < 16 || len > MAX_LEN) usage();
  if (allocs < 1 || allocs > MAX_ALLOCS || allocs > window) usage();
  struct creds cr;
  memset(&cr, 0, sizeof cr);
  if (!raw) {
    if (!user || !keyhex || !realm || strlen(keyhex) != 32) usage();
    cr.user = user;
    cr.realm = realm;
    for (int i = 0; i < 16; i++) {
      unsigned x;
      if (sscanf(keyhex + 2 * i, "%2x", &x) != 1) usage();
      cr.key[i] = (uint8_t)x;
    }
  }
  srandom((unsigned)now_ns() ^ (unsigned)getpid());

  struct sockaddr_in sa, pa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  memset(&pa, 0, sizeof pa);
  pa.sin_family = AF_INET;
  pa.sin_port = htons((uint16_t)peer_port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || inet_pton(AF_INET, peer_host, &pa.sin_addr) != 1) { fprintf(stderr, "bad address\n"); return 2; }

  static struct pollfd pfd[MAX_ALLOCS];
  static struct creds acr[MAX_ALLOCS];
  int *pend[MAX_ALLOCS];
  int npend[MAX_ALLOCS];
  char relayed[64] = "";
  uint64_t setup_t0 = now_ns();
  for (int k = 0; k < allocs; k++) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
    if (!raw) {
      uint8_t resp[2048];
      acr[k] = cr; /* each allocation answers its own challenge */
      struct creds *c = &acr[k];
      int r = request(fd, M_ALLOCATE, c, NULL, resp, sizeof resp);
      if (r < 0) return 1;
      unsigned rl = 0;
      const uint8_t *ra = msg_find(resp, r, A_XOR_RELAYED_ADDRESS, &rl);
      if (!ra || rl < 8) { fprintf(stderr, "Allocate success without XOR-RELAYED-ADDRESS\n"); return 1; }
      if (k == 0) {
        uint32_t ip = ((uint32_t)ra[4] << 24 | (uint32_t)ra[5] << 16 | (uint32_t)ra[6] << 8 | ra[7]) ^ 0x2112a442;
        snprintf(relayed, sizeof relayed, "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255, get16(ra + 2) ^ 0x2112);
      }
      if (request(fd, M_CHANNEL_BIND, c, &pa, resp, sizeof resp) < 0) return 1;
    }
    pfd[k].fd = fd;
    pfd[k].events = POLLIN;
    pend[k] = malloc(sizeof(int) * (size_t)window);
    npend[k] = 0;
  }
  double setup_ms = (now_ns() - setup_t0) / 1e6;

  struct slot { uint64_t seq, sent_ns; int busy; } *slots = calloc((size_t)window, sizeof *slots);
  for (int i = 0; i < window; i++) pend[i % allocs][npend[i % allocs]++] = i;
  int npending = window;

  static uint8_t txbuf[MAX_BATCH][4 + MAX_LEN];
  static uint8_t rxbuf[MAX_BATCH][BUF_LEN];
  static struct iovec txiov[MAX_BATCH], rxiov[MAX_BATCH];
  static struct mmsghdr txmsg[MAX_BATCH], rxmsg[MAX_BATCH];
  static int txslot[MAX_BATCH];
  for (int i = 0; i < MAX_BATCH; i++) {
    put16(txbuf[i], CHANNEL);
    put16(txbuf[i] + 2, (unsigned)len);
    memset(txbuf[i] + 4, 7, (size_t)len);
    txiov[i].iov_base = txbuf[i];
    txiov[i].iov_len = 4 + (size_t)len;
    txmsg[i].msg_hdr.msg_iov = &txiov[i];
    txmsg[i].msg_hdr.msg_iovlen = 1;
    rxiov[i].iov_base = rxbuf[i];
    rxiov[i].iov_len = BUF_LEN;
    rxmsg[i].msg_hdr.msg_iov = &rxiov[i];
    rxmsg[i].msg_hdr.msg_iovlen = 1;
  }

  uint64_t all_sent = 0, all_received = 0;
  uint64_t seq = 1, sent = 0, received = 0, lost = 0, late = 0, bad = 0, send_errors = 0, lat_sum_ns = 0, lat_count = 0;
  const uint64_t t0 = now_ns();
  const uint64_t mstart = t0 + (uint64_t)warmup_ms * 1000000ull;
  const uint64_t mend = mstart + (uint64_t)duration_ms * 1000000ull;
  const uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000ull;
  uint64_t last_scan = t0, wall_at_start = 0;
  double cpu0 = -1, srv0 = -1, peer0 = -1;
  static double task0[MAX_CPUS], intr0[MAX_CPUS], task1[MAX_CPUS], intr1[MAX_CPUS];
  int ncpu = 0, measuring = 0;

  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && now >= mstart) {
      measuring = 1;
      cpu0 = cpu_s();
      srv0 = process_cpu_s(server_pid);
      peer0 = process_cpu_s(peer_pid);
      ncpu = cpu_times(task0, intr0);
      wall_at_start = now;
    }
    if (now >= mend) break;
    if (now - last_scan >= 1000000ull) {
      last_scan = now;
      for (int s = 0; s < window; s++) {
        if (slots[s].busy && now - slots[s].sent_ns >= timeout_ns) {
          slots[s].busy = 0;
          if (slots[s].sent_ns >= mstart) lost++;
          pend[s % allocs][npend[s % allocs]++] = s;
          npending++;
        }
      }
    }
    for (int k = 0; k < allocs && npending > 0; k++) {
      while (npend[k] > 0) {
        int n = npend[k] < batch ? npend[k] : batch;
        uint64_t ts = now_ns();
        for (int i = 0; i < n; i++) {
          int s = pend[k][npend[k] - 1 - i];
          uint64_t q = seq++;
          memcpy(txbuf[i] + 4, &s, 4);
          memcpy(txbuf[i] + 8, &q, 8);
          slots[s].seq = q;
          slots[s].sent_ns = ts;
          slots[s].busy = 1;
          txslot[i] = s;
        }
        int r = sendmmsg(pfd[k].fd, txmsg, (unsigned)n, MSG_DONTWAIT);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) r = 0;
          else if (errno == ECONNREFUSED) { send_errors++; r = 0; }
          else { perror("sendmmsg"); return 1; }
        }
        for (int i = r; i < n; i++) slots[txslot[i]].busy = 0;
        if (ts >= mstart) sent += (uint64_t)r;
        all_sent += (uint64_t)r;
        npend[k] -= r;
        npending -= r;
        if (r < n) break;
      }
    }
    int ready = poll(pfd, (nfds_t)allocs, npending > 0 ? 0 : 1);
    if (ready <= 0) continue;
    for (int k = 0; k < allocs; k++) {
      if (!(pfd[k].revents & (POLLIN | POLLERR))) continue;
      int got = recvmmsg(pfd[k].fd, rxmsg, (unsigned)batch, MSG_DONTWAIT, NULL);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == ECONNREFUSED) { send_errors++; continue; }
        perror("recvmmsg");
        return 1;
      }
      uint64_t rt = now_ns();
      for (int i = 0; i < got; i++) {
        const uint8_t *b = rxbuf[i];
        unsigned rl = rxmsg[i].msg_len;
        /* ChannelData on our channel with our payload length (UDP: padding optional). */
        if (rl < 4 + (unsigned)len || get16(b) != CHANNEL || get16(b + 2) != (unsigned)len) { if (rt >= mstart) bad++; continue; }
        int s;
        uint64_t q;
        memcpy(&s, b + 4, 4);
        memcpy(&q, b + 8, 8);
        if (s < 0 || s >= window || s % allocs != k) { if (rt >= mstart) bad++; continue; }
        if (!slots[s].busy || slots[s].seq != q) { if (rt >= mstart) late++; continue; }
        slots[s].busy = 0;
        pend[k][npend[k]++] = s;
        npending++;
        all_received++;
        if (rt >= mstart) {
          received++;
          if (slots[s].sent_ns >= mstart) {
            uint64_t lat = rt - slots[s].sent_ns;
            uint64_t us = lat / 1000;
            hist[us > HIST_US ? HIST_US : us]++;
            lat_sum_ns += lat;
            lat_count++;
          }
        }
      }
    }
  }
  double cpu1 = cpu_s(), srv1 = process_cpu_s(server_pid), peer1 = process_cpu_s(peer_pid);
  cpu_times(task1, intr1);
  double wall_s = (now_ns() - (wall_at_start ? wall_at_start : mstart)) / 1e9;
  double secs = (double)duration_ms / 1000.0;
  uint64_t in_flight = 0;
  for (int s = 0; s < window; s++) in_flight += slots[s].busy && slots[s].sent_ns >= mstart;
  /* Delete the allocations (Refresh, LIFETIME 0), so relays log and count them as ended. */
  int released = 0;
  if (!raw && release) {
    usleep(300000); /* let the answers still in flight arrive (they count in total_received) */
    for (int k = 0; k < allocs; k++) {
      for (;;) {
        int got = recvmmsg(pfd[k].fd, rxmsg, (unsigned)batch, MSG_DONTWAIT, NULL);
        if (got <= 0) break;
        for (int i = 0; i < got; i++) if (rxmsg[i].msg_len >= 4 && get16(rxbuf[i]) == CHANNEL) all_received++;
      }
      uint8_t resp[2048];
      if (request(pfd[k].fd, M_REFRESH, &acr[k], NULL, resp, sizeof resp) >= 0) released++;
    }
  }

  printf("{\"mode\":\"%s\",\"allocs\":%d,\"window\":%d,\"len\":%d,\"duration_ms\":%ld,\"setup_ms\":%.1f,\"relayed_address\":\"%s\","
         "\"total_sent\":%llu,\"total_received\":%llu,\"released\":%d,\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"late\":%llu,\"bad\":%llu,\"send_errors\":%llu,\"in_flight_at_end\":%llu,"
         "\"rtps\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.2f,"
         "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"peer_cpu\":%.3f,\"cpu_task\":[",
         raw ? "raw" : "turn", allocs, window, len, duration_ms, setup_ms, relayed, (unsigned long long)all_sent,
         (unsigned long long)all_received, released, (unsigned long long)sent, (unsigned long long)received,
         (unsigned long long)lost, (unsigned long long)late, (unsigned long long)bad, (unsigned long long)send_errors,
         (unsigned long long)in_flight, received / secs, percentile(lat_count, 0.50), percentile(lat_count, 0.90),
         percentile(lat_count, 0.99), percentile(lat_count, 0.999), lat_count ? lat_sum_ns / 1000.0 / lat_count : -1.0,
         cpu0 >= 0 ? (cpu1 - cpu0) / wall_s : -1, srv0 >= 0 && srv1 >= 0 ? (srv1 - srv0) / wall_s : -1,
         peer0 >= 0 && peer1 >= 0 ? (peer1 - peer0) / wall_s : -1);
  for (int i = 0; i < ncpu; i++) printf("%s%.3f", i ? "," : "", (task1[i] - task0[i]) / wall_s);
  printf("],\"cpu_intr\":[");
  for (int i = 0; i < ncpu; i++) printf("%s%.3f", i ? "," : "", (intr1[i] - intr0[i]) / wall_s);
  printf("]}\n");
  return 0;
}
