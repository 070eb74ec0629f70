// What @natkit/ice exports at run time, by name: what a user embeds (the agent, its sans-I/O
// core, the gatherer, candidate lines and priorities, mDNS, errors), and nothing of the
// gatherer's insides (its socket and allocation bases, address ranking, error mapping).
import { describe, expect, it } from 'vitest';
import * as ice from '../src/index.js';

describe('@natkit/ice exports', () => {
  it('names each export on purpose', () => {
    expect(Object.keys(ice).sort()).toEqual(
      [
        // the agent and its core
        'IceAgent',
        'IceCore',
        'IceError',
        // gathering
        'DEFAULT_SERVER_TIMEOUT_MS',
        'Gatherer',
        'gatherCandidates',
        'IceUrlError',
        'iceServerUrls',
        'parseIceServerUrl',
        'validateIceServers',
        // candidates and their lines
        'TYPE_PREFERENCE',
        'candidateFoundation',
        'candidatePriority',
        'pairPriority',
        'CandidateLineError',
        'MAX_CANDIDATE_PRIORITY',
        'MAX_LINE_LENGTH',
        'addressKind',
        'candidateExtension',
        'formatCandidateLine',
        'isEndOfCandidates',
        'isIceChars',
        'parseCandidateLine',
        'generateIceParameters',
        'validateIceParameters',
        'JINGLE_MAX_FIELD',
        'formatJingleLine',
        'iceToJingle',
        'jingleToIce',
        'parseJingleLine',
        // mDNS
        'MDNS_IPV4',
        'MdnsError',
        'MdnsResolver',
      ].sort(),
    );
  });
});
