// Chromium's own ICE agent (Debian's chromium, headless, driven by playwright-core) as an
// ice-peers peer: one RTCPeerConnection with a data channel in an about:blank page. The
// remote agent is injected as SDP (its ufrag/pwd in a session description, its candidates
// through addIceCandidate); Chromium's ufrag/pwd come from its local description and its
// candidates from icecandidate events. DTLS never completes (the remote agents speak ICE
// only), so success is iceConnectionState 'connected'; Chromium sends and receives no
// application data, and send() reports an error event.
//
// Roles (RFC 8445 6.1.1 / RFC 8839 / JSEP): the offerer is controlling unless the answer
// says ice-lite. So:
//  - role 'controlling': Chromium makes the offer (setLocalDescription at once, so its
//    ufrag/pwd and candidates come at once); the remote's ufrag/pwd become an answer SDP.
//  - role 'controlled': the remote's ufrag/pwd become an offer SDP that Chromium answers;
//    Chromium's ufrag/pwd and candidates come only after the remote parameters arrive.
// Remote candidates that arrive before the remote description is set are queued in the page.
//
// The SDP Chromium needs besides ICE: an m=application line for SCTP, a=mid, BUNDLE, and a
// syntactically valid a=fingerprint (random bytes here: no DTLS handshake will check it).
// a=setup is 'active' in the answer and in the offer, so that Chromium takes the DTLS
// server side and only waits: it sends no DTLS ClientHello to an agent that would see it
// as application data.
//
// Chromium flags: test/helpers/chromium.ts's (as test/interop/turn-chromium.test.ts), plus
// --disable-features=WebRtcHideLocalIpsWithMdns (host candidates as addresses, not .local
// names) and --allow-loopback-in-peer-connection (host candidates on loopback at all).
// Chromium gathers on every interface (it has no interface filter); connect() in
// connect.ts takes a `filter` so that only its 127.0.0.1 candidates are signalled.
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../chromium.js';
import { EventLog, type IcePeer, type PeerEvent, type Role, describeEvents } from './peer.js';

/** Over test/helpers/chromium.ts's CHROMIUM_ARGS: host candidates as addresses, and on loopback. */
const ICE_PEER_ARGS = ['--disable-features=WebRtcHideLocalIpsWithMdns', '--allow-loopback-in-peer-connection'];

/** The in-page peer: a function of { role, fingerprint } that installs window.__icePeer. */
const PAGE_CODE = String.raw`({ role, fingerprint }) => {
  const emit = (e) => window.__iceEmit(e);
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  const dc = role === 'controlling' ? pc.createDataChannel('natkit') : undefined;
  let remoteSet = false;
  const queued = [];
  let endQueued = false;
  const params = (sdp) => ({ ufrag: /^a=ice-ufrag:(.*)$/m.exec(sdp)[1].trim(), pwd: /^a=ice-pwd:(.*)$/m.exec(sdp)[1].trim() });
  const cand = (c) => ({ address: c.address, port: c.port, type: c.type });
  const report = (where, e) => emit({ ev: 'error', message: where + ': ' + (e && e.message || e) });

  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) emit({ ev: 'candidate', line: e.candidate.candidate });
    else if (!e.candidate) emit({ ev: 'end-of-candidates' });
  };
  let selectedSent = '';
  const sendSelected = () => {
    const t = pc.sctp && pc.sctp.transport && pc.sctp.transport.iceTransport;
    const p = t && t.getSelectedCandidatePair && t.getSelectedCandidatePair();
    if (!p) return false;
    const key = p.local.address + ':' + p.local.port + '>' + p.remote.address + ':' + p.remote.port;
    if (key !== selectedSent) {
      selectedSent = key;
      emit({ ev: 'selected-pair', local: cand(p.local), remote: cand(p.remote) });
    }
    return true;
  };
  const watchTransport = () => {
    const t = pc.sctp && pc.sctp.transport && pc.sctp.transport.iceTransport;
    if (t) t.onselectedcandidatepairchange = () => sendSelected();
  };
  pc.oniceconnectionstatechange = () => {
    const s = pc.iceConnectionState;
    // the pair event can lag the state: report the pair first when there is one
    if (s === 'connected' || s === 'completed') sendSelected();
    emit({ ev: 'state', state: s, native: s });
  };

  const sdpFor = (type, p) => [
    'v=0',
    'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    'a=msid-semantic: WMS',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    'c=IN IP4 0.0.0.0',
    'a=ice-ufrag:' + p.ufrag,
    'a=ice-pwd:' + p.pwd,
    'a=ice-options:trickle',
    'a=fingerprint:sha-256 ' + fingerprint,
    'a=setup:active',
    'a=mid:0',
    'a=sctp-port:5000',
    'a=max-message-size:262144',
    '',
  ].join('\r\n');

  const flush = async () => {
    remoteSet = true;
    watchTransport();
    while (queued.length) {
      const line = queued.shift();
      try { await pc.addIceCandidate({ candidate: line, sdpMid: '0', sdpMLineIndex: 0 }); } catch (e) { report('addIceCandidate ' + line, e); }
    }
    if (endQueued) { try { await pc.addIceCandidate(); } catch (e) { report('end-of-candidates', e); } }
  };

  let gotRemote = false;
  const api = {
    async start() {
      emit({ ev: 'state', state: 'new', native: pc.iceConnectionState });
      if (role === 'controlling') {
        await pc.setLocalDescription(await pc.createOffer());
        emit({ ev: 'local-params', ...params(pc.localDescription.sdp) });
      }
    },
    async remoteParams(p) {
      if (gotRemote) return report('remote-params', 'given twice (restart is not supported here)');
      gotRemote = true;
      try {
        if (role === 'controlling') {
          await pc.setRemoteDescription({ type: 'answer', sdp: sdpFor('answer', p) });
        } else {
          await pc.setRemoteDescription({ type: 'offer', sdp: sdpFor('offer', p) });
          await pc.setLocalDescription(await pc.createAnswer());
          emit({ ev: 'local-params', ...params(pc.localDescription.sdp) });
        }
      } catch (e) {
        return report('setRemoteDescription', e);
      }
      await flush();
    },
    async candidate(line) {
      if (!remoteSet) { queued.push(line); return; }
      try { await pc.addIceCandidate({ candidate: line, sdpMid: '0', sdpMLineIndex: 0 }); } catch (e) { report('addIceCandidate ' + line, e); }
    },
    async end() {
      if (!remoteSet) { endQueued = true; return; }
      try { await pc.addIceCandidate(); } catch (e) { report('end-of-candidates', e); }
    },
    async stats() {
      const out = [];
      (await pc.getStats()).forEach((v) => { if (v.type === 'candidate-pair' || v.type === 'transport') out.push(v); });
      return out;
    },
    sdp() { return { local: pc.localDescription && pc.localDescription.sdp, remote: pc.remoteDescription && pc.remoteDescription.sdp }; },
    close() { pc.close(); emit({ ev: 'state', state: 'closed', native: 'closed' }); },
  };
  window.__icePeer = api;
  return api.start();
}`;

export interface ChromiumPeerOptions {
  role: Role;
  /** A browser to open the page in (closed by the caller); by default the peer launches its own. */
  browser?: Browser;
}

export class ChromiumPeer implements IcePeer {
  readonly kind = 'chromium';
  readonly log = new EventLog();
  private readonly console: string[] = [];
  private closing: Promise<void> | undefined;
  /** Calls into the page run one after another, in the order made (trickle order matters). */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly role: Role,
    private readonly page: Page,
    private readonly browser: Browser | undefined,
  ) {}

  static async start(ctx: { skip: (note?: string) => void }, o: ChromiumPeerOptions): Promise<ChromiumPeer> {
    const own = o.browser ? undefined : await launchChromium(ctx, ICE_PEER_ARGS);
    try {
      const page = await (o.browser ?? own!).newPage();
      const peer = new ChromiumPeer(o.role, page, own);
      page.on('console', (m) => peer.console.push(m.text()));
      page.on('pageerror', (e) => peer.console.push(`pageerror: ${e.message}`));
      await page.exposeFunction('__iceEmit', (e: PeerEvent) => peer.log.push(e));
      const fingerprint = [...randomBytes(32)].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
      await page.evaluate(`(${PAGE_CODE})(${JSON.stringify({ role: o.role, fingerprint })})`);
      return peer;
    } catch (err) {
      await own?.close();
      throw err;
    }
  }

  get events(): readonly PeerEvent[] {
    return this.log.events;
  }
  subscribe(fn: (e: PeerEvent) => void): () => void {
    return this.log.subscribe(fn);
  }

  private call(expr: string): void {
    this.chain = this.chain
      .then(() => (this.closing ? undefined : this.page.evaluate(expr)))
      .catch((e: Error) => {
        if (!this.closing) this.log.push({ ev: 'error', message: `page.evaluate: ${e.message}` });
      });
  }

  setRemoteParameters(p: { ufrag: string; pwd: string }): void {
    this.call(`window.__icePeer.remoteParams(${JSON.stringify({ ufrag: p.ufrag, pwd: p.pwd })})`);
  }
  addRemoteCandidate(line: string): void {
    this.call(`window.__icePeer.candidate(${JSON.stringify(line.replace(/^a=/, ''))})`);
  }
  endOfRemoteCandidates(): void {
    this.call('window.__icePeer.end()');
  }
  send(): void {
    this.log.push({ ev: 'error', message: 'chromium: no application data without DTLS (beyond the ICE layer)' });
  }
  /** Calls into the page run in order, each to its end: once the chain so far is done, so are they. */
  async sync(): Promise<void> {
    await this.chain;
  }

  /** Chromium's candidate-pair and transport stats (for diagnostics and assertions). */
  async stats(): Promise<Array<Record<string, unknown>>> {
    await this.chain;
    return (await this.page.evaluate('window.__icePeer.stats()')) as Array<Record<string, unknown>>;
  }

  async sdp(): Promise<{ local?: string; remote?: string }> {
    return (await this.page.evaluate('window.__icePeer.sdp()')) as { local?: string; remote?: string };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.page.evaluate('window.__icePeer && window.__icePeer.close()').catch(() => {});
        await this.page.close();
      } finally {
        await this.browser?.close();
        this.log.end('closed');
      }
    })();
    return this.closing;
  }

  diagnostics(): string {
    return `--- chromium (${this.role})\nevents:\n${describeEvents(this.events, 60, this.log.times)}\nconsole:\n${this.console.slice(-40).join('\n')}`;
  }
}
