/*
 * libnice as an ICE peer for natkit's interop tests: one NiceAgent (libnice's public API
 * only), one stream, one component, UDP, non-reliable, RFC 5245/8445 compatibility,
 * bound to the loopback address(es) given with --address (no interface discovery, no
 * UPnP, no TCP candidates, no STUN/TURN server).
 *
 * It speaks the ice-peers line protocol (test/helpers/ice-peers/README.md): one JSON
 * object per line.
 *   stdin:  {"cmd":"remote-params","ufrag":..,"pwd":..}  {"cmd":"candidate","line":..}
 *           {"cmd":"end-of-candidates"}  {"cmd":"send","hex":..}  {"cmd":"sync","id":..}  {"cmd":"close"}
 *   stdout: {"ev":"local-params",..} {"ev":"candidate","line":..} {"ev":"end-of-candidates"}
 *           {"ev":"state","state":..,"native":..} {"ev":"selected-pair","local":{..},"remote":{..}}
 *           {"ev":"data","hex":..} {"ev":"error","message":..} {"ev":"synced","id":..} {"ev":"closed"}
 * End of stdin ends the program too, so it never outlives the test that started it.
 *
 * Built by the test set-up with the system compiler:
 *   gcc -O1 -o libnice-peer libnice-peer.c $(pkg-config --cflags --libs nice glib-2.0)
 *
 * Options: --role controlling|controlled   (the "controlling-mode" property)
 *          --address IP                     (repeatable; default 127.0.0.1)
 *          --nomination regular|aggressive  (default regular, RFC 8445 8.1.1)
 *          --no-trickle                     (without NICE_AGENT_OPTION_ICE_TRICKLE)
 */
#include <nice/agent.h>

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static NiceAgent *agent;
static guint stream_id;
static GMainLoop *loop;
static gboolean have_remote_credentials;
static GSList *early_candidates;    /* remote candidates that came before the credentials */
static gboolean early_end_of_candidates;

/* ---- output: one JSON object per line, flushed at once ---- */

static void json_string(GString *out, const char *s) {
  g_string_append_c(out, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': g_string_append(out, "\\\""); break;
      case '\\': g_string_append(out, "\\\\"); break;
      case '\n': g_string_append(out, "\\n"); break;
      case '\r': g_string_append(out, "\\r"); break;
      case '\t': g_string_append(out, "\\t"); break;
      default:
        if (*p < 0x20) g_string_append_printf(out, "\\u%04x", *p);
        else g_string_append_c(out, (char)*p);
    }
  }
  g_string_append_c(out, '"');
}

static void emit_line(GString *line) {
  g_string_append_c(line, '\n');
  fwrite(line->str, 1, line->len, stdout);
  fflush(stdout);
  g_string_free(line, TRUE);
}

/* {"ev":EV, KEY: "VALUE", ...} with string values; the list ends with NULL. */
static void emit(const char *ev, ...) {
  GString *line = g_string_new("{\"ev\":");
  json_string(line, ev);
  va_list ap;
  va_start(ap, ev);
  for (;;) {
    const char *key = va_arg(ap, const char *);
    if (!key) break;
    const char *value = va_arg(ap, const char *);
    g_string_append_c(line, ',');
    json_string(line, key);
    g_string_append_c(line, ':');
    json_string(line, value);
  }
  va_end(ap);
  g_string_append_c(line, '}');
  emit_line(line);
}

static void emit_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  gchar *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  emit("error", "message", msg, NULL);
  g_free(msg);
}

/* ---- input: a flat JSON object with string / literal values ---- */

typedef struct {
  const char *p;
} Scanner;

static void skip_ws(Scanner *s) {
  while (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n') s->p++;
}

/* A JSON string at s->p (after the opening quote is checked); NULL if malformed. */
static gchar *scan_string(Scanner *s) {
  if (*s->p != '"') return NULL;
  s->p++;
  GString *out = g_string_new(NULL);
  while (*s->p && *s->p != '"') {
    char c = *s->p++;
    if (c != '\\') {
      g_string_append_c(out, c);
      continue;
    }
    c = *s->p++;
    switch (c) {
      case '"': case '\\': case '/': g_string_append_c(out, c); break;
      case 'n': g_string_append_c(out, '\n'); break;
      case 'r': g_string_append_c(out, '\r'); break;
      case 't': g_string_append_c(out, '\t'); break;
      case 'b': g_string_append_c(out, '\b'); break;
      case 'f': g_string_append_c(out, '\f'); break;
      case 'u': {
        char hex[5] = {0};
        for (int i = 0; i < 4; i++) {
          if (!g_ascii_isxdigit(s->p[i])) { g_string_free(out, TRUE); return NULL; }
          hex[i] = s->p[i];
        }
        s->p += 4;
        g_string_append_unichar(out, (gunichar)strtoul(hex, NULL, 16));
        break;
      }
      default: g_string_free(out, TRUE); return NULL;
    }
  }
  if (*s->p != '"') { g_string_free(out, TRUE); return NULL; }
  s->p++;
  return g_string_free(out, FALSE);
}

/* Parses {"k":"v", "k2": true, ...} into a hash table of strings; NULL if malformed. */
static GHashTable *parse_object(const char *text) {
  Scanner s = {text};
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  skip_ws(&s);
  if (*s.p++ != '{') goto bad;
  skip_ws(&s);
  if (*s.p == '}') return h;
  for (;;) {
    skip_ws(&s);
    gchar *key = scan_string(&s);
    if (!key) goto bad;
    skip_ws(&s);
    if (*s.p++ != ':') { g_free(key); goto bad; }
    skip_ws(&s);
    gchar *value;
    if (*s.p == '"') {
      value = scan_string(&s);
    } else {
      const char *start = s.p;
      while (*s.p && *s.p != ',' && *s.p != '}' && *s.p != ' ') s.p++;
      value = s.p > start ? g_strndup(start, s.p - start) : NULL;
    }
    if (!value) { g_free(key); goto bad; }
    g_hash_table_replace(h, key, value);
    skip_ws(&s);
    if (*s.p == ',') { s.p++; continue; }
    if (*s.p == '}') return h;
    goto bad;
  }
bad:
  g_hash_table_destroy(h);
  return NULL;
}

/* ---- libnice callbacks ---- */

static void candidate_json(GString *out, NiceCandidate *c) {
  gchar ip[NICE_ADDRESS_STRING_LEN];
  nice_address_to_string(&c->addr, ip);
  g_string_append(out, "{\"address\":");
  json_string(out, ip);
  g_string_append_printf(out, ",\"port\":%u,\"type\":", nice_address_get_port(&c->addr));
  /* RFC 8839 type names, not libnice's ("srflx" for "server reflexive", ...) */
  const char *type = c->type == NICE_CANDIDATE_TYPE_HOST ? "host"
                     : c->type == NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE ? "srflx"
                     : c->type == NICE_CANDIDATE_TYPE_PEER_REFLEXIVE ? "prflx"
                     : "relay";
  json_string(out, type);
  g_string_append_c(out, '}');
}

static void on_new_candidate(NiceAgent *a, NiceCandidate *c, gpointer data) {
  (void)data;
  gchar *sdp = nice_agent_generate_local_candidate_sdp(a, c);
  /* libnice writes the SDP attribute ("a=candidate:..."); the protocol carries the
   * RFC 8839 candidate-attribute value, "candidate:..." (as RTCIceCandidate does). */
  emit("candidate", "line", g_str_has_prefix(sdp, "a=") ? sdp + 2 : sdp, NULL);
  g_free(sdp);
}

static void on_gathering_done(NiceAgent *a, guint sid, gpointer data) {
  (void)a; (void)sid; (void)data;
  emit("end-of-candidates", NULL);
}

static const char *normalized_state(guint state) {
  switch (state) {
    case NICE_COMPONENT_STATE_DISCONNECTED: return "disconnected";
    case NICE_COMPONENT_STATE_GATHERING: return "new";
    case NICE_COMPONENT_STATE_CONNECTING: return "checking";
    case NICE_COMPONENT_STATE_CONNECTED: return "connected";
    case NICE_COMPONENT_STATE_READY: return "completed";
    case NICE_COMPONENT_STATE_FAILED: return "failed";
    default: return "unknown";
  }
}

static void on_state(NiceAgent *a, guint sid, guint cid, guint state, gpointer data) {
  (void)a; (void)sid; (void)cid; (void)data;
  emit("state", "state", normalized_state(state), "native", nice_component_state_to_string(state), NULL);
}

static void on_selected_pair(NiceAgent *a, guint sid, guint cid, NiceCandidate *l, NiceCandidate *r, gpointer data) {
  (void)a; (void)sid; (void)cid; (void)data;
  GString *line = g_string_new("{\"ev\":\"selected-pair\",\"local\":");
  candidate_json(line, l);
  g_string_append(line, ",\"remote\":");
  candidate_json(line, r);
  g_string_append_c(line, '}');
  emit_line(line);
}

static void on_recv(NiceAgent *a, guint sid, guint cid, guint len, gchar *buf, gpointer data) {
  (void)a; (void)sid; (void)cid; (void)data;
  GString *hex = g_string_sized_new(len * 2 + 1);
  for (guint i = 0; i < len; i++) g_string_append_printf(hex, "%02x", (unsigned char)buf[i]);
  emit("data", "hex", hex->str, NULL);
  g_string_free(hex, TRUE);
}

/* ---- commands ---- */

static void add_remote(GSList *cands) {
  if (nice_agent_set_remote_candidates(agent, stream_id, 1, cands) < 0)
    emit_error("nice_agent_set_remote_candidates refused the candidate");
}

static void cmd_candidate(const char *line) {
  /* nice_agent_parse_remote_candidate_sdp wants the SDP attribute form */
  gchar *sdp = g_str_has_prefix(line, "a=") ? g_strdup(line) : g_strconcat("a=", line, NULL);
  NiceCandidate *c = nice_agent_parse_remote_candidate_sdp(agent, stream_id, sdp);
  g_free(sdp);
  if (!c) {
    emit_error("libnice could not parse the candidate line: %s", line);
    return;
  }
  if (!have_remote_credentials) {
    early_candidates = g_slist_append(early_candidates, c);
    return;
  }
  GSList *l = g_slist_append(NULL, c);
  add_remote(l);
  g_slist_free_full(l, (GDestroyNotify)nice_candidate_free);
}

static void cmd_end_of_candidates(void) {
  if (!have_remote_credentials) {
    early_end_of_candidates = TRUE;
    return;
  }
  nice_agent_peer_candidate_gathering_done(agent, stream_id);
}

static void cmd_remote_params(const char *ufrag, const char *pwd) {
  if (!ufrag || !pwd) {
    emit_error("remote-params needs ufrag and pwd");
    return;
  }
  if (!nice_agent_set_remote_credentials(agent, stream_id, ufrag, pwd)) {
    emit_error("nice_agent_set_remote_credentials failed");
    return;
  }
  have_remote_credentials = TRUE;
  if (early_candidates) {
    add_remote(early_candidates);
    g_slist_free_full(early_candidates, (GDestroyNotify)nice_candidate_free);
    early_candidates = NULL;
  }
  if (early_end_of_candidates) nice_agent_peer_candidate_gathering_done(agent, stream_id);
}

static void cmd_send(const char *hex) {
  size_t n = hex ? strlen(hex) : 0;
  if (n % 2) {
    emit_error("send: odd hex length");
    return;
  }
  guint8 *buf = g_malloc(n / 2 + 1);
  for (size_t i = 0; i < n / 2; i++) {
    char b[3] = {hex[2 * i], hex[2 * i + 1], 0};
    buf[i] = (guint8)strtoul(b, NULL, 16);
  }
  gint sent = nice_agent_send(agent, stream_id, 1, (guint)(n / 2), (const gchar *)buf);
  if (sent < 0) emit_error("nice_agent_send failed (component not connected?)");
  g_free(buf);
}

static void handle_line(const char *text) {
  GHashTable *o = parse_object(text);
  if (!o) {
    emit_error("not a flat JSON object: %s", text);
    return;
  }
  const char *cmd = g_hash_table_lookup(o, "cmd");
  if (!cmd) emit_error("no cmd in %s", text);
  else if (!strcmp(cmd, "remote-params")) cmd_remote_params(g_hash_table_lookup(o, "ufrag"), g_hash_table_lookup(o, "pwd"));
  else if (!strcmp(cmd, "candidate")) cmd_candidate(g_hash_table_lookup(o, "line") ? g_hash_table_lookup(o, "line") : "");
  else if (!strcmp(cmd, "end-of-candidates")) cmd_end_of_candidates();
  else if (!strcmp(cmd, "send")) cmd_send(g_hash_table_lookup(o, "hex"));
  else if (!strcmp(cmd, "sync")) emit("synced", "id", g_hash_table_lookup(o, "id") ? (const char *)g_hash_table_lookup(o, "id") : "", NULL);
  else if (!strcmp(cmd, "close")) g_main_loop_quit(loop);
  else emit_error("unknown cmd %s", cmd);
  g_hash_table_destroy(o);
}

static gboolean on_stdin(GIOChannel *ch, GIOCondition cond, gpointer data) {
  (void)data;
  if (cond & G_IO_IN) {
    gchar *line = NULL;
    gsize len = 0;
    GIOStatus st = g_io_channel_read_line(ch, &line, &len, NULL, NULL);
    if (st == G_IO_STATUS_NORMAL && line) {
      g_strstrip(line);
      if (*line) handle_line(line);
      g_free(line);
      return TRUE;
    }
    g_free(line);
    if (st == G_IO_STATUS_AGAIN) return TRUE;
  }
  /* end of input or error: the test is gone */
  g_main_loop_quit(loop);
  return FALSE;
}

int main(int argc, char **argv) {
  gboolean controlling = FALSE, regular = TRUE, trickle = TRUE;
  GPtrArray *addresses = g_ptr_array_new();
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--role") && i + 1 < argc) {
      const char *r = argv[++i];
      if (!strcmp(r, "controlling")) controlling = TRUE;
      else if (!strcmp(r, "controlled")) controlling = FALSE;
      else { fprintf(stderr, "--role controlling|controlled, not %s\n", r); return 2; }
    } else if (!strcmp(argv[i], "--address") && i + 1 < argc) {
      g_ptr_array_add(addresses, argv[++i]);
    } else if (!strcmp(argv[i], "--nomination") && i + 1 < argc) {
      const char *m = argv[++i];
      if (!strcmp(m, "regular")) regular = TRUE;
      else if (!strcmp(m, "aggressive")) regular = FALSE;
      else { fprintf(stderr, "--nomination regular|aggressive, not %s\n", m); return 2; }
    } else if (!strcmp(argv[i], "--no-trickle")) {
      trickle = FALSE;
    } else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (addresses->len == 0) g_ptr_array_add(addresses, "127.0.0.1");

  loop = g_main_loop_new(NULL, FALSE);
  NiceAgentOption flags = NICE_AGENT_OPTION_CONSENT_FRESHNESS;
  if (regular) flags |= NICE_AGENT_OPTION_REGULAR_NOMINATION;
  if (trickle) flags |= NICE_AGENT_OPTION_ICE_TRICKLE;
  /* non-reliable (no NICE_AGENT_OPTION_RELIABLE): datagrams as they are */
  agent = nice_agent_new_full(g_main_loop_get_context(loop), NICE_COMPATIBILITY_RFC5245, flags);
  g_object_set(agent, "controlling-mode", controlling, "upnp", FALSE, "ice-tcp", FALSE, "ice-udp", TRUE, NULL);

  for (guint i = 0; i < addresses->len; i++) {
    NiceAddress addr;
    nice_address_init(&addr);
    if (!nice_address_set_from_string(&addr, g_ptr_array_index(addresses, i))) {
      fprintf(stderr, "bad --address %s\n", (char *)g_ptr_array_index(addresses, i));
      return 2;
    }
    /* with any local address added, libnice gathers on these only (no discovery) */
    nice_agent_add_local_address(agent, &addr);
  }

  g_signal_connect(agent, "new-candidate-full", G_CALLBACK(on_new_candidate), NULL);
  g_signal_connect(agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), NULL);
  g_signal_connect(agent, "component-state-changed", G_CALLBACK(on_state), NULL);
  g_signal_connect(agent, "new-selected-pair-full", G_CALLBACK(on_selected_pair), NULL);

  stream_id = nice_agent_add_stream(agent, 1);
  if (!stream_id) { fprintf(stderr, "nice_agent_add_stream failed\n"); return 1; }
  nice_agent_attach_recv(agent, stream_id, 1, g_main_loop_get_context(loop), on_recv, NULL);

  gchar *ufrag = NULL, *pwd = NULL;
  nice_agent_get_local_credentials(agent, stream_id, &ufrag, &pwd);
  emit("local-params", "ufrag", ufrag, "pwd", pwd, NULL);
  g_free(ufrag);
  g_free(pwd);

  if (!nice_agent_gather_candidates(agent, stream_id)) {
    emit_error("nice_agent_gather_candidates failed");
    return 1;
  }

  GIOChannel *in = g_io_channel_unix_new(0);
  g_io_channel_set_encoding(in, NULL, NULL);
  g_io_add_watch(in, G_IO_IN | G_IO_HUP | G_IO_ERR, on_stdin, NULL);

  g_main_loop_run(loop);

  nice_agent_attach_recv(agent, stream_id, 1, g_main_loop_get_context(loop), NULL, NULL);
  nice_agent_remove_stream(agent, stream_id);
  g_object_unref(agent);
  g_io_channel_unref(in);
  g_main_loop_unref(loop);
  g_ptr_array_free(addresses, TRUE);
  emit("closed", NULL);
  return 0;
}
