console.log('natcheck: not yet');
