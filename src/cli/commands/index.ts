// Every vhostctl subcommand table; append new tables (e.g. vhost commands) here.
import type { CommandSpec } from './types.js';
import { frameworkCommands } from './framework.js';
import { bdevCommands } from './bdev.js';
import { vhostCommands } from './vhost.js';
import { nvmfCommands } from './nvmf.js';
import { imageCommands } from './bdev_image.js';
import { nvmeCommands } from './nvme.js';
import { rbdCommands } from './rbd.js';
import { lvolCommands } from './lvol.js';

export const COMMANDS: CommandSpec[] = [
  ...frameworkCommands,
  ...bdevCommands,
  ...vhostCommands,
  ...nvmfCommands,
  ...imageCommands,
  ...nvmeCommands,
  ...rbdCommands,
  ...lvolCommands,
];
