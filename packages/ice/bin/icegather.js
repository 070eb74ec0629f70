#!/usr/bin/env node
import '../dist/cli/icegather.js';
