#!/usr/bin/env node
import '../dist/cli/p2pdemo.js';
