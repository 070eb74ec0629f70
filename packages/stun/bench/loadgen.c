/*
 * loadgen: closed-loop STUN Binding load generator for the natkit server benchmark.
 *
 * Keeps a fixed window of Binding requests in flight, spread over --sockets connected UDP
 * sockets (one source port each, so a server that spreads flows over threads with
 * SO_REUSEPORT sees several flows). Each request has a unique transaction id: bytes 0-3
 * are the window slot, bytes 4-11 a global sequence number, so a response is matched to
 * exactly one outstanding request; latency, loss (--timeout-ms) and late answers are
 * measured by the loop in common/udpload.h, shared with the TURN benchmark's turnload.c.
 *
 * Works against a STUN server (expects Binding success responses, 0x0101) and against a
 * plain UDP echo server (the request comes back unchanged, 0x0001), so the same program
 * measures how fast it can drive a server that does no work at all.
 *
 * Only what is sent and received after --warmup-ms counts; the run then lasts
 * --duration-ms. Prints one JSON object on stdout.
 *
 * Build: cc -O2 -I common -o loadgen loadgen.c
 */
#include "udpload.h"

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host 127.0.0.1] [--duration-ms 3000] [--warmup-ms 500]\n"
          "               [--window 128] [--timeout-ms 250] [--batch 64] [--sockets 1]\n"
          "               [--server-pid PID]\n");
  exit(2);
}

/* A Binding success response, or our own request from an echo server. */
static int is_binding_answer(const struct udpload *u, const uint8_t *b, unsigned len) {
  (void)u;
  (void)len;
  if (b[4] != 0x21 || b[5] != 0x12 || b[6] != 0xa4 || b[7] != 0x42) return 0;
  unsigned type = ((unsigned)b[0] << 8) | b[1];
  return type == 0x0101 || type == 0x0001;
}

int main(int argc, char **argv) {
  struct udpload u;
  udpload_init(&u);
  u.nflows = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--sockets")) u.nflows = atoi(v);
    else if (!udpload_option(&u, a, v)) usage();
    i++;
  }
  if (!udpload_valid(&u)) usage();
  struct sockaddr_in sa;
  if (!ul_addr(&sa, u.host, u.port)) { fprintf(stderr, "bad host %s\n", u.host); return 2; }
  /* One connected socket per flow (own source port). Slot s belongs to socket s % sockets. */
  for (int k = 0; k < u.nflows; k++)
    if ((u.fd[k] = udpload_socket(&sa, SOCK_NONBLOCK)) < 0) return 1;

  /* Binding request, no attributes; the transaction id (bytes 8-19) is slot + sequence. */
  static const uint8_t binding[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
  memcpy(u.req, binding, sizeof binding);
  u.req_len = sizeof binding;
  u.id_off = 8;
  if (udpload_run(&u, is_binding_answer) < 0) return 1;

  printf("{\"window\":%d,\"sockets\":%d,\"duration_ms\":%ld,", u.window, u.nflows, u.duration_ms);
  udpload_print_counts(&u);
  printf("\"rps\":%.1f,", udpload_rate(&u));
  udpload_print_latency(&u);
  printf("\"resp_bytes_min\":%llu,\"resp_bytes_max\":%llu,", (unsigned long long)u.resp_bytes_min, (unsigned long long)u.resp_bytes_max);
  udpload_print_cpu(&u);
  /* Everything busy on the machine, in cores: the script subtracts the server and us. */
  printf("\"system_busy\":%.3f}\n", ul_cores(u.cpu0.busy, u.cpu1.busy, u.wall_s));
  return 0;
}
