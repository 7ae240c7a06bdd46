// bdev_set_qos_limit (SPDK's name, params and result).
import { MethodRegistry } from '../../src/rpc/registry.js';
import { registerModule } from '../../src/framework/module.js';
import { RpcCode, RpcError } from '../../src/rpc/errors.js';
import { Params } from '../../src/rpc/params.js';
import { setQosLimits } from './qos.js';

const limit = (desc: string) => ({ type: 'int', min: 0, desc: `${desc}; 0 = no limit` }) as const;

const schema = {
  name: { type: 'string', required: true, desc: 'bdev name, alias or UUID' },
  rw_ios_per_sec: limit('read+write I/Os per second, a multiple of 1000'),
  rw_mbytes_per_sec: limit('read+write MiB per second'),
  r_mbytes_per_sec: limit('read MiB per second'),
  w_mbytes_per_sec: limit('write MiB per second'),
} as const;

export function registerQosMethods(reg: MethodRegistry): void {
  reg.register('bdev_set_qos_limit', schema, (p: Params<typeof schema>, ctx) => {
    const b = ctx.bdevs.find(p.name);
    if (!b) throw new RpcError(RpcCode.ENODEV, `bdev '${p.name}' does not exist (see bdev_get_bdevs)`);
    setQosLimits(b, p);
    return true;
  }, { help: 'Set rate limits of a bdev (I/Os and MiB per second; 0 removes a limit); reads and writes over the limit wait' });
}

registerModule({ name: 'bdev_qos', subsystem: 'bdev', rpc: registerQosMethods });
