/*
 * uclient-channels.so: an LD_PRELOAD shim for coturn's turnutils_uclient (4.6.1) so that
 * the channel numbers it binds fall inside RFC 8656's range 0x4000-0x4FFF.
 *
 * uclient picks each session's channel as 0x4000 + turn_random() % 0x4000, the RFC 5766
 * range 0x4000-0x7FFF, and turn_random() is RAND_bytes() of sizeof(long) bytes. RFC 8656
 * section 12 reserves 0x5000-0x7FFF, and natkit's relay answers a ChannelBind for them with
 * 400 (as the RFC says), after which uclient exits. This shim answers every sizeof(long)-
 * byte RAND_bytes() with a counter 0, 1, 2, ... (mod 4096), so the clients get channels
 * 0x4000, 0x4001, ... in order: inside 0x4000-0x4FFF, and no two clients share a number
 * (coturn 4.6.1 refuses a second allocation's ChannelBind to the same peer with a number
 * another allocation already uses: "You cannot use the same channel number with different
 * peer"; with random numbers that happens by chance). Other RAND_bytes() sizes
 * (transaction ids and the like) are untouched. Both relays get the same load.
 *
 * Build: cc -shared -fPIC -O2 -o uclient-channels.so uclient-channels.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

int RAND_bytes(unsigned char *buf, int num) {
  static int (*real)(unsigned char *, int);
  static unsigned long counter;
  if (!real) real = (int (*)(unsigned char *, int))dlsym(RTLD_NEXT, "RAND_bytes");
  if (num != (int)sizeof(long)) return real(buf, num);
  long v = (long)(counter++ % 0x1000);
  memcpy(buf, &v, sizeof v);
  return 1;
}
