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
 * trip, loss (--timeout-ms), late answers, recvmmsg/sendmmsg batches and CPU accounting
 * are the loop in common/udpload.h of the @natkit/stun benchmarks (shared with their
 * loadgen.c). Only what happens after --warmup-ms counts; then --duration-ms. Prints one
 * JSON object on stdout.
 *
 * --raw skips the TURN setup (for the C forwarder, the ceiling of the setup): the
 * ChannelData is sent straight away.
 *
 * Build: cc -O2 -I <@natkit/stun>/bench/common -o turnload turnload.c
 */
#include "udpload.h"

#define MAX_LEN 1400
#define CHANNEL 0x4000

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

static void usage(void) {
  fprintf(stderr,
          "usage: turnload --port P --peer-port Q [--host 127.0.0.1] [--peer 127.0.0.1]\n"
          "                --user U --key HEX(MD5(user:realm:password)) --realm R | --raw\n"
          "                [--allocs 8] [--window 128] [--len 100] [--duration-ms 3000] [--warmup-ms 500]\n"
          "                [--timeout-ms 250] [--batch 64] [--server-pid PID] [--peer-pid PID] [--release]\n"
          "--release: delete the allocations (Refresh, LIFETIME 0) after the run\n");
  exit(2);
}

/* ChannelData on our channel with our payload length (UDP: padding optional). */
static int is_channel_data(const struct udpload *u, const uint8_t *b, unsigned len) {
  return len >= u->req_len && memcmp(b, u->req, 4) == 0;
}

int main(int argc, char **argv) {
  struct udpload u;
  udpload_init(&u);
  u.nflows = 8;
  const char *peer_host = "127.0.0.1", *user = NULL, *keyhex = NULL, *realm = NULL;
  int release = 0, raw = 0, peer_port = 0, len = 100;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--raw")) { raw = 1; continue; }
    if (!strcmp(a, "--release")) { release = 1; continue; }
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--peer")) peer_host = v;
    else if (!strcmp(a, "--peer-port")) peer_port = atoi(v);
    else if (!strcmp(a, "--user")) user = v;
    else if (!strcmp(a, "--key")) keyhex = v;
    else if (!strcmp(a, "--realm")) realm = v;
    else if (!strcmp(a, "--allocs")) u.nflows = atoi(v);
    else if (!strcmp(a, "--len")) len = atoi(v);
    else if (!udpload_option(&u, a, v)) usage();
    i++;
  }
  if (!udpload_valid(&u) || peer_port <= 0 || peer_port > 65535 || len < 16 || len > MAX_LEN) usage();
  const int allocs = u.nflows;
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
  if (!ul_addr(&sa, u.host, u.port) || !ul_addr(&pa, peer_host, peer_port)) { fprintf(stderr, "bad address\n"); return 2; }

  static struct creds acr[UL_MAX_FLOWS];
  char relayed[64] = "";
  uint64_t setup_t0 = now_ns();
  for (int k = 0; k < allocs; k++) {
    int fd = u.fd[k] = udpload_socket(&sa, 0);
    if (fd < 0) return 1;
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
  }
  double setup_ms = (now_ns() - setup_t0) / 1e6;

  /* ChannelData on CHANNEL, `len` bytes of payload: the slot and sequence number, then 7s. */
  put16(u.req, CHANNEL);
  put16(u.req + 2, (unsigned)len);
  memset(u.req + 4, 7, (size_t)len);
  u.req_len = 4 + (size_t)len;
  u.id_off = 4;
  if (udpload_run(&u, is_channel_data) < 0) return 1;

  /* Delete the allocations (Refresh, LIFETIME 0), so relays log and count them as ended. */
  int released = 0;
  if (!raw && release) {
    usleep(300000); /* let the answers still in flight arrive (they count in total_received) */
    for (int k = 0; k < allocs; k++) {
      uint8_t buf[UL_BUF_LEN];
      ssize_t n;
      while ((n = recv(u.fd[k], buf, sizeof buf, MSG_DONTWAIT)) >= 0)
        if (n >= 4 && get16(buf) == CHANNEL) u.total_received++;
      uint8_t resp[2048];
      if (request(u.fd[k], M_REFRESH, &acr[k], NULL, resp, sizeof resp) >= 0) released++;
    }
  }

  printf("{\"mode\":\"%s\",\"allocs\":%d,\"window\":%d,\"len\":%d,\"duration_ms\":%ld,\"setup_ms\":%.1f,\"relayed_address\":\"%s\","
         "\"total_sent\":%llu,\"total_received\":%llu,\"released\":%d,",
         raw ? "raw" : "turn", allocs, u.window, len, u.duration_ms, setup_ms, relayed, (unsigned long long)u.total_sent,
         (unsigned long long)u.total_received, released);
  udpload_print_counts(&u);
  printf("\"rtps\":%.1f,", udpload_rate(&u));
  udpload_print_latency(&u);
  udpload_print_cpu(&u);
  printf("\"peer_cpu\":%.3f,\"cpu_task\":[", ul_cores(u.cpu0.peer, u.cpu1.peer, u.wall_s));
  for (int i = 0; i < u.cpu0.ncpu; i++) printf("%s%.3f", i ? "," : "", (u.cpu1.task[i] - u.cpu0.task[i]) / u.wall_s);
  printf("],\"cpu_intr\":[");
  for (int i = 0; i < u.cpu0.ncpu; i++) printf("%s%.3f", i ? "," : "", (u.cpu1.intr[i] - u.cpu0.intr[i]) / u.wall_s);
  printf("]}\n");
  return 0;
}
