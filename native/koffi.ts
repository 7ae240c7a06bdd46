// Loads koffi and libc once per thread (main or reactor worker).
import { createRequire } from 'node:module';
import type * as KoffiNs from 'koffi';

const require = createRequire(import.meta.url);
export const koffi: typeof KoffiNs = require('koffi');
export const libc = koffi.load('libc.so.6');
