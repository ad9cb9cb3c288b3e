#!/usr/bin/env node
// Loads nothing: prints node's own peak RSS (KiB), the baseline that
// bench/compare subtracts from ort_run.js's peak.
'use strict';
process.stdout.write(JSON.stringify({ runtime: 'node-baseline',
  max_rss_kib: process.resourceUsage().maxRSS }) + '\n');
