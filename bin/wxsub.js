#!/usr/bin/env node
// Entry point of the `wxsub` command: runs the compiled CLI from dist/.
import { cliErrorText, main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  console.error(cliErrorText(err));
  process.exitCode = 1;
});
