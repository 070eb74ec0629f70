#!/usr/bin/env node
import '../dist/cli/stunserver.js';
