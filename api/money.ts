/**
 * The one money type, from SQL to the API's edge: exact integer micro-units (millionths of the
 * currency unit) as a bigint, never a float. ClickHouse sums `Decimal` and returns it as text; it is
 * turned into micro-units here, rounded half-even, and formatted as a decimal string only at the edge.
 */
export const CURRENCY = 'USD';
const MICROS_PER_UNIT = 1_000_000n;

export const moneyTypeDefs = /* GraphQL */ `
  """
  An exact amount of money. \`amount\` is a decimal string with six decimal places (e.g. "12.340000");
  \`micros\` is the same amount in integer millionths of the currency unit (a string: it may exceed
  2^53); \`currency\` is the ISO 4217 code (always USD today). Amounts are never floats.
  """
  type Money {
    amount: String!
    micros: String!
    currency: String!
  }
`;

export interface Money {
  amount: string;
  micros: string;
  currency: string;
}

export function money(micros: bigint, currency = CURRENCY): Money {
  return { amount: formatMicros(micros), micros: micros.toString(), currency };
}

/** `-12.3456785` → -12345678n (half-even at the sixth decimal). Throws on text that is not a decimal. */
export function microsFromDecimal(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!m) throw new Error(`not a decimal amount: ${JSON.stringify(text)}`);
  const [, sign, whole, fraction = ''] = m;
  const kept = BigInt(whole! + fraction.slice(0, 6).padEnd(6, '0'));
  const rest = fraction.slice(6);
  let micros = kept;
  if (/[1-9]/.test(rest)) {
    const half = rest[0] === '5' && !/[1-9]/.test(rest.slice(1));
    if (rest[0]! > '5' || (rest[0] === '5' && !half) || (half && kept % 2n === 1n)) micros += 1n;
  }
  return sign && micros !== 0n ? -micros : micros;
}

/** -12345678n → "-12.345678". */
export function formatMicros(micros: bigint, decimals = 6): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = abs / MICROS_PER_UNIT;
  const fraction = (abs % MICROS_PER_UNIT).toString().padStart(6, '0').slice(0, decimals);
  return `${negative ? '-' : ''}${whole}${decimals > 0 ? `.${fraction}` : ''}`;
}
