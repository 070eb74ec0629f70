#!/usr/bin/env node
import '../dist/cli/relayserver.js';
