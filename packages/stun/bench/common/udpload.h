/*
 * udpload.h: the core the benchmarks' closed-loop UDP load generators share:
 * packages/stun/bench/loadgen.c (STUN Binding requests) and packages/turn/bench/turnload.c
 * (TURN ChannelData). Header only (static functions), libc only; the bench scripts build
 * with `cc -O2 -I <this folder>`.
 *
 * Here: the options both take, connected UDP sockets with 4 MiB buffers, the closed loop
 * itself, the latency histogram, CPU accounting (getrusage and /proc) and the JSON fields
 * both print. The loop keeps a window of requests in flight, slot s on socket
 * s % nflows (one socket per flow, each its own source port). Every request is a copy of
 * the program's template with the slot (4 bytes) and a global sequence number (8 bytes)
 * written at `id_off`, so an answer, which carries them back at the same offset, is
 * matched to exactly one outstanding request; its latency is (receive time - send time) on
 * CLOCK_MONOTONIC. A slot unanswered after --timeout-ms is counted as lost and re-used with
 * a new id; an answer that comes after that is counted as late. Answers are batched with
 * recvmmsg and the freed slots re-sent with sendmmsg. Only what is sent and received after
 * --warmup-ms counts; the run then lasts --duration-ms.
 *
 * In each program: the request's bytes, what counts as an answer (a callback), its own
 * options and anything before and after the loop (TURN's allocations, for one).
 */
#ifndef NATKIT_UDPLOAD_H
#define NATKIT_UDPLOAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg, sendmmsg: include this header before any other */
#endif
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

#define UL_MAX_BATCH 256
#define UL_MAX_WINDOW 65536
#define UL_MAX_FLOWS 1024
#define UL_MAX_REQ 1500
#define UL_BUF_LEN 2048
#define UL_HIST_US 200000 /* 1 us buckets up to 200 ms; above goes to the overflow bucket */
#define UL_MAX_CPUS 64

/* ------------------------------------------------------------------------------------ */
/* Clocks and CPU accounting */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of this process (user+system) in seconds. */
static double ul_self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU time (user+system, all threads) of a process in seconds, from /proc/PID/stat; -1 if none. */
static double ul_process_cpu_s(int pid) {
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

/* One reading of everything the programs report about CPU use, in seconds. */
struct ul_cpu {
  double self;   /* this process */
  double server; /* --server-pid, -1 if none */
  double peer;   /* --peer-pid, -1 if none */
  double busy;   /* all CPUs: user+nice+system+irq+softirq+steal ("cpu" line of /proc/stat), -1 if unreadable */
  /*
   * Per CPU: task time (user+nice+system+steal) and interrupt time (irq+softirq).
   * Loopback UDP delivery runs as softirq on the sending CPU and is charged to no
   * process, so a CPU's load is both.
   */
  int ncpu;
  double task[UL_MAX_CPUS], intr[UL_MAX_CPUS];
};

static void ul_proc_stat(struct ul_cpu *c) {
  c->busy = -1;
  c->ncpu = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return;
  double hz = (double)sysconf(_SC_CLK_TCK);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    unsigned long long v[8] = {0};
    int id;
    if (strncmp(line, "cpu ", 4) == 0) {
      if (sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
        c->busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
      continue;
    }
    if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
    if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 9) continue;
    if (id < 0 || id >= UL_MAX_CPUS) continue;
    c->task[id] = (double)(v[0] + v[1] + v[2] + v[7]) / hz;
    c->intr[id] = (double)(v[5] + v[6]) / hz;
    if (id + 1 > c->ncpu) c->ncpu = id + 1;
  }
  fclose(f);
}

static void ul_cpu_read(struct ul_cpu *c, int server_pid, int peer_pid) {
  c->self = ul_self_cpu_s();
  c->server = ul_process_cpu_s(server_pid);
  c->peer = ul_process_cpu_s(peer_pid);
  ul_proc_stat(c);
}

/* Cores used between two readings `wall_s` apart, or -1 if either is missing. */
static double ul_cores(double before, double after, double wall_s) {
  return before >= 0 && after >= 0 && wall_s > 0 ? (after - before) / wall_s : -1;
}

/* ------------------------------------------------------------------------------------ */
/* Latency histogram */

static uint64_t ul_hist[UL_HIST_US + 1];

static double ul_percentile(uint64_t total, double p) {
  if (total == 0) return -1;
  uint64_t rank = (uint64_t)(p * (double)total);
  if (rank >= total) rank = total - 1;
  uint64_t acc = 0;
  for (int i = 0; i <= UL_HIST_US; i++) {
    acc += ul_hist[i];
    if (acc > rank) return (double)i + 0.5; /* bucket midpoint, in microseconds */
  }
  return UL_HIST_US;
}

/* ------------------------------------------------------------------------------------ */
/* The run */

struct udpload {
  /* Options (udpload_init sets the defaults, udpload_option reads them). */
  const char *host;
  int port, window, batch, server_pid, peer_pid;
  long duration_ms, warmup_ms, timeout_ms;
  /* Set by the program before udpload_run. */
  int nflows;             /* sockets, 1..UL_MAX_FLOWS and at most window */
  int fd[UL_MAX_FLOWS];   /* connected UDP sockets (udpload_socket) */
  uint8_t req[UL_MAX_REQ]; /* every request is this template ... */
  size_t req_len;
  size_t id_off;          /* ... with the slot at id_off and the sequence number at id_off + 4 */
  /* Results. sent .. lat_count count only the measurement; total_* the whole run. */
  uint64_t sent, received, lost, late, bad, send_errors, in_flight, total_sent, total_received;
  uint64_t resp_bytes_min, resp_bytes_max, lat_sum_ns, lat_count;
  struct ul_cpu cpu0, cpu1; /* at the start and the end of the measurement */
  double wall_s;            /* between those readings */
};

/* Is b[0..len) an answer to one of our requests? (len is at least id_off + 12.) */
typedef int (*ul_is_answer)(const struct udpload *u, const uint8_t *b, unsigned len);

static void udpload_init(struct udpload *u) {
  memset(u, 0, sizeof *u);
  u->host = "127.0.0.1";
  u->window = 128;
  u->batch = 64;
  u->duration_ms = 3000;
  u->warmup_ms = 500;
  u->timeout_ms = 250;
}

/* Takes `a v` if it is one of the shared options; returns 0 if it is not. */
static int udpload_option(struct udpload *u, const char *a, const char *v) {
  if (!strcmp(a, "--host")) u->host = v;
  else if (!strcmp(a, "--port")) u->port = atoi(v);
  else if (!strcmp(a, "--duration-ms")) u->duration_ms = atol(v);
  else if (!strcmp(a, "--warmup-ms")) u->warmup_ms = atol(v);
  else if (!strcmp(a, "--timeout-ms")) u->timeout_ms = atol(v);
  else if (!strcmp(a, "--window")) u->window = atoi(v);
  else if (!strcmp(a, "--batch")) u->batch = atoi(v);
  else if (!strcmp(a, "--server-pid")) u->server_pid = atoi(v);
  else if (!strcmp(a, "--peer-pid")) u->peer_pid = atoi(v);
  else return 0;
  return 1;
}

/* Are the shared options (and nflows) in range? */
static int udpload_valid(const struct udpload *u) {
  return u->port > 0 && u->port <= 65535 && u->window >= 1 && u->window <= UL_MAX_WINDOW && u->batch >= 1 && u->batch <= UL_MAX_BATCH &&
         u->nflows >= 1 && u->nflows <= UL_MAX_FLOWS && u->nflows <= u->window;
}

/* An IPv4 address; 0 if `host` is not one. */
static int ul_addr(struct sockaddr_in *sa, const char *host, int port) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

/* A UDP socket with 4 MiB buffers connected to `to` (type_flags: e.g. SOCK_NONBLOCK); -1 on error. */
static int udpload_socket(const struct sockaddr_in *to, int type_flags) {
  int fd = socket(AF_INET, SOCK_DGRAM | type_flags, 0);
  if (fd < 0) { perror("socket"); return -1; }
  int sz = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) { perror("connect"); return -1; }
  return fd;
}

/* Runs the closed loop over u->fd[0..nflows). Returns 0, or -1 after perror. */
static int udpload_run(struct udpload *u, ul_is_answer is_answer) {
  const int window = u->window, flows = u->nflows, batch = u->batch;
  const size_t id_off = u->id_off, id_end = u->id_off + 12;
  struct slot { uint64_t seq, sent_ns; int busy; } *slots = calloc((size_t)window, sizeof *slots);
  static struct pollfd pfd[UL_MAX_FLOWS];
  int *pend[UL_MAX_FLOWS]; /* per socket: slots waiting to be (re)sent */
  int npend[UL_MAX_FLOWS];
  for (int k = 0; k < flows; k++) {
    pfd[k].fd = u->fd[k];
    pfd[k].events = POLLIN;
    pend[k] = malloc(sizeof(int) * (size_t)window);
    npend[k] = 0;
  }
  for (int i = 0; i < window; i++) pend[i % flows][npend[i % flows]++] = i;
  int npending = window;

  uint8_t *txbuf = malloc(UL_MAX_BATCH * u->req_len);
  static uint8_t rxbuf[UL_MAX_BATCH][UL_BUF_LEN];
  static struct iovec txiov[UL_MAX_BATCH], rxiov[UL_MAX_BATCH];
  static struct mmsghdr txmsg[UL_MAX_BATCH], rxmsg[UL_MAX_BATCH];
  static int txslot[UL_MAX_BATCH];
  for (int i = 0; i < UL_MAX_BATCH; i++) {
    memcpy(txbuf + i * u->req_len, u->req, u->req_len);
    txiov[i].iov_base = txbuf + i * u->req_len;
    txiov[i].iov_len = u->req_len;
    txmsg[i].msg_hdr.msg_iov = &txiov[i];
    txmsg[i].msg_hdr.msg_iovlen = 1;
    rxiov[i].iov_base = rxbuf[i];
    rxiov[i].iov_len = UL_BUF_LEN;
    rxmsg[i].msg_hdr.msg_iov = &rxiov[i];
    rxmsg[i].msg_hdr.msg_iovlen = 1;
  }

  uint64_t seq = 1;
  u->resp_bytes_min = UINT64_MAX;
  const uint64_t t0 = now_ns();
  const uint64_t mstart = t0 + (uint64_t)u->warmup_ms * 1000000ull;
  const uint64_t mend = mstart + (uint64_t)u->duration_ms * 1000000ull;
  const uint64_t timeout_ns = (uint64_t)u->timeout_ms * 1000000ull;
  uint64_t last_timeout_scan = t0, wall_at_start = 0;
  int measuring = 0;

  for (;;) {
    uint64_t now = now_ns();
    if (!measuring && now >= mstart) {
      measuring = 1;
      ul_cpu_read(&u->cpu0, u->server_pid, u->peer_pid);
      wall_at_start = now;
    }
    if (now >= mend) break;

    /* Requests unanswered for --timeout-ms are lost; their slots are re-used. */
    if (now - last_timeout_scan >= 1000000ull) {
      last_timeout_scan = now;
      for (int s = 0; s < window; s++) {
        if (slots[s].busy && now - slots[s].sent_ns >= timeout_ns) {
          slots[s].busy = 0;
          if (slots[s].sent_ns >= mstart) u->lost++;
          pend[s % flows][npend[s % flows]++] = s;
          npending++;
        }
      }
    }

    /* Send every pending slot, per socket, in batches. */
    for (int k = 0; k < flows && npending > 0; k++) {
      while (npend[k] > 0) {
        int n = npend[k] < batch ? npend[k] : batch;
        uint64_t ts = now_ns();
        for (int i = 0; i < n; i++) {
          int s = pend[k][npend[k] - 1 - i];
          uint64_t q = seq++;
          memcpy(txbuf + i * u->req_len + id_off, &s, 4);
          memcpy(txbuf + i * u->req_len + id_off + 4, &q, 8);
          slots[s].seq = q;
          slots[s].sent_ns = ts;
          slots[s].busy = 1;
          txslot[i] = s;
        }
        int r = sendmmsg(pfd[k].fd, txmsg, (unsigned)n, MSG_DONTWAIT);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) r = 0;
          else if (errno == ECONNREFUSED) { u->send_errors++; r = 0; } /* an ICMP error from an earlier send */
          else { perror("sendmmsg"); return -1; }
        }
        for (int i = r; i < n; i++) slots[txslot[i]].busy = 0; /* not sent: stays pending */
        if (ts >= mstart) u->sent += (uint64_t)r;
        u->total_sent += (uint64_t)r;
        npend[k] -= r;
        npending -= r;
        if (r < n) break;
      }
    }

    /* Wait for answers (up to 1 ms, or not at all while requests wait to be sent). */
    int ready = poll(pfd, (nfds_t)flows, npending > 0 ? 0 : 1);
    if (ready <= 0) continue;
    for (int k = 0; k < flows; k++) {
      if (!(pfd[k].revents & (POLLIN | POLLERR))) continue;
      int got = recvmmsg(pfd[k].fd, rxmsg, (unsigned)batch, MSG_DONTWAIT, NULL);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == ECONNREFUSED) { u->send_errors++; continue; }
        perror("recvmmsg");
        return -1;
      }
      uint64_t rt = now_ns();
      for (int i = 0; i < got; i++) {
        const uint8_t *b = rxbuf[i];
        unsigned len = rxmsg[i].msg_len;
        if (len < id_end || !is_answer(u, b, len)) { if (rt >= mstart) u->bad++; continue; }
        int s;
        uint64_t q;
        memcpy(&s, b + id_off, 4);
        memcpy(&q, b + id_off + 4, 8);
        if (s < 0 || s >= window || s % flows != k) { if (rt >= mstart) u->bad++; continue; }
        if (!slots[s].busy || slots[s].seq != q) { if (rt >= mstart) u->late++; continue; }
        slots[s].busy = 0;
        pend[k][npend[k]++] = s;
        npending++;
        u->total_received++;
        if (rt >= mstart) {
          u->received++;
          if (len < u->resp_bytes_min) u->resp_bytes_min = len;
          if (len > u->resp_bytes_max) u->resp_bytes_max = len;
          if (slots[s].sent_ns >= mstart) { /* latency only of requests sent in the window */
            uint64_t lat = rt - slots[s].sent_ns;
            uint64_t us = lat / 1000;
            ul_hist[us > UL_HIST_US ? UL_HIST_US : us]++;
            u->lat_sum_ns += lat;
            u->lat_count++;
          }
        }
      }
    }
  }
  ul_cpu_read(&u->cpu1, u->server_pid, u->peer_pid);
  u->wall_s = (now_ns() - (wall_at_start ? wall_at_start : mstart)) / 1e9;
  for (int s = 0; s < window; s++) u->in_flight += slots[s].busy && slots[s].sent_ns >= mstart;
  if (!u->received) u->resp_bytes_min = 0;
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* JSON fields both programs print (each starts a field and ends with a comma) */

/* Answers per second of the measurement. */
static double udpload_rate(const struct udpload *u) { return u->received / ((double)u->duration_ms / 1000.0); }

static void udpload_print_counts(const struct udpload *u) {
  printf("\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"late\":%llu,\"bad\":%llu,\"send_errors\":%llu,\"in_flight_at_end\":%llu,",
         (unsigned long long)u->sent, (unsigned long long)u->received, (unsigned long long)u->lost, (unsigned long long)u->late,
         (unsigned long long)u->bad, (unsigned long long)u->send_errors, (unsigned long long)u->in_flight);
}

static void udpload_print_latency(const struct udpload *u) {
  printf("\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"mean_us\":%.2f,", ul_percentile(u->lat_count, 0.50),
         ul_percentile(u->lat_count, 0.90), ul_percentile(u->lat_count, 0.99), ul_percentile(u->lat_count, 0.999),
         u->lat_count ? u->lat_sum_ns / 1000.0 / u->lat_count : -1.0);
}

/* "loadgen_cpu" and "server_cpu": cores used by this program and by --server-pid. */
static void udpload_print_cpu(const struct udpload *u) {
  printf("\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,", ul_cores(u->cpu0.self, u->cpu1.self, u->wall_s),
         ul_cores(u->cpu0.server, u->cpu1.server, u->wall_s));
}

#endif
