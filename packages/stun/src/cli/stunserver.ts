console.log('stunserver: not yet');
