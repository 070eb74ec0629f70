/*
 * loadgen: closed-loop STUN Binding load generator for the natkit server benchmark.
 *
 * Keeps a fixed window of Binding requests in flight, spread over --sockets connected UDP
 * sockets (one source port each, so a server that spreads flows over threads with
 * SO_REUSEPORT sees several flows). Each request has a unique transaction id: bytes 0-3
 * are the window slot, bytes 4-11 a global sequence number, so a response is matched to
 * exactly one outstanding request and its
 * latency is (receive time - send time) on CLOCK_MONOTONIC. A slot whose request gets no
 * answer within --timeout-ms is counted as lost and re-used with a new id; an answer that
 * comes after that is counted as late. Responses are batched with recvmmsg and the freed
 * slots re-sent with sendmmsg.
 *
 * Works against a STUN server (expects Binding success responses, 0x0101) and against a
 * plain UDP echo server (the request comes back unchanged, 0x0001), so the same program
 * measures how fast it can drive a server that does no work at all.
 *
 * Only what is sent and received after --warmup-ms counts; the run then lasts
 * --duration-ms. Prints one JSON object on stdout.
 *
 * Build: cc -O2 -o loadgen loadgen.c
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
#define MAX_SOCKETS 1024
#define REQ_LEN 20
#define BUF_LEN 2048
#define HIST_US 200000 /* 1 us buckets up to 200 ms; above goes to the overflow bucket */

struct slot {
  uint64_t seq;
  uint64_t sent_ns;
  int busy;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Busy time of all CPUs in seconds, from /proc/stat (user+nice+system+irq+softirq+steal). */
static double system_busy_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return -1;
  unsigned long long v[8] = {0};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (n < 8) return -1;
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU time (user+system, all threads) of a process in seconds, from /proc/PID/stat. */
static double process_cpu_s(int pid) {
  if (pid <= 0) return -1;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may contain spaces */
  if (!p) return -1;
  unsigned long long ut = 0, st = 0;
  /* after ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host 127.0.0.1] [--duration-ms 3000] [--warmup-ms 500]\n"
          "               [--window 128] [--timeout-ms 250] [--batch 64] [--sockets 1]\n"
          "               [--server-pid PID]\n");
  exit(2);
}

static uint64_t hist[HIST_US + 1];

static double percentile(uint64_t total, double p) {
  if (total == 0) return -1;
  uint64_t rank = (uint64_t)(p * (double)total);
  if (rank >= total) rank = total - 1;
  uint64_t acc = 0;
  for (int i = 0; i <= HIST_US; i++) {
    acc += hist[i];
    if (acc > rank) return (double)i + 0.5; /* bucket midpoint, in microseconds */
  }
  return HIST_US;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0;
  long duration_ms = 3000, warmup_ms = 500, timeout_ms = 250;
  int window = 128, batch = 64, server_pid = 0, sockets = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--duration-ms")) duration_ms = atol(v);
    else if (!strcmp(a, "--warmup-ms")) warmup_ms = atol(v);
    else if (!strcmp(a, "--timeout-ms")) timeout_ms = atol(v);
    else if (!strcmp(a, "--window")) window = atoi(v);
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else if (!strcmp(a, "--server-pid")) server_pid = atoi(v);
    else if (!strcmp(a, "--sockets")) sockets = atoi(v);
    else usage();
    i++;
  }
  if (port <= 0 || port > 65535 || window < 1 || window > MAX_WINDOW || batch < 1 || batch > MAX_BATCH) usage();

  if (sockets < 1 || sockets > MAX_SOCKETS || sockets > window) usage();
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 2; }
  /* One connected socket per flow (own source port). Slot s belongs to socket s % sockets. */
  static struct pollfd pfd[MAX_SOCKETS];
  int *pend[MAX_SOCKETS]; /* per socket: slots waiting to be (re)sent */
  int npend[MAX_SOCKETS];
  for (int k = 0; k < sockets; k++) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
    pfd[k].fd = fd;
    pfd[k].events = POLLIN;
    pend[k] = malloc(sizeof(int) * (size_t)window);
    npend[k] = 0;
  }
  struct slot *slots = calloc((size_t)window, sizeof *slots);
  for (int i = 0; i < window; i++) pend[i % sockets][npend[i % sockets]++] = i;
  int npending = window;

  static uint8_t txbuf[MAX_BATCH][REQ_LEN];
  static uint8_t rxbuf[MAX_BATCH][BUF_LEN];
  static struct iovec txiov[MAX_BATCH], rxiov[MAX_BATCH];
  static struct mmsghdr txmsg[MAX_BATCH], rxmsg[MAX_BATCH];
  static int txslot[MAX_BATCH];
  for (int i = 0; i < MAX_BATCH; i++) {
    txiov[i].iov_base = txbuf[i];
    txiov[i].iov_len = REQ_LEN;
    txmsg[i].msg_hdr.msg_iov = &txiov[i];
    txmsg[i].msg_hdr.msg_iovlen = 1;
    rxiov[i].iov_base = rxbuf[i];
    rxiov[i].iov_len = BUF_LEN;
    rxmsg[i].msg_hdr.msg_iov = &rxiov[i];
    rxmsg[i].msg_hdr.msg_iovlen = 1;
  }

  uint64_t seq = 1;
  uint64_t sent = 0, received = 0, lost = 0, late = 0, bad = 0, send_errors = 0;
  uint64_t resp_bytes_min = UINT64_MAX, resp_bytes_max = 0;
  uint64_t lat_sum_ns = 0, lat_count = 0;
  const uint64_t t0 = now_ns();
  const uint64_t mstart = t0 + (uint64_t)warmup_ms * 1000000ull;
  const uint64_t mend = mstart + (uint64_t)duration_ms * 1000000ull;
  const uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000ull;
  uint64_t last_timeout_scan = t0;
  double cpu_at_start = -1, cpu_at_end = 0, sys_at_start = -1, srv_at_start = -1;
  uint64_t wall_at_start = 0;
  int measuring = 0;

  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && now >= mstart) {
      measuring = 1;
      cpu_at_start = cpu_s();
      sys_at_start = system_busy_s();
      srv_at_start = process_cpu_s(server_pid);
      wall_at_start = now;
    }
    if (now >= mend) break;

    /* Requests unanswered for --timeout-ms are lost; their slots are re-used. */
    if (now - last_timeout_scan >= 1000000ull) {
      last_timeout_scan = now;
      for (int s = 0; s < window; s++) {
        if (slots[s].busy && now - slots[s].sent_ns >= timeout_ns) {
          slots[s].busy = 0;
          if (slots[s].sent_ns >= mstart) lost++;
          pend[s % sockets][npend[s % sockets]++] = s;
          npending++;
        }
      }
    }

    /* Send every pending slot, per socket, in batches. */
    for (int k = 0; k < sockets && npending > 0; k++) {
      while (npend[k] > 0) {
        int n = npend[k] < batch ? npend[k] : batch;
        uint64_t ts = now_ns();
        for (int i = 0; i < n; i++) {
          int s = pend[k][npend[k] - 1 - i];
          uint8_t *b = txbuf[i];
          b[0] = 0x00; b[1] = 0x01; /* Binding request */
          b[2] = 0x00; b[3] = 0x00; /* no attributes */
          b[4] = 0x21; b[5] = 0x12; b[6] = 0xa4; b[7] = 0x42;
          memcpy(b + 8, &s, 4);
          uint64_t q = seq++;
          memcpy(b + 12, &q, 8);
          slots[s].seq = q;
          slots[s].sent_ns = ts;
          slots[s].busy = 1;
          txslot[i] = s;
        }
        int r = sendmmsg(pfd[k].fd, txmsg, (unsigned)n, 0);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) r = 0;
          else if (errno == ECONNREFUSED) { send_errors++; r = 0; } /* an ICMP error from an earlier send */
          else { perror("sendmmsg"); return 1; }
        }
        for (int i = r; i < n; i++) slots[txslot[i]].busy = 0; /* not sent: stays pending */
        if (ts >= mstart) sent += (uint64_t)r;
        npend[k] -= r;
        npending -= r;
        if (r < n) break;
      }
    }

    /* Wait for answers (up to 1 ms, or not at all while requests wait to be sent). */
    int ready = poll(pfd, (nfds_t)sockets, npending > 0 ? 0 : 1);
    if (ready <= 0) continue;
    for (int k = 0; k < sockets; k++) {
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
        unsigned len = rxmsg[i].msg_len;
        if (len < 20 || b[4] != 0x21 || b[5] != 0x12 || b[6] != 0xa4 || b[7] != 0x42) { if (rt >= mstart) bad++; continue; }
        unsigned type = ((unsigned)b[0] << 8) | b[1];
        if (type != 0x0101 && type != 0x0001) { if (rt >= mstart) bad++; continue; }
        int s;
        uint64_t q;
        memcpy(&s, b + 8, 4);
        memcpy(&q, b + 12, 8);
        if (s < 0 || s >= window || s % sockets != k) { if (rt >= mstart) bad++; continue; }
        if (!slots[s].busy || slots[s].seq != q) { if (rt >= mstart) late++; continue; }
        slots[s].busy = 0;
        pend[k][npend[k]++] = s;
        npending++;
        if (rt >= mstart) {
          received++;
          if (len < resp_bytes_min) resp_bytes_min = len;
          if (len > resp_bytes_max) resp_bytes_max = len;
          if (slots[s].sent_ns >= mstart) { /* latency only of requests sent in the window */
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
  cpu_at_end = cpu_s();
  double sys_at_end = system_busy_s(), srv_at_end = process_cpu_s(server_pid);
  uint64_t wall_ns = now_ns() - (wall_at_start ? wall_at_start : mstart);
  double wall_s = wall_ns / 1e9;
  /* In cores: the server's CPU use, and everything on the machine that was neither it nor us. */
  double server_cpu = srv_at_start >= 0 && srv_at_end >= 0 && wall_s > 0 ? (srv_at_end - srv_at_start) / wall_s : -1;
  double system_busy = sys_at_start >= 0 && sys_at_end >= 0 && wall_s > 0 ? (sys_at_end - sys_at_start) / wall_s : -1;
  double secs = (double)duration_ms / 1000.0;
  double cpu_frac = cpu_at_start >= 0 && wall_ns > 0 ? (cpu_at_end - cpu_at_start) / (wall_ns / 1e9) : -1;
  uint64_t in_flight = 0;
  for (int s = 0; s < window; s++) in_flight += slots[s].busy && slots[s].sent_ns >= mstart;

  printf("{\"window\":%d,\"sockets\":%d,\"duration_ms\":%ld,\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"late\":%llu,"
         "\"bad\":%llu,\"send_errors\":%llu,\"in_flight_at_end\":%llu,\"rps\":%.1f,"
         "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.2f,"
         "\"resp_bytes_min\":%llu,\"resp_bytes_max\":%llu,\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"system_busy\":%.3f}\n",
         window, sockets, duration_ms, (unsigned long long)sent, (unsigned long long)received, (unsigned long long)lost,
         (unsigned long long)late, (unsigned long long)bad, (unsigned long long)send_errors,
         (unsigned long long)in_flight, received / secs, percentile(lat_count, 0.50), percentile(lat_count, 0.90),
         percentile(lat_count, 0.99), percentile(lat_count, 0.999), lat_count ? lat_sum_ns / 1000.0 / lat_count : -1.0,
         (unsigned long long)(received ? resp_bytes_min : 0), (unsigned long long)resp_bytes_max, cpu_frac, server_cpu, system_busy);
  return 0;
}
