console.log('relayserver: not yet');
