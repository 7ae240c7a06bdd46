// SPDK cpumask syntax: a hex mask ("0x3", "3") or a list ("[0,1]", "[0-3,6]").
export function parseCpumask(mask: string): number[] {
  const s = mask.trim();
  const cpus = new Set<number>();
  if (s.startsWith('[')) {
    if (!s.endsWith(']')) throw new Error(`cpumask '${mask}' is missing its closing ']'`);
    for (const part of s.slice(1, -1).split(',')) {
      const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
      if (!m) throw new Error(`cpumask '${mask}': '${part}' is not a CPU number or range`);
      const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
      if (b < a) throw new Error(`cpumask '${mask}': range ${a}-${b} is backwards`);
      for (let c = a; c <= b; c++) cpus.add(c);
    }
  } else {
    const hex = s.replace(/^0x/i, '');
    if (!/^[0-9a-f]+$/i.test(hex)) throw new Error(`cpumask '${mask}' is neither a hex mask (0x3) nor a list ([0,1])`);
    const v = BigInt('0x' + hex);
    for (let c = 0; c < hex.length * 4; c++) if ((v >> BigInt(c)) & 1n) cpus.add(c);
  }
  if (cpus.size === 0) throw new Error(`cpumask '${mask}' selects no CPU`);
  return [...cpus].sort((a, b) => a - b);
}

export function formatCpumask(cpus: number[]): string {
  let v = 0n;
  for (const c of cpus) v |= 1n << BigInt(c);
  return '0x' + v.toString(16);
}
