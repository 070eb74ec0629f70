// ICE server URIs (RFC 7064 stun/stuns, RFC 7065 turn/turns): the RFCs' own examples, the
// forms browsers accept, and bad forms, each with its specific error.
import { describe, expect, it } from 'vitest';
import { IceUrlError, type IceUrlErrorCode, parseIceServerUrl, validateIceServers } from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

describe('parseIceServerUrl: good URIs', () => {
  // RFC 7064 section 3.1 / RFC 7065 section 3.1 grammar; the examples from the RFCs'
  // texts and the RFC 5928 resolution examples RFC 7065 builds on.
  const cases: Array<[string, { scheme: string; host: string; port: number; transport: string; literal: boolean }]> = [
    ['stun:example.org', { scheme: 'stun', host: 'example.org', port: 3478, transport: 'udp', literal: false }],
    ['stuns:example.org', { scheme: 'stuns', host: 'example.org', port: 5349, transport: 'tls', literal: false }],
    ['stun:example.org:8000', { scheme: 'stun', host: 'example.org', port: 8000, transport: 'udp', literal: false }],
    ['turn:example.org', { scheme: 'turn', host: 'example.org', port: 3478, transport: 'udp', literal: false }],
    ['turns:example.org', { scheme: 'turns', host: 'example.org', port: 5349, transport: 'tls', literal: false }],
    ['turn:example.org:8000', { scheme: 'turn', host: 'example.org', port: 8000, transport: 'udp', literal: false }],
    ['turn:example.org?transport=udp', { scheme: 'turn', host: 'example.org', port: 3478, transport: 'udp', literal: false }],
    ['turn:example.org?transport=tcp', { scheme: 'turn', host: 'example.org', port: 3478, transport: 'tcp', literal: false }],
    ['turns:example.org?transport=tcp', { scheme: 'turns', host: 'example.org', port: 5349, transport: 'tls', literal: false }],
    ['turn:192.0.2.1:3479?transport=tcp', { scheme: 'turn', host: '192.0.2.1', port: 3479, transport: 'tcp', literal: true }],
    ['stun:[2001:db8::1]', { scheme: 'stun', host: '2001:db8::1', port: 3478, transport: 'udp', literal: true }],
    ['turn:[2001:db8::1]:5000?transport=udp', { scheme: 'turn', host: '2001:db8::1', port: 5000, transport: 'udp', literal: true }],
    ['turns:[::1]', { scheme: 'turns', host: '::1', port: 5349, transport: 'tls', literal: true }],
    // Scheme and the transport value are case-insensitive (RFC 3986 section 3.1; ABNF strings).
    ['STUN:Example.ORG', { scheme: 'stun', host: 'Example.ORG', port: 3478, transport: 'udp', literal: false }],
    ['TURN:example.org?transport=TCP', { scheme: 'turn', host: 'example.org', port: 3478, transport: 'tcp', literal: false }],
    // RFC 3986: port = *DIGIT, so an empty port is the default one.
    ['stun:example.org:', { scheme: 'stun', host: 'example.org', port: 3478, transport: 'udp', literal: false }],
    ['stun:stun_1.example.org', { scheme: 'stun', host: 'stun_1.example.org', port: 3478, transport: 'udp', literal: false }],
    ['stun:%65xample.org', { scheme: 'stun', host: 'example.org', port: 3478, transport: 'udp', literal: false }],
  ];
  for (const [url, want] of cases) {
    it(url, () => {
      expect(parseIceServerUrl(url)).toEqual({ ...want, url });
    });
  }
});

describe('parseIceServerUrl: bad URIs, each with its reason', () => {
  const bad: Array<[string, IceUrlErrorCode, RegExp]> = [
    ['', 'BAD_SCHEME', /empty URI/],
    ['example.org', 'BAD_SCHEME', /not stun, stuns, turn or turns/],
    ['http://example.org', 'BAD_SCHEME', /"http" is not stun/],
    ['stunx:example.org', 'BAD_SCHEME', /"stunx"/],
    ['stun://example.org', 'BAD_HOST', /no "\/\/" after "stun:"/],
    ['turn://user:pass@example.org', 'BAD_HOST', /no "\/\/"/],
    ['stun:', 'BAD_HOST', /no host/],
    ['stun::3478', 'BAD_HOST', /no host/],
    ['turn:user@example.org', 'BAD_HOST', /unexpected "@"/],
    ['stun:example.org/path', 'BAD_HOST', /unexpected "\/"/],
    ['stun:2001:db8::1', 'BAD_HOST', /must be in brackets/],
    ['stun:[2001:db8::1', 'BAD_HOST', /unbalanced "\["/],
    ['stun:[example.org]', 'BAD_HOST', /not an IPv6 address/],
    ['stun:[192.0.2.1]', 'BAD_HOST', /not an IPv6 address/],
    ['stun:[::1]x', 'BAD_HOST', /unexpected "x" after the IPv6 literal/],
    ['stun:exa mple.org', 'BAD_HOST', /not a host name/],
    ['stun:999.1.1.1', 'BAD_HOST', /not a valid IPv4 address/],
    ['stun:%zz.org', 'BAD_HOST', /not a host name/],
    ['stun:example.org:port', 'BAD_PORT', /"port" is not a number/],
    ['stun:example.org:0', 'BAD_PORT', /port 0 is out of range/],
    ['turn:example.org:65536', 'BAD_PORT', /port 65536 is out of range/],
    ['stun:example.org:-1', 'BAD_PORT', /not a number/],
    ['stun:example.org?transport=udp', 'BAD_QUERY', /takes no query \(RFC 7064\)/],
    ['stuns:example.org?transport=tcp', 'BAD_QUERY', /takes no query/],
    ['turn:example.org?transport=', 'BAD_QUERY', /not transport=udp or transport=tcp/],
    ['turn:example.org?proto=udp', 'BAD_QUERY', /not transport=udp/],
    ['turn:example.org?transport=udp&x=1', 'BAD_QUERY', /not transport=udp/],
    ['turn:example.org?transport=sctp', 'UNSUPPORTED_TRANSPORT', /"sctp" is not supported/],
    ['turns:example.org?transport=udp', 'UNSUPPORTED_TRANSPORT', /DTLS/],
  ];
  for (const [url, code, message] of bad) {
    it(`${JSON.stringify(url)} -> ${code}`, () => {
      const err = thrown(IceUrlError, () => parseIceServerUrl(url));
      expect(err.code).toBe(code);
      expect(err.message).toMatch(message);
      expect(err.url).toBe(url);
    });
  }
});

describe('validateIceServers: a whole configuration up front', () => {
  it('returns the parsed URLs of every entry, urls as a string or a list', () => {
    const v = validateIceServers([{ urls: 'stun:a.example' }, { urls: ['turn:b.example', 'turns:b.example'], username: 'u', credential: 'p' }]);
    expect(v.map((x) => `${x.scheme} ${x.host}:${x.port} ${x.transport}`)).toEqual(['stun a.example:3478 udp', 'turn b.example:3478 udp', 'turns b.example:5349 tls']);
  });

  it('refuses a TURN server without credentials, an entry without URLs, and a bad URL', () => {
    expect(thrown(IceUrlError, () => validateIceServers([{ urls: 'turn:b.example', username: 'u' }])).code).toBe('MISSING_CREDENTIALS');
    expect(thrown(IceUrlError, () => validateIceServers([{ urls: [] }])).code).toBe('NO_URLS');
    expect(thrown(IceUrlError, () => validateIceServers([{ urls: 'stun:ok.example' }, { urls: 'stun:bad host' }])).code).toBe('BAD_HOST');
  });
});
