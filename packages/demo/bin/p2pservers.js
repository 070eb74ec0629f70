#!/usr/bin/env node
import '../dist/cli/p2pservers.js';
