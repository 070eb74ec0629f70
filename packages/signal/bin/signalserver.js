#!/usr/bin/env node
import '../dist/cli/signalserver.js';
