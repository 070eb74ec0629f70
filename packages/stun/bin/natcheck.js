#!/usr/bin/env node
import '../dist/cli/natcheck.js';
